"""Stage 1 metric learning: the hit embedding MLP φ (hit features -> R^d)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cgnn_jax.models.mlp import MLP


class HitEmbedding(nn.Module):
    """``x [n, F] -> e [n, d]``: hits of one particle land close together, others far apart.

    Trained with the hinge embedding loss (:func:`cgnn_jax.train.losses.hinge_embedding_loss`).
    """

    hidden: Sequence[int] = (128, 128, 128)
    dim: int = 8

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return MLP(self.hidden, self.dim, layer_norm=True, activation="tanh")(x)
