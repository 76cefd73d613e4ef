"""Connected components of a graph's confident edges, inside jit: the atoms of a graph-consistent
Split.

With ``config.cluster.component_cut > 0`` the recursion (:mod:`cgnn_jax.cluster.recursion`) never
separates two hits joined by a GNN edge whose weight ``a_ij`` exceeds the cut: each point's
``p_right`` is replaced by the mean over its component (:func:`group_mean`), so a component goes
left or right as a whole. Split and Stop then decide how the components are grouped into tracks;
a confident edge cut is kept high, so that components are pure pieces of tracks.

:func:`edge_components` is min-label propagation with pointer jumping in a ``lax.while_loop``
(exact: it runs until no label changes; ``O(E)`` per sweep, a few sweeps for track-like chains).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def edge_components(
    senders: jnp.ndarray, receivers: jnp.ndarray, keep: jnp.ndarray, n: int
) -> jnp.ndarray:
    """``[n]`` int32 component id of every node (the smallest node index in its component).

    Args:
      senders, receivers: ``[E]`` int node indices (direction ignored).
      keep: ``[E]`` bool, the edges that join (False: padding, or below the cut).
      n: number of nodes (static).
    """
    idx = jnp.arange(n, dtype=jnp.int32)
    s = jnp.where(keep, senders, 0).astype(jnp.int32)
    r = jnp.where(keep, receivers, 0).astype(jnp.int32)
    big = jnp.int32(n)

    def sweep(label):
        ls, lr = label[s], label[r]
        m = jnp.where(keep, jnp.minimum(ls, lr), big)
        new = jnp.minimum(label, jax.ops.segment_min(m, s, num_segments=n))
        new = jnp.minimum(new, jax.ops.segment_min(m, r, num_segments=n))
        # the roots' labels too (hooking), then pointer jumping
        new = new.at[ls].min(jnp.where(keep, new[r], big)).at[lr].min(jnp.where(keep, new[s], big))
        new = jnp.minimum(new, new[new])
        return jnp.minimum(new, new[new])

    def cond(c):
        return c[1]

    def body(c):
        label, _ = c
        new = sweep(label)
        return new, jnp.any(new != label)

    label, _ = jax.lax.while_loop(cond, body, (idx, jnp.bool_(True)))
    return label


def group_mean(p: jnp.ndarray, group: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """``[N]``: each point's value replaced by the mean over the real points of its group."""
    n = p.shape[0]
    w = mask.astype(p.dtype)
    tot = jax.ops.segment_sum(p * w, group, num_segments=n)
    cnt = jax.ops.segment_sum(w, group, num_segments=n)
    return jnp.where(mask, tot[group] / jnp.maximum(cnt[group], 1.0), p)
