"""Losses and targets of the Split and Stop modules (stage 3).

Split loss (thesis eq. 2.40-2.45). For a cluster (segment) ``s`` holding particles ``k``, let
``m_k`` be the mean ``p_right`` of particle ``k``'s points in ``s`` and ``H`` the binary entropy
``H(p) = -p log p - (1 - p) log(1 - p)``. Then

    L_s = mean_k H(m_k)  -  H(mean_k m_k)  +  log 2

The first term is minimised when every particle goes wholly to one side, the second when the
segment is split into two groups of equally many particles. The constant ``log 2`` (which changes
no gradient) makes ``L_s >= 0`` with ``L_s = 0`` exactly for a perfect balanced split. Noise
points (``pid == 0``) belong to no particle and are left out of both terms (they still follow
the split, but no target says where they should go). Particles are weighted equally, whatever
their number of points.

Stop labels (thesis eq. 2.48-2.52) from recursive scores over a cluster tree: see
:func:`stop_labels` (numpy reference; the jnp version, on the ``[L, N]`` arrays of
:func:`cgnn_jax.cluster.recursion.unrolled_clustering`, is next).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

_EPS = 1e-7


def binary_entropy(p: jnp.ndarray) -> jnp.ndarray:
    """``H(p) = -p log p - (1 - p) log(1 - p)`` (nats), clipped away from 0 and 1 for gradients."""
    p = jnp.clip(p, _EPS, 1.0 - _EPS)
    return -p * jnp.log(p) - (1.0 - p) * jnp.log1p(-p)


def pair_group_ids(seg: jnp.ndarray, pid: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """Dense ids ``[N]`` in ``[0, N)`` of the ``(segment, particle)`` pairs (jit-able, one sort).

    Points with the same ``(seg, pid)`` get the same id; different pairs get different ids.
    Invalid points (``valid`` False: padding, noise) get ids too, but distinct from every valid
    pair's; weight them out with ``valid``. Use ``num_groups = N``.
    """
    n = seg.shape[0]
    # invalid points each in their own pair: key (seg, pid) -> (n + j, j) never collides
    j = jnp.arange(n, dtype=seg.dtype)
    s = jnp.where(valid, seg, n + j)
    q = jnp.where(valid, pid, j.astype(pid.dtype))
    order = jnp.lexsort((q, s))
    ss, qs = s[order], q[order]
    boundary = jnp.concatenate([jnp.array([0]), ((ss[1:] != ss[:-1]) | (qs[1:] != qs[:-1]))])
    dense = jnp.cumsum(boundary.astype(jnp.int32))
    return jnp.zeros(n, jnp.int32).at[order].set(dense)


def split_loss(
    p_right: jnp.ndarray,
    seg: jnp.ndarray,
    group: jnp.ndarray,
    weight: jnp.ndarray,
    num_segments: int,
    num_groups: int,
    active: jnp.ndarray | None = None,
    min_particles: int = 1,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Split loss of every segment and their mean.

    Args:
      p_right: ``[N]`` split probability per point.
      seg: ``[N]`` int segment id per point, in ``[0, num_segments)``.
      group: ``[N]`` int dense id of the point's ``(segment, particle)`` pair, in
        ``[0, num_groups)`` (:func:`pair_group_ids`).
      weight: ``[N]`` bool/float, 0 for points left out (padding, noise ``pid == 0``).
      num_segments, num_groups: static sizes (``N`` for both is always enough).
      active: optional ``[num_segments]`` bool, the segments that were split (others get loss 0
        and are left out of the mean).
      min_particles: segments holding fewer particles get loss 0 and are left out of the mean.
        A segment of one particle always has ``L_s = log 2`` and no gradient (its two entropy
        terms cancel): with ``min_particles=2`` such segments, the majority deep in a tree, do
        not dilute the mean.
    Returns:
      ``(loss [num_segments], mean loss over the active segments holding at least one particle)``.
    """
    w = weight.astype(p_right.dtype)
    cnt = jax.ops.segment_sum(w, group, num_segments=num_groups)
    m = jax.ops.segment_sum(w * p_right, group, num_segments=num_groups) / jnp.maximum(cnt, 1.0)
    exists = (cnt > 0).astype(p_right.dtype)
    group_seg = jax.ops.segment_max(jnp.where(w > 0, seg, -1), group, num_segments=num_groups)
    group_seg = jnp.maximum(group_seg, 0)  # empty groups: weight 0 below
    n_k = jax.ops.segment_sum(exists, group_seg, num_segments=num_segments)
    denom = jnp.maximum(n_k, 1.0)
    mean_h = jax.ops.segment_sum(exists * binary_entropy(m), group_seg, num_segments) / denom
    mean_m = jax.ops.segment_sum(exists * m, group_seg, num_segments=num_segments) / denom
    has = n_k >= max(min_particles, 1)
    if active is not None:
        has = has & active
    loss = jnp.where(has, mean_h - binary_entropy(mean_m) + jnp.log(2.0), 0.0)
    hasf = has.astype(loss.dtype)
    return loss, jnp.sum(loss) / jnp.maximum(jnp.sum(hasf), 1.0)


