"""The stage-3 training objective: split and stop losses over one unrolled training tree (jit-able).

:func:`clustering_loss` runs the recursion with the stop module *disabled* (every cluster of at
least ``min_size`` points is split, down to ``max_depth``), so that the whole tree below every node
exists and the stop targets (:func:`cgnn_jax.cluster.targets.stop_targets`) can compare stopping
with the best clustering of the subtree. Then

* split loss: the mean over every (level, split cluster holding at least two particles) of
  eq. 2.40-2.45 (:func:`cgnn_jax.cluster.losses.split_loss`; a one-particle cluster's loss is the
  constant ``log 2`` with no gradient, and counting them would only shrink the gradient); noise
  points are left out of it;
* stop loss: class-balanced binary cross-entropy between the stop probability of every node of at
  least ``min_size`` points and its label (the two classes weigh the same, whatever their counts).

The split decisions are discrete (``p > 0.5``, or the median rule), so the tree itself carries no
gradient; the gradients flow through the probabilities ``p_right`` and ``stop`` into the Split and
Stop parameters and, through the point features ``h``, into whatever computed ``h`` (the GNN and
the embedding in end-to-end training).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cgnn_jax.cluster.losses import split_loss, tree_groups
from cgnn_jax.cluster.recursion import SegmentFn, unrolled_clustering
from cgnn_jax.cluster.targets import stop_targets

_EPS = 1e-6


def balanced_bce(p: jnp.ndarray, y: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Mean of the per-class mean BCEs of probabilities ``p`` vs 0/1 labels ``y`` with weights ``w``
    (0 leaves an entry out); a class with no entries adds nothing."""
    p = jnp.clip(p, _EPS, 1.0 - _EPS)
    pos, neg = w * y, w * (1.0 - y)
    lp = jnp.sum(-pos * jnp.log(p)) / jnp.maximum(jnp.sum(pos), 1.0)
    ln = jnp.sum(-neg * jnp.log1p(-p)) / jnp.maximum(jnp.sum(neg), 1.0)
    k = (jnp.sum(pos) > 0).astype(p.dtype) + (jnp.sum(neg) > 0).astype(p.dtype)
    return (lp + ln) / jnp.maximum(k, 1.0)


def clustering_loss(
    split_fn: SegmentFn,
    stop_fn: SegmentFn,
    h: jnp.ndarray,
    mask: jnp.ndarray,
    label: jnp.ndarray,
    max_depth: int,
    min_size: int = 3,
    stop_weight: float = 1.0,
    groups: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Split + stop loss of one point set (one event or sub-graph, padded).

    Args:
      split_fn, stop_fn: as in :func:`cgnn_jax.cluster.recursion.unrolled_clustering`.
      h: ``[N, D]`` point features (differentiable).
      mask: ``[N]`` bool, False for padding.
      label: ``[N]`` int32 dense particle index (0: noise or padding), see
        :func:`cgnn_jax.cluster.targets.dense_particle_labels`.
      max_depth: levels of the training tree (static).
      min_size: clusters smaller than this are not split and score 0.
      stop_weight: weight of the stop loss.
      groups: ``[N]`` optional atoms the tree never separates (see
        :func:`~cgnn_jax.cluster.recursion.unrolled_clustering`).
    Returns:
      ``(loss, metrics)``; metrics: ``split_loss``, ``stop_loss``, ``stop_acc`` (accuracy of
      ``stop > 0.5`` on the nodes), ``stop_pos`` (fraction of nodes labelled stop), ``best_score``
      (``R`` of the root: the best score any pruning of this tree could reach, as a fraction of
      the points).
    """
    out = unrolled_clustering(
        split_fn, stop_fn, h, mask, max_depth, min_size, stop_threshold=2.0, groups=groups
    )
    valid = mask & (label > 0)
    groups = tree_groups(out["segment"], label, valid)  # [L + 1, N], no sort

    def level_loss(p, seg, act, group):
        n = seg.shape[0]
        loss, _ = split_loss(p, seg, group, valid, n, n, act, min_particles=2)
        head = valid & (group == jnp.arange(n, dtype=group.dtype))  # one point per group
        n_part = jax.ops.segment_sum(head.astype(jnp.int32), seg, num_segments=n)
        return jnp.sum(loss), jnp.sum(act & (n_part >= 2))

    sums, counts = jax.vmap(level_loss)(
        out["p_right"], out["segment"][:-1], out["active"], groups[:-1]
    )
    l_split = jnp.sum(sums) / jnp.maximum(jnp.sum(counts), 1)

    tg = jax.tree_util.tree_map(jax.lax.stop_gradient, stop_targets(out, label, min_size, groups))
    w = tg["node"].astype(h.dtype)
    l_stop = balanced_bce(out["stop"], tg["label"], w)
    nw = jnp.maximum(jnp.sum(w), 1.0)
    acc = jnp.sum(w * ((out["stop"] > 0.5) == (tg["label"] > 0.5))) / nw
    metrics = {
        "split_loss": l_split,
        "stop_loss": l_stop,
        "stop_acc": acc,
        "stop_pos": jnp.sum(w * tg["label"]) / nw,
        "best_score": jnp.max(tg["rec"][0]),
    }
    return l_split + stop_weight * l_stop, metrics
