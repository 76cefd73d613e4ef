"""Layer-constrained merging of a graph's scored edges, inside jit: atoms that follow the tracks.

A charged particle crosses each detector layer about once (twice where neighbouring modules
overlap: the double hits), so two pieces of one track rarely have hits on the same layers, while
two different tracks that cross each other share many. :func:`layer_merge` joins the hits of the
GNN's input graph along its best-scored edges, most confident first, but never joins two pieces
that share more than ``max_shared`` detector layers. It replaces the plain connected components
of the edges above a high cut (:func:`cgnn_jax.cluster.components.edge_components`), which must
choose between merging tracks (a low cut) and cutting them into fragments (a high cut): the
layer constraint lets a low cut join a track's fragments without chaining tracks together.

The merge runs in parallel rounds (a Borůvka-style greedy matching): every piece picks its
best-scored valid edge to another piece (ties: the lowest edge index); the edges that are the
best of *both* their pieces join them, in pairs; repeat until no valid edge is left. The
globally best valid edge is always mutual, so every round joins at least one pair; on tracking
graphs 10-70 rounds suffice. Layer sets are two ``uint32`` bit masks per piece (48 layers in the
TrackML detector; up to 64 supported) compared with ``population_count``. The result equals the
sequential greedy merge (edges in descending score, each joining its pieces if they share at
most ``max_shared`` layers) on the cases where one edge is the best of both its pieces
throughout, and matched its TrackML score on the events measured (``docs/experiments.md``).

Padding edges (``keep`` False) never join; labels do not depend on padding (ties break by edge
index, and padding edges come last).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_LAYERS = 64  # two uint32 words per piece


def layer_bits(layer: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(low [n], high [n])`` uint32 one-bit masks of every hit's layer index ``0..63``."""
    layer = layer.astype(jnp.uint32)
    one = jnp.uint32(1)
    low = jnp.where(layer < 32, one << jnp.minimum(layer, 31), jnp.uint32(0))
    high = jnp.where(layer >= 32, one << (jnp.maximum(layer, 32) - 32), jnp.uint32(0))
    return low, high


def layer_merge(
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    score: jnp.ndarray,
    keep: jnp.ndarray,
    layer: jnp.ndarray,
    n: int,
    max_shared: int = 1,
    max_rounds: int = 256,
) -> jnp.ndarray:
    """``[n]`` int32 piece id of every node (the smallest node index in its piece).

    Args:
      senders, receivers: ``[E]`` int node indices (direction ignored).
      score: ``[E]`` float edge scores (e.g. the GNN's last ``a_ij``); higher joins first.
      keep: ``[E]`` bool, the edges that may join (False: padding, or below a score cut).
      layer: ``[n]`` int detector-layer index of every node, ``0..63``.
      n: number of nodes (static).
      max_shared: two pieces join only if they have hits on at most this many common layers.
      max_rounds: a bound on the rounds (static; the loop stops as soon as nothing joins).
    """
    e = senders.shape[0]
    s = jnp.where(keep, senders, 0).astype(jnp.int32)
    r = jnp.where(keep, receivers, 0).astype(jnp.int32)
    eid = jnp.arange(e, dtype=jnp.int32)
    neg = jnp.asarray(-jnp.inf, score.dtype)
    low, high = layer_bits(layer)
    idx = jnp.arange(n, dtype=jnp.int32)

    def body(state):
        label, low, high, _, k = state
        ci, cj = label[s], label[r]
        shared = jax.lax.population_count(low[ci] & low[cj]) + jax.lax.population_count(
            high[ci] & high[cj]
        )
        valid = keep & (ci != cj) & (shared.astype(jnp.int32) <= max_shared)
        sc = jnp.where(valid, score, neg)
        best = jnp.maximum(
            jax.ops.segment_max(sc, ci, num_segments=n),
            jax.ops.segment_max(sc, cj, num_segments=n),
        )
        big = jnp.int32(e)
        first = jnp.minimum(
            jax.ops.segment_min(jnp.where(valid & (sc == best[ci]), eid, big), ci, num_segments=n),
            jax.ops.segment_min(jnp.where(valid & (sc == best[cj]), eid, big), cj, num_segments=n),
        )
        mutual = valid & (first[ci] == eid) & (first[cj] == eid)
        lo, hi = jnp.minimum(ci, cj), jnp.maximum(ci, cj)
        # each piece is in at most one mutual edge: the joins are disjoint pairs
        hi_at = jnp.where(mutual, hi, n)
        lo_at = jnp.where(mutual, lo, n)
        remap = idx.at[hi_at].set(lo, mode="drop")
        low = low.at[lo_at].set(low[lo] | low[hi], mode="drop")
        high = high.at[lo_at].set(high[lo] | high[hi], mode="drop")
        return remap[label], low, high, jnp.any(mutual), k + 1

    def cond(state):
        return state[3] & (state[4] < max_rounds)

    label, *_ = jax.lax.while_loop(cond, body, (idx, low, high, jnp.bool_(True), jnp.int32(0)))
    return label
