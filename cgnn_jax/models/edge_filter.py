"""Stage 1 edge refinement: the MLP φ' on (x_i, x_j, z_ij) -> p_ij.

The first Dense layer of ``[x_i, x_j, z_ij]`` is split as ``W_s x_i + W_r x_j + W_z z_ij``: the node
terms are computed once per hit and gathered per edge, which is exact and saves most of the work on
an event's millions of edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cgnn_jax.models.mlp import MLP


class EdgeFilter(nn.Module):
    """Edge logits ``[E]`` from node features ``x [n, F]``, pair features ``z [E, P]`` and edges.

    Attributes:
      hidden: widths; ``hidden[0]`` is the split first layer, the rest an :class:`MLP`.
    """

    hidden: Sequence[int] = (64, 64, 64)

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, z: jnp.ndarray, senders: jnp.ndarray, receivers: jnp.ndarray
    ) -> jnp.ndarray:
        h0 = self.hidden[0]
        node_s = nn.Dense(h0, name="sender")(x)
        node_r = nn.Dense(h0, use_bias=False, name="receiver")(x)
        h = node_s[senders] + node_r[receivers] + nn.Dense(h0, use_bias=False, name="pair")(z)
        h = nn.relu(nn.LayerNorm()(h))
        return MLP(self.hidden[1:], 1, layer_norm=True)(h)[..., 0]