def cluster_scores(
    seg: np.ndarray, pid: np.ndarray, mask: np.ndarray, min_size: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Per segment id: ``(size [N], s [N])``, ``s`` = precision x recall vs the majority particle.

    ``seg [N]`` ids in ``[0, N)``, ``pid [N]`` (0 = noise), ``mask [N]``. The majority particle is
    the most frequent non-noise ``pid`` among the cluster's points; precision = its count / cluster
    size (noise points count in the size), recall = its count / the particle's number of points
    in the event. ``s = 0`` for clusters with fewer than ``min_size`` points or only noise.
    """
    seg, pid, mask = np.asarray(seg), np.asarray(pid), np.asarray(mask).astype(bool)
    n = len(seg)
    size = np.bincount(seg[mask], minlength=n)
    real = mask & (pid != 0)
    upid, pinv = np.unique(pid[real], return_inverse=True)
    p_total = np.bincount(pinv, minlength=len(upid))
    key = seg[real].astype(np.int64) * max(len(upid), 1) + pinv
    ukey, kcnt = np.unique(key, return_counts=True)
    kseg, kp = ukey // max(len(upid), 1), ukey % max(len(upid), 1)
    best = np.zeros(n)
    # per segment, the pair with the largest count (the majority particle; ties: any)
    order = np.lexsort((kcnt, kseg))
    last = np.r_[kseg[order][1:] != kseg[order][:-1], True]
    top = order[last]
    best[kseg[top]] = kcnt[top] / size[kseg[top]] * (kcnt[top] / p_total[kp[top]])
    best[size < min_size] = 0.0
    return size, best


def stop_labels(
    table: pd.DataFrame,
    out: dict[str, np.ndarray],
    pid: np.ndarray,
    min_size: int = 3,
) -> pd.DataFrame:
    """Stop targets for the nodes of a cluster tree from recursive scores (numpy reference).

    With ``s_p`` the score of node ``p`` (:func:`cluster_scores`) and ``w_p = size_p / size_root``
    (the fraction of all points; the thesis's ``w`` relative to the parent gives the same
    decisions, both sides being multiplied by the parent's weight), the recursive score is

        R_p = max(s_p w_p, sum_{children c} R_c)          (R_p = s_p w_p for a leaf)

    and ``stop_label = 1`` where ``s_p w_p >= sum_c R_c`` (always at a leaf): stopping at ``p``
    scores at least as well as the best clustering of its subtree.

    Args:
      table: :func:`cgnn_jax.cluster.recursion.tree_to_table` of ``out``.
      out: output of :func:`cgnn_jax.cluster.recursion.unrolled_clustering`.
      pid: ``[N]`` true particle id per point (0 = noise).
    Returns:
      a copy of ``table`` with columns ``score`` (``s``), ``weight`` (``w``), ``rec_score``
      (``R``) and ``stop_label`` (int 0/1).
    """
    segs = np.asarray(out["segment"])
    mask = np.asarray(out["mask"]).astype(bool)
    lev = table["level"].to_numpy()
    sid = table["segment"].to_numpy()
    score = np.zeros(len(table))
    for level in np.unique(lev):
        _, s = cluster_scores(segs[level], pid, mask, min_size)
        rows = lev == level
        score[rows] = s[sid[rows]]
    size = table["size"].to_numpy().astype(np.float64)
    weight = size / max(size[table["parent"].to_numpy() < 0].sum(), 1.0)
    own = score * weight
    parent = table["parent"].to_numpy()
    child_sum = np.zeros(len(table))
    rec = own.copy()
    for level in np.sort(np.unique(lev))[::-1]:
        rows = np.flatnonzero(lev == level)
        has_kids = ~table["leaf"].to_numpy()[rows]
        rec[rows] = np.where(has_kids, np.maximum(own[rows], child_sum[rows]), own[rows])
        kids = rows[parent[rows] >= 0]
        np.add.at(child_sum, parent[kids], rec[kids])
    res = table.copy()
    res["score"] = score
    res["weight"] = weight
    res["rec_score"] = rec
    res["stop_label"] = (~table["split"].to_numpy() | (own >= child_sum)).astype(np.int64)
    return res


def initial_groups(label: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """``[N]`` ``(segment, particle)`` group ids when all valid points are in one segment.

    A group's id is the smallest point index in it (as for segments); invalid points (noise,
    padding) are singleton groups. ``label [N]`` dense particle index in ``[0, N]``.
    """
    n = label.shape[0]
    idx = jnp.arange(n, dtype=jnp.int32)
    first = jax.ops.segment_min(jnp.where(valid, idx, n), label, num_segments=n + 1)
    return jnp.where(valid, first[label], idx).astype(jnp.int32)


def refine_groups(group: jnp.ndarray, seg: jnp.ndarray, new_seg: jnp.ndarray) -> jnp.ndarray:
    """Group ids after one level of splitting, in O(N) with no sort.

    ``group [N]`` refines ``seg [N]`` (each group lies in one segment); after a split, the two
    children of a segment are told apart by whether they kept the parent's id (the child holding
    the parent's smallest point does), so the new groups are ``(group, new_seg == seg)``.
    """
    n = group.shape[0]
    idx = jnp.arange(n, dtype=jnp.int32)
    key = 2 * group + (new_seg != seg).astype(group.dtype)
    return jax.ops.segment_min(idx, key, num_segments=2 * n)[key].astype(jnp.int32)


def tree_groups(segment: jnp.ndarray, label: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """``[L + 1, N]`` ``(segment, particle)`` group ids at every level of an unrolled tree
    (``segment [L + 1, N]``): a scan of :func:`refine_groups`, no sort."""
    g0 = initial_groups(label, valid)

    def body(g, s):
        g1 = refine_groups(g, s[0], s[1])
        return g1, g1

    _, rest = jax.lax.scan(body, g0, jnp.stack([segment[:-1], segment[1:]], 1))
    return jnp.concatenate([g0[None], rest], 0)
