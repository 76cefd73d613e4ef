"""Stop targets computed on the fly, inside jit, over the whole unrolled tree (thesis eq. 2.48-2.52).

The numpy reference is :func:`cgnn_jax.cluster.losses.stop_labels` (on the node table); this is the
same rule on the ``[L + 1, N]`` arrays of :func:`cgnn_jax.cluster.recursion.unrolled_clustering`,
so the labels of a training tree cost a few ``segment_sum`` per level and no host round trip.

Per level ``l`` and segment id ``p`` (a cluster alive at that level):

* ``s_p`` = precision x recall of the cluster against its majority particle (the particle with
  the most points in it; ties go to the better score); noise points count in the size (they
  lower the precision), ``s = 0`` for clusters of fewer than ``min_size`` points;
* ``w_p = size_p / n`` (fraction of all real points; only ratios matter). Known limitation:
  ``s w = c^2 / (n_particle n)`` does not depend on the noise points in a cluster, so these
  labels never ask for noise to be split off a clean cluster (that ties with stopping, and a tie
  is labelled stop). Weighting by particle points only does ask for it, but over-split the toy
  clouds of :class:`cgnn_jax.ClusteringGNN` (held-out ARI 0.845 against 0.875) and was dropped;
* ``R_p = max(s_p w_p, R_left + R_right)`` if ``p`` was split at level ``l``, else
  ``R_p = s_p w_p`` (a frozen cluster is carried unchanged to the next level);
* ``stop_label = 1`` where ``s_p w_p >= R_left + R_right`` (stopping is at least as good as the
  best clustering of the subtree), and always for a leaf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cgnn_jax.cluster.losses import pair_group_ids, tree_groups


def dense_particle_labels(pid, mask):
    """``[N]`` int32 particle index in ``[1, N]`` (0: noise or padding) from raw ids (numpy).

    Raw TrackML particle ids are 64-bit; jit works in int32, so they are replaced by dense
    indices on the host.
    """
    import numpy as np

    pid = np.asarray(pid)
    mask = np.asarray(mask).astype(bool)
    real = mask & (pid != 0)
    out = np.zeros(len(pid), np.int32)
    if real.any():
        _, inv = np.unique(pid[real], return_inverse=True)
        out[real] = inv.reshape(-1).astype(np.int32) + 1
    return out


def cluster_scores_jnp(
    seg: jnp.ndarray,
    label: jnp.ndarray,
    mask: jnp.ndarray,
    min_size: int = 3,
    group: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per segment id ``[N]``: ``(size, s)`` with ``s`` = precision x recall (jit-able).

    Args:
      seg: ``[N]`` int32 segment id per point, in ``[0, N)``.
      label: ``[N]`` int32 dense particle index (:func:`dense_particle_labels`; 0 = noise).
      mask: ``[N]`` bool, False for padding.
      group: optional ``[N]`` ``(segment, particle)`` group ids in ``[0, N)`` (e.g. from
        :func:`cgnn_jax.cluster.losses.tree_groups`); computed with a sort if not given.
    """
    n = seg.shape[0]
    valid = mask & (label > 0)
    vf = valid.astype(jnp.float32)
    size = jax.ops.segment_sum(mask.astype(jnp.float32), seg, num_segments=n)
    if group is None:
        group = pair_group_ids(seg, label, valid)
    cnt = jax.ops.segment_sum(vf, group, num_segments=n)[group]  # points of (seg, particle)
    ptot = jax.ops.segment_sum(vf, label, num_segments=n + 1)[label]  # points of the particle
    maxc = jax.ops.segment_max(jnp.where(valid, cnt, 0.0), seg, num_segments=n)
    is_major = valid & (cnt >= maxc[seg])
    sc = jnp.where(is_major, cnt * cnt / (jnp.maximum(size[seg], 1.0) * jnp.maximum(ptot, 1.0)), 0)
    s = jnp.maximum(jax.ops.segment_max(sc, seg, num_segments=n), 0.0)
    s = jnp.where(size >= min_size, s, 0.0)
    return size, s


def stop_targets(
    out: dict[str, jnp.ndarray],
    label: jnp.ndarray,
    min_size: int = 3,
    groups: jnp.ndarray | None = None,
) -> dict[str, jnp.ndarray]:
    """Stop labels of every node of an unrolled tree (jit-able).

    Args:
      out: :func:`cgnn_jax.cluster.recursion.unrolled_clustering` output (``segment [L+1, N]``,
        ``active [L, N]``, ``mask [N]``).
      label: ``[N]`` int32 dense particle index (0: noise / padding).
      min_size: clusters smaller than this score 0.
      groups: optional ``[L + 1, N]`` group ids (:func:`cgnn_jax.cluster.losses.tree_groups`).
    Returns:
      dict with ``label [L, N]`` (float 0/1 per segment id and level), ``node [L, N]`` bool (the
      segment id is a node first seen at that level with at least ``min_size`` points: the
      decisions the stop module is trained on), ``score [L + 1, N]`` (``s``) and ``rec [L + 1, N]``
      (``R``, in units of the fraction of points).
    """
    segs, active, mask = out["segment"], out["active"], out["mask"]
    n = segs.shape[1]
    idx = jnp.arange(n, dtype=segs.dtype)
    n_real = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)

    if groups is None:
        groups = tree_groups(segs, label, mask & (label > 0))
    sizes, s_all = jax.vmap(lambda s, g: cluster_scores_jnp(s, label, mask, min_size, g))(
        segs, groups
    )  # [L+1, N]
    own = s_all * sizes / n_real
    heads = (segs == idx[None, :]) & mask[None, :]  # [L+1, N]: segment id p alive at level l

    def back(r_next, xs):
        seg_l, seg_next, head_next, own_l, act_l = xs
        # children of cluster p at level l: the heads c at level l+1 whose level-l segment is p
        child_sum = jax.ops.segment_sum(jnp.where(head_next, r_next, 0.0), seg_l, num_segments=n)
        r_l = jnp.where(act_l, jnp.maximum(own_l, child_sum), r_next)
        lab = jnp.where(act_l, (own_l >= child_sum).astype(jnp.float32), 1.0)
        del seg_next
        return r_l, (r_l, lab)

    xs = (segs[:-1], segs[1:], heads[1:], own[:-1], active)
    _, (rec, lab) = jax.lax.scan(back, own[-1], xs, reverse=True)
    rec = jnp.concatenate([rec, own[-1:]], 0)
    # a node is first seen at level l if it is a head there and was not carried frozen from l-1
    prev_active = jnp.concatenate(
        [jnp.ones((1, n), bool), jax.vmap(lambda a, s: a[s])(active[:-1], segs[:-2])], 0
    )
    node = heads[:-1] & prev_active & (sizes[:-1] >= min_size)
    return {"label": lab, "node": node, "score": s_all, "rec": rec}
