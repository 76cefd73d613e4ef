"""Losses of the learned stages."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def hinge_embedding_loss(
    d2: jnp.ndarray, y: jnp.ndarray, mask: jnp.ndarray, margin: float = 1.0
) -> jnp.ndarray:
    """Hinge embedding loss on squared distances ``d2 [B]`` of pairs.

    ``y = 1`` (same particle): ``d2``; ``y = 0``: ``max(0, margin - d2)``. Positives and negatives
    are averaged separately and summed, so the loss is balanced whatever the batch mix. ``mask``
    ``[B]`` drops padding pairs.
    """
    y = y.astype(d2.dtype)
    mask = mask.astype(d2.dtype)
    pos = y * mask
    neg = (1.0 - y) * mask
    lpos = jnp.sum(pos * d2) / jnp.maximum(jnp.sum(pos), 1.0)
    lneg = jnp.sum(neg * jnp.maximum(margin - d2, 0.0)) / jnp.maximum(jnp.sum(neg), 1.0)
    return lpos + lneg


def balanced_bce(
    logits: jnp.ndarray, y: jnp.ndarray, mask: jnp.ndarray, pos_weight: float = 1.0
) -> jnp.ndarray:
    """Binary cross-entropy ``[B]`` with true edges weighted ``pos_weight``; ``mask`` drops padding."""
    y = y.astype(logits.dtype)
    w = mask.astype(logits.dtype) * jnp.where(y > 0, pos_weight, 1.0)
    return jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, y)) / jnp.maximum(
        jnp.sum(w), 1e-6
    )
