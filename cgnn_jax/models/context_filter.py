"""Stage 1's context filter: the edge filter again, reading each edge's neighbourhood too.

:class:`ContextFilter` scores a candidate edge from what the edge filter reads (``x_i``, ``x_j``,
``z_ij``) and the edge's context ``c_ij`` (:func:`context_inputs`): the score the previous round
gave it, and :func:`~cgnn_jax.features.edge_context.edge_context` of those scores (its rivals at
both ends and its best continuation at each end). Rounds may be chained, each reading the
previous round's scores: one round of message passing over the candidate graph per round, as in
the edge classifiers of Exa.TrkX and GNN4ITk, but over millions of edges in fixed arithmetic.

As in :class:`~cgnn_jax.models.edge_filter.EdgeFilter`, the first layer is split per input
(node terms computed once per hit); the context columns are standardised by the training edges'
mean and spread, stored with the parameters (``norm_mean``, ``norm_scale``) and not trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgnn_jax.features.edge_context import CONTINUATION_NAMES, RIVAL_NAMES, edge_context
from cgnn_jax.models.mlp import MLP

CONTEXT_NAMES = ("score", *RIVAL_NAMES, *CONTINUATION_NAMES)
N_CONTEXT = len(CONTEXT_NAMES)


def context_inputs(
    pos: jnp.ndarray,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    score: jnp.ndarray,
    mask: jnp.ndarray,
    n: int,
) -> jnp.ndarray:
    """``c [E, N_CONTEXT]`` (:data:`CONTEXT_NAMES`): each directed edge's score and
    :func:`~cgnn_jax.features.edge_context.edge_context` of the scores (``pos [n, 3]`` mm;
    ``mask`` False for padding edges, which get zero rows)."""
    rivals, continuation = edge_context(pos, senders, receivers, score, mask, n)
    p = jnp.where(mask, score, 0.0).astype(jnp.float32)[:, None]
    return jnp.concatenate([p, rivals, continuation], 1)


class ContextFilter(nn.Module):
    """Edge logits ``[E]`` from node features ``x [n, F]``, pair features ``z [E, P]``, context
    ``c [E, C]`` (:func:`context_inputs`) and the edges.

    Attributes:
      hidden: widths; ``hidden[0]`` is the split first layer, the rest an :class:`MLP`.
    """

    hidden: Sequence[int] = (64, 64, 64)

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        z: jnp.ndarray,
        c: jnp.ndarray,
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
    ) -> jnp.ndarray:
        n_c = c.shape[-1]
        mean = jax.lax.stop_gradient(self.param("norm_mean", nn.initializers.zeros, (n_c,)))
        scale = jax.lax.stop_gradient(self.param("norm_scale", nn.initializers.ones, (n_c,)))
        h0 = self.hidden[0]
        node_s = nn.Dense(h0, name="sender")(x)
        node_r = nn.Dense(h0, use_bias=False, name="receiver")(x)
        h = node_s[senders] + node_r[receivers] + nn.Dense(h0, use_bias=False, name="pair")(z)
        h = h + nn.Dense(h0, use_bias=False, name="context")((c - mean) * scale)
        h = nn.relu(nn.LayerNorm()(h))
        return MLP(self.hidden[1:], 1, layer_norm=True)(h)[..., 0]
