"""Learned divisive hierarchical clustering, unrolled level by level with static shapes.

Every point carries a segment id, its cluster at the current level. At each level all active
clusters are processed at once (``O(N)`` work: a few ``segment_sum``/``segment_min`` and one sort):

1. ``stop = stop_fn(h, seg, mask, N)`` gives a stop probability per segment. A cluster is frozen
   (kept as it is for good) if ``stop > stop_threshold``, if it has fewer than ``min_size`` points
   (and always if it has fewer than 2), or if it was frozen before.
2. ``p = split_fn(h, seg, mask, N)`` gives ``p_right`` per point; the points of an active cluster
   go right where ``p > 0.5``.
3. Median rule: a cluster whose split sends every point to one side would stall; it is split at
   its median ``p`` instead: points are sorted by ``(segment, p)`` (``jnp.lexsort``), and those of
   rank ``>= size // 2`` within their segment go right. Ties are broken by the sort order, so even
   a constant ``p`` halves the cluster; the depth is then ``O(log N)``.

Segment-id scheme (static ``num_segments = N``): **a cluster's id is the smallest point index in
it.** Clusters are disjoint and non-empty, so their smallest indices are distinct and lie in
``[0, N)``: ``num_segments = N`` always suffices, with no overflow at any depth (unlike the
heap scheme ``2 s, 2 s + 1``, which needs ``2^depth`` segments). After a split the children's ids
are ``segment_min(arange(N), 2 * seg + side)``; the left child keeps its parent's id if the
parent's smallest point went left. Padding points sit in singleton segments ``seg_j = j`` (never
a real cluster's id, since those are real points' indices) with size 0 and are always frozen. At
the start all valid points are in one segment, the first valid index (0 when the padding is at
the end, as :func:`cgnn_jax.utils.padding.pad_rows` makes it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cgnn_jax.cluster.components import group_mean

SegmentFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, int], jnp.ndarray]


def unrolled_clustering(
    split_fn: SegmentFn,
    stop_fn: SegmentFn | None,
    h: jnp.ndarray,
    mask: jnp.ndarray,
    max_depth: int,
    min_size: int = 3,
    stop_threshold: float = 0.5,
    groups: jnp.ndarray | None = None,
    compact: bool = False,
    group_reps: jnp.ndarray | None = None,
    weights: jnp.ndarray | None = None,
    h_var: jnp.ndarray | None = None,
) -> dict[str, jnp.ndarray]:
    """Cluster the points ``h`` top-down for ``max_depth`` levels (jit with ``max_depth`` static).

    Args:
      split_fn: ``(h [N, D], seg [N], mask [N], num_segments) -> p_right [N]`` in ``[0, 1]``, e.g.
        ``lambda *a: Split(hidden).apply(params, *a)``.
      stop_fn: ``(h, seg, mask, num_segments) -> stop [num_segments]`` in ``[0, 1]``; None: no
        Stop, every cluster above ``min_size`` is split (what any ``stop_threshold >= 1`` does,
        as no vote exceeds 1: the same tree without evaluating Stop, ~40 % of a level's cost),
        and ``stop`` is NaN in the output.
      h: ``[N, D]`` point features.
      mask: ``[N]`` bool, False for padding points.
      max_depth: number of levels ``L`` (static; the levels are a ``lax.scan``; once every
        cluster is frozen the remaining levels are skipped by a ``lax.cond``).
      min_size: clusters smaller than this are not split (sizes < 2 never are); nor are
        clusters made of one group (``groups``).
      stop_threshold: clusters with ``stop > stop_threshold`` are not split.
      groups: ``[N]`` int32 optional atoms that are never separated (e.g. the connected
        components of the GNN's confident edges, :mod:`cgnn_jax.cluster.components`; ids in
        ``[0, N)``, padding points in their own): each point's ``p_right`` becomes its group's
        mean, and the median rule moves whole groups.
      compact: inference mode (:func:`_compact_tiers`): a level whose not-yet-frozen points fit
        in ``N / 4``, ``N / 16``... runs on those points alone, gathered into the smallest such
        block (deep levels hold a few per cent of the points, so a full event's tree costs
        ~2x less). The tree is the same (up to float32 summation order in Split/Stop's segment
        statistics); only ``stop`` and ``p_right`` of clusters frozen earlier are left at 0
        there (they are computed and ignored otherwise: no tree decision reads them).
      group_reps: ``[G]`` int32 optional, with ``groups``: the first point of every group, padded
        with ``N`` (:func:`group_representatives`). The median rule then sorts the ``G`` groups
        instead of the ``N`` points at the levels that run on the whole array (a group's points
        share their segment and ``p``, so the order and the cut are the same; on a full event
        ~3x fewer items to sort, and the sort is most of a level's cost beyond Split and Stop).
      weights: ``[N]`` int32 optional (not with ``groups``): each row stands for ``weights``
        points, an atom (:func:`atom_rows`): ``h`` is their mean and ``h_var [N, D]`` their
        variance. Sizes, ``min_size``, the median rule and Split/Stop's cluster statistics
        count points (``split_fn`` / ``stop_fn`` get ``weight=`` and ``h_var=`` keywords); a
        cluster of one row is a leaf. The tree of the rows is that of the atoms with each
        atom's ``p`` computed from its points' mean (not the mean of its points' ``p``).
    Returns:
      dict with
        ``cluster [N]`` int32: final cluster id per point (the smallest point index of its
        cluster), -1 on padding;
        ``segment [L + 1, N]`` int32: segment id per point before each level (row ``L``: final);
        ``p_right [L, N]``: split probability per point at each level (0 on padding);
        ``stop [L, N]``: stop probability per segment id at each level (NaN without ``stop_fn``);
        ``active [L, N]`` bool: per segment id, whether that cluster was split at that level;
        ``size [L + 1, N]`` int32: points per segment id before each level;
        ``mask [N]``: the input mask.
    """
    n = h.shape[0]
    groups = None if groups is None else jnp.asarray(groups, jnp.int32)
    group_reps = None if group_reps is None else jnp.asarray(group_reps, jnp.int32)
    if weights is not None:
        if groups is not None:
            raise ValueError("unrolled_clustering: give groups or weights (atom rows), not both")
        weights = jnp.where(mask, jnp.asarray(weights, jnp.int32), 0)
    idx = jnp.arange(n, dtype=jnp.int32)
    first = jnp.argmax(mask).astype(jnp.int32)
    seg0 = jnp.where(mask, first, idx)
    lo = max(int(min_size), 2)
    count = mask.astype(jnp.int32) if weights is None else weights

    def sizes(seg: jnp.ndarray) -> jnp.ndarray:
        return jax.ops.segment_sum(count, seg, num_segments=n)

    def idle(seg: jnp.ndarray, done: jnp.ndarray):
        zeros = jnp.zeros(n, h.dtype)
        stops = zeros if stop_fn is not None else jnp.full(n, jnp.nan, h.dtype)
        return (seg, done), (seg, sizes(seg), zeros, stops, jnp.zeros(n, bool))

    rows = None if weights is None else (weights, h_var)

    def work(seg: jnp.ndarray, done: jnp.ndarray):
        return _level(
            split_fn, stop_fn, h, mask, groups, lo, stop_threshold, seg, done, group_reps, rows
        )

    tiers = _compact_tiers(n) if compact else ()
    branches = [idle, work] + [
        functools.partial(
            _compact_level, t, split_fn, stop_fn, h, mask, groups, lo, stop_threshold, rows
        )
        for t in tiers
    ]

    def level(
        carry: tuple[jnp.ndarray, jnp.ndarray], _: None
    ) -> tuple[tuple[jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, ...]]:
        seg, done = carry
        # once every cluster is frozen, the remaining levels cost only this test; with
        # ``compact``, the smallest block that holds the points still in play
        open_pts = jnp.sum(~done)
        branch = jnp.where(open_pts == 0, 0, 1)
        for i, t in enumerate(tiers):
            branch = jnp.where((open_pts > 0) & (open_pts <= t), 2 + i, branch)
        return jax.lax.switch(branch, branches, seg, done)

    (seg_f, _), (segs, szs, ps, stops, actives) = jax.lax.scan(
        level, (seg0, ~mask), None, length=max_depth
    )
    return {
        "cluster": jnp.where(mask, seg_f, -1),
        "segment": jnp.concatenate([segs, seg_f[None]], 0),
        "p_right": ps,
        "stop": stops,
        "active": actives,
        "size": jnp.concatenate([szs, sizes(seg_f)[None]], 0),
        "mask": mask,
    }


def _compact_tiers(n: int, factor: int = 4, smallest: int = 512) -> tuple[int, ...]:
    """Block sizes ``n / 4, n / 16, ...`` (at least ``smallest``) for ``compact`` levels."""
    out, t = [], n // factor
    while t >= smallest:
        out.append(t)
        t //= factor
    return tuple(out)


def group_representatives(groups: np.ndarray) -> np.ndarray:
    """``[G]`` int32: the first point of every group of ``groups [N]`` (ids in ``[0, N)``), in
    group-id order (pad with ``N``, e.g. ``pad_rows(reps, size, value=N)``)."""
    return np.unique(np.asarray(groups), return_index=True)[1].astype(np.int32)


def _rank_in_segment(order: jnp.ndarray, seg: jnp.ndarray) -> jnp.ndarray:
    """``[n]`` each point's position in ``order`` counted from its segment's first point."""
    n = seg.shape[0]
    pos = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return pos - jax.ops.segment_min(pos, seg, num_segments=n)[seg]


def _group_starts(p, seg, groups, mask, reps):
    """``[n]`` per point: how many points of its segment come before its group in the order
    ``(p, group id)`` -- the ``start`` of :func:`_level`'s median rule, from a sort of the
    groups' representatives ``reps [G]`` (padded with ``n``) instead of all points."""
    n = p.shape[0]
    valid = reps < n
    r = jnp.where(valid, reps, 0)
    gid = jnp.where(valid, groups[r], n)
    g_seg = jnp.where(valid, seg[r], n)  # padding sorts last, in a segment of its own
    g_size = jnp.where(
        valid, jax.ops.segment_sum(mask.astype(jnp.int32), groups, num_segments=n)[gid % n], 0
    )
    order = jnp.lexsort((gid, jnp.where(valid, p[r], 0.0), g_seg))
    s_seg, s_size = g_seg[order], g_size[order]
    before = jnp.cumsum(s_size) - s_size  # points ahead in the whole sorted order
    start = before - jax.ops.segment_min(before, s_seg, num_segments=n + 1)[s_seg]
    by_gid = jnp.zeros(n, jnp.int32).at[gid[order]].set(start, mode="drop")
    return by_gid[groups]


def _weighted_starts(p, seg, weights):
    """``[n]`` per row: the points (``weights``) of its segment before it in the order
    ``(p, row index)`` -- the ``start`` of :func:`_level`'s median rule for atom rows."""
    n = p.shape[0]
    order = jnp.lexsort((p, seg))  # stable: ties in p keep the row order
    s_w, s_seg = weights[order], seg[order]
    before = jnp.cumsum(s_w) - s_w
    start = before - jax.ops.segment_min(before, s_seg, num_segments=n)[s_seg]
    return jnp.zeros(n, jnp.int32).at[order].set(start)


def _level(split_fn, stop_fn, h, mask, groups, lo, stop_threshold, seg, done, reps=None, rows=None):
    """One level on ``n`` points: ``((new_seg, new_done), (seg, size, p, stop, active))``;
    ``reps``: the groups' representatives (:func:`group_representatives`), or None; ``rows``:
    ``(weights, h_var)`` when the rows stand for atoms (see :func:`unrolled_clustering`)."""
    n = h.shape[0]
    idx = jnp.arange(n, dtype=jnp.int32)
    kw = {} if rows is None else {"weight": rows[0], "h_var": rows[1]}
    count = mask.astype(jnp.int32) if rows is None else rows[0]
    size = jax.ops.segment_sum(count, seg, num_segments=n)
    seg_done = jax.ops.segment_max(done.astype(jnp.int32), seg, num_segments=n) > 0
    if stop_fn is None:  # no Stop: as a cut no vote exceeds
        stop = jnp.full(n, jnp.nan, h.dtype)
        active = (size >= lo) & ~seg_done
    else:
        stop = stop_fn(h, seg, mask, n, **kw)
        active = (size >= lo) & (stop <= stop_threshold) & ~seg_done
    if groups is not None:  # a cluster that is one atom cannot be split: it is a leaf
        g_lo = jax.ops.segment_min(jnp.where(mask, groups, n), seg, num_segments=n)
        g_hi = jax.ops.segment_max(jnp.where(mask, groups, -1), seg, num_segments=n)
        active = active & (g_lo != g_hi)
    if rows is not None:  # nor can one row (one atom)
        active = active & (jax.ops.segment_sum(mask.astype(jnp.int32), seg, num_segments=n) > 1)
    active_pt = active[seg] & mask

    p = jnp.where(mask, split_fn(h, seg, mask, n, **kw), 0.0).astype(h.dtype)
    if groups is not None:
        p = group_mean(p, groups, mask)
    right = p > 0.5
    n_right = jax.ops.segment_sum(jnp.where(right & mask, count, 0), seg, num_segments=n)
    degenerate = (n_right == 0) | (n_right == size)

    def median_side(_: None) -> jnp.ndarray:
        if groups is None and rows is None:
            rank = _rank_in_segment(jnp.lexsort((p, seg)), seg)  # by segment, then p
            return jnp.where(degenerate[seg], rank >= size[seg] // 2, right)
        # whole groups: cut at the start of the group holding the median position, or, when
        # that is the first group, at the start of the second (a cut inside a group would
        # send the whole group to one side and could leave the split degenerate)
        if rows is not None:  # every row is a group of ``weights`` points
            start = _weighted_starts(p, seg, rows[0])
        elif reps is None:  # a group's points are contiguous; it goes where its first point goes
            rank = _rank_in_segment(jnp.lexsort((groups, p, seg)), seg)
            start = jax.ops.segment_min(rank, groups, num_segments=n)[groups]
        else:
            start = _group_starts(p, seg, groups, mask, reps)
        half = (size // 2)[seg]
        cut = jax.ops.segment_max(jnp.where(start <= half, start, -1), seg, num_segments=n)
        second = jax.ops.segment_min(jnp.where(start > 0, start, n), seg, num_segments=n)
        cut = jnp.where(cut > 0, cut, second)
        return jnp.where(degenerate[seg], start >= cut[seg], right)

    # the sort is only paid at levels where some active cluster's split is degenerate
    side = jax.lax.cond(jnp.any(degenerate & active), median_side, lambda _: right, None).astype(
        jnp.int32
    )
    key = 2 * seg + side
    child = jax.ops.segment_min(idx, key, num_segments=2 * n)[key]
    new_seg = jnp.where(active_pt, child, seg)
    new_done = done | ~active_pt
    return (new_seg, new_done), (seg, size, p, stop.astype(h.dtype), active)


def _compact_level(t, split_fn, stop_fn, h, mask, groups, lo, stop_threshold, rows, seg, done):
    """:func:`_level` on the ``<= t`` points not yet frozen, gathered (in index order) into a
    block of ``t``: a cluster's id (its smallest point) maps to its smallest point's position in
    the block, and back, so ids, sizes and decisions are those of the whole-array level."""
    n = h.shape[0]
    live = ~done  # real points of clusters still in play (done starts as ~mask)
    pos = jnp.cumsum(live.astype(jnp.int32)) - 1  # block position of every live point
    count = jnp.sum(live)
    kc = jnp.arange(t, dtype=jnp.int32)
    orig = (
        jnp.zeros(t, jnp.int32)
        .at[jnp.where(live, pos, t)]
        .set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    )
    mask_c = kc < count
    h_c = jnp.where(mask_c[:, None], h[orig], 0.0)
    seg_c = jnp.where(mask_c, pos[seg[orig]], kc)  # a live cluster's smallest point is live
    groups_c = None
    if groups is not None:  # an atom's smallest block position (order-preserving relabel)
        g_min = jax.ops.segment_min(jnp.where(live, pos, t), groups, num_segments=n)
        groups_c = jnp.where(mask_c, g_min[groups[orig]], kc)
    rows_c = None
    if rows is not None:
        w_c = jnp.where(mask_c, rows[0][orig], 0)
        v_c = None if rows[1] is None else jnp.where(mask_c[:, None], rows[1][orig], 0.0)
        rows_c = (w_c, v_c)
    (new_c, done_c), (_, _, p_c, stop_c, active_c) = _level(
        split_fn, stop_fn, h_c, mask_c, groups_c, lo, stop_threshold, seg_c, ~mask_c, None, rows_c
    )
    back = jnp.where(live, pos, 0)  # block position of each point (valid where live)
    new_seg = jnp.where(live, orig[new_c[back]], seg)
    new_done = jnp.where(live, done_c[back], done)
    put = jnp.where(mask_c, orig, n)  # a block id's whole-array id; padding dropped
    # sizes of every cluster, frozen ones too (the tree table finds its nodes by them)
    count = mask.astype(jnp.int32) if rows is None else rows[0]
    size = jax.ops.segment_sum(count, seg, num_segments=n)
    p = jnp.zeros(n, h.dtype).at[put].set(p_c, mode="drop")
    stop = (
        jnp.full(n, 0.0 if stop_fn is not None else jnp.nan, h.dtype)
        .at[put]
        .set(stop_c, mode="drop")
    )
    active = jnp.zeros(n, bool).at[put].set(active_c, mode="drop")
    return (new_seg, new_done), (seg, size, p, stop, active)


def tree_to_table(out: dict[str, jnp.ndarray]) -> pd.DataFrame:
    """The cluster tree of :func:`unrolled_clustering` as a table of nodes (numpy).

    A node is a cluster at the level where it first appears (the root at level 0, children at the
    level after their parent's split); frozen clusters carried to later levels are not repeated.

    Returns:
      DataFrame, one row per node, with ``node_id`` (row number), ``parent`` (-1 for the root),
      ``level``, ``segment`` (its id at that level), ``size``, ``split_prob`` (mean ``p_right`` of
      its points at its level), ``stop_prob`` (its stop probability at its level), ``split`` (bool:
      it was split), ``leaf`` (bool: not split). Nodes at the final level ``L`` were never
      evaluated: ``split_prob`` and ``stop_prob`` are NaN there.
    """
    segs = np.asarray(out["segment"])
    sizes = np.asarray(out["size"])
    ps = np.asarray(out["p_right"])
    stops = np.asarray(out["stop"])
    actives = np.asarray(out["active"])
    mask = np.asarray(out["mask"]).astype(bool)
    n_levels, n = segs.shape
    depth = n_levels - 1

    node_of = np.full(n, -1, np.int64)  # node id of each segment id at the current level
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("parent", "level", "segment", "size")}
    cols.update(split_prob=[], stop_prob=[], split=[])
    next_id = 0
    for lev in range(n_levels):
        ids = np.flatnonzero(sizes[lev] > 0)
        if lev == 0:
            new = ids
            parent = np.full(len(new), -1, np.int64)
        else:
            prev = segs[lev - 1][ids]  # the id of each cluster's parent (ids are member points)
            is_new = actives[lev - 1][prev]
            new, parent = ids[is_new], node_of[prev[is_new]]
            carried = node_of[ids[~is_new]]
            node_of = np.full(n, -1, np.int64)
            node_of[ids[~is_new]] = carried
        node_of[new] = next_id + np.arange(len(new))
        next_id += len(new)
        cols["parent"].append(parent)
        cols["level"].append(np.full(len(new), lev, np.int64))
        cols["segment"].append(new)
        cols["size"].append(sizes[lev][new].astype(np.int64))
        if lev < depth:
            psum = np.bincount(segs[lev][mask], weights=ps[lev][mask], minlength=n)
            cols["split_prob"].append(psum[new] / np.maximum(sizes[lev][new], 1))
            cols["stop_prob"].append(stops[lev][new].astype(np.float64))
            cols["split"].append(actives[lev][new].astype(bool))
        else:
            cols["split_prob"].append(np.full(len(new), np.nan))
            cols["stop_prob"].append(np.full(len(new), np.nan))
            cols["split"].append(np.zeros(len(new), bool))
    table = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    table.insert(0, "node_id", np.arange(len(table), dtype=np.int64))
    table["leaf"] = ~table["split"].to_numpy()
    return table


def atom_rows(h: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """The atoms ``groups [n]`` of the points ``h [n, D]`` as weighted rows for
    :func:`unrolled_clustering` (``weights=``, ``h_var=``), numpy.

    Rows are in the order of their atoms' first points, so a cluster of rows is named by its
    smallest row exactly when it is named by its smallest point (:func:`rows_to_points`).

    Returns:
      dict with ``row [n]`` (each point's row), ``first [G]`` (each row's first point,
      ascending), ``weights [G]`` int32 (points per row), ``h [G, D]`` (their mean) and
      ``h_var [G, D]`` (their variance), float32.
    """
    h = np.asarray(h, np.float32)
    if len(h) == 0:
        e = np.zeros(0, np.int32)
        z = np.zeros((0, *h.shape[1:]), np.float32)
        return {"row": e, "first": e, "weights": e, "h": z, "h_var": z}
    _, first, inv, counts = np.unique(
        np.asarray(groups), return_index=True, return_inverse=True, return_counts=True
    )
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    row = rank[inv.ravel()].astype(np.int32)
    by_row = np.argsort(row, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    w = counts[order].astype(np.float32)[:, None]
    hs = h[by_row].astype(np.float64)
    mean = np.add.reduceat(hs, starts, axis=0) / w
    var = np.maximum(np.add.reduceat(hs * hs, starts, axis=0) / w - mean * mean, 0.0)
    return {
        "row": row,
        "first": first[order].astype(np.int32),
        "weights": counts[order].astype(np.int32),
        "h": mean.astype(np.float32),
        "h_var": var.astype(np.float32),
    }


def rows_to_points(
    out: Mapping[str, Any], row: np.ndarray, first: np.ndarray, size: int
) -> Mapping[str, np.ndarray]:
    """:func:`unrolled_clustering`'s output on atom rows (:func:`atom_rows`) as the output on
    the ``n = len(row)`` points padded to ``size``: per-point arrays through each point's row,
    per-segment arrays at each row's first point, segment ids (a row id) as point ids; padding
    points in their own segments of size 0, as :func:`unrolled_clustering` leaves them.

    A read-only mapping with the keys of :func:`unrolled_clustering`'s output; each array is
    made when first read (a full event's ``[L, N]`` arrays cost ~0.15 s, and
    :meth:`~cgnn_jax.inference.Pipeline.reconstruct` reads only ``cluster``)."""
    return _PointsView(out, np.asarray(row), np.asarray(first), int(size))


class _PointsView(Mapping):
    """The lazily mapped output of :func:`rows_to_points`."""

    _KEYS = ("cluster", "segment", "p_right", "stop", "active", "size", "mask")

    def __init__(self, out, row, first, size):
        self._out, self._row, self._first, self._size = out, row, first, size
        self._done: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._KEYS)

    def __iter__(self):
        return iter(self._KEYS)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._KEYS:
            raise KeyError(key)
        if key not in self._done:
            self._done[key] = self._make(key)
        return self._done[key]

    def _make(self, key: str) -> np.ndarray:
        row, first, size = self._row, self._first, self._size
        n, g = len(row), len(first)
        if key == "mask":
            return np.arange(size) < n
        a = np.asarray(self._out[key])
        if key == "cluster":
            out = np.full(size, -1, np.int32)
            out[:n] = first[a[row]]
            return out
        if key == "segment":  # [..., G_padded] row ids -> [..., size] point ids
            rows = a[..., row]
            pad = np.arange(n, size, dtype=np.int32)
            return np.concatenate(
                [first[rows], np.broadcast_to(pad, (*rows.shape[:-1], size - n))], -1
            )
        if key == "p_right":  # per point
            return np.concatenate([a[..., row], np.zeros((*a.shape[:-1], size - n), a.dtype)], -1)
        # per segment id (Stop's votes NaN throughout where Stop was not evaluated)
        fill = np.nan if key == "stop" and a.size and np.isnan(a).all() else 0
        z = np.full((*a.shape[:-1], size), fill, a.dtype)
        z[..., first] = a[..., :g]
        return z
