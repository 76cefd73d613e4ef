"""Iterative clustering (the thesis's future work, sec. 4.3): re-cluster low-confidence clusters.

After one pass of the unrolled Split/Stop recursion, every final cluster gets a confidence from
its aggregated probabilities: the stop probability the Stop module gave it at the level where it
was frozen. Clusters frozen without a confident stop (too small to split, or still being split at
the maximum depth) get confidence 0. The points of all clusters below ``cutoff`` are pooled and
clustered again from a single root, as a new, smaller and less crowded point set; their new
clusters replace the old ones. This repeats for ``rounds`` rounds or until no point is left below
the cutoff.
"""

from __future__ import annotations

from typing import Any, Protocol

import ml_collections
import numpy as np

from cgnn_jax.cluster.tracks import dense_track_ids


class Clusterer(Protocol):
    """What re-clustering needs of a model (e.g. :class:`cgnn_jax.inference.Stage3`)."""

    @property
    def cluster_config(self) -> ml_collections.ConfigDict: ...

    def track_ids(self, h: np.ndarray, groups: np.ndarray | None = None) -> dict[str, Any]: ...


def leaf_confidence(out: dict, n: int, min_size: int = 3) -> np.ndarray:
    """``[n]`` confidence of each real point's final cluster (numpy, vectorised).

    Args:
      out: :func:`cgnn_jax.cluster.recursion.unrolled_clustering` output (numpy; the first ``n``
        points are the real ones).
      n: number of real points.
      min_size: clusters smaller than this get confidence 0.
    """
    seg = np.asarray(out["segment"])[:, :n]  # [L+1, n]
    active = np.asarray(out["active"])  # [L, N]
    stop = np.asarray(out["stop"])  # [L, N]
    n_lev = active.shape[0]
    rows = np.arange(n_lev)[:, None]
    act_pt = active[rows, seg[:-1]]  # [L, n]: was the point's cluster split at level l
    frozen = ~act_pt
    has = frozen.any(0)
    first = np.argmax(frozen, axis=0)  # the level where its final cluster was frozen
    conf = np.where(has, stop[first, seg[first, np.arange(n)]], 0.0)
    size = np.bincount(seg[-1], minlength=active.shape[1])[seg[-1]]
    return np.where(size >= min_size, conf, 0.0).astype(np.float64)


def iterative_recluster(
    pipe: Clusterer,
    h: np.ndarray,
    out: dict,
    track_id: np.ndarray,
    rounds: int | None = None,
    cutoff: float | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Track ids ``[n]`` after re-clustering the low-confidence clusters.

    Args:
      pipe: the model whose Split/Stop re-cluster (a :class:`cgnn_jax.inference.Stage3`).
      h: ``[n, D]`` the points (:meth:`Stage3.cluster_inputs`).
      out: the first pass (:meth:`Stage3.cluster` of ``h``).
      track_id: ``[n]`` the first pass's track ids.
      rounds, cutoff: default ``config.cluster.iterative_rounds`` / ``iterative_cutoff``.
      groups: ``[n]`` the graph-consistent Split's atoms of the first pass
        (:meth:`Stage3.groups`), kept together when re-clustering; None: none.
    """
    cc = pipe.cluster_config
    rounds = int(cc.iterative_rounds if rounds is None else rounds)
    cutoff = float(cc.iterative_cutoff if cutoff is None else cutoff)
    min_size = int(cc.min_size)

    n = len(h)
    tid = np.asarray(track_id, np.int64).copy()
    conf = leaf_confidence(out, n, min_size)
    for _ in range(max(rounds, 0)):
        low = np.flatnonzero(conf < cutoff)
        if len(low) < min_size:
            break
        sub_groups = None
        if groups is not None:  # the atoms among the re-clustered points, numbered 0..k-1
            sub_groups = np.unique(np.asarray(groups)[low], return_inverse=True)[1].astype(np.int32)
        st = pipe.track_ids(h[low], sub_groups)
        sub = st["clustering"]
        tid[low] = st["track_id"] + tid.max()
        conf[low] = leaf_confidence(sub, len(low), min_size)
    return dense_track_ids(tid)
