"""Non-learned clusterers of points already embedded in a learned space ``h [n, d]``.

These are the references for the learned Split/Stop clustering on the same GNN embedding: the
same points, clustered by a fixed rule with one tuned threshold.

* :func:`dbscan_space`: DBSCAN (scikit-learn) with radius ``eps``.
* :func:`hdbscan_space`: HDBSCAN (scikit-learn), no radius to tune.
* :func:`edge_components`: connected components of a given edge set (e.g. the GNN's input
  graph) after cutting edges of length ``>= cut``.
* :func:`knn_components`: the same on the ``k``-nearest-neighbour graph of ``h`` itself.
* :func:`tune_cut`: the ``eps``/``cut`` of the best TrackML score on a few tuning events.

Label convention (every clusterer): ``[n]`` int64, consecutive from 0 in order of first
appearance (so the labels depend only on the partition and the row order); noise, unclustered
and masked-out points each get their own singleton label. The output is directly a TrackML
``track_id`` column. Every clusterer takes an optional ``mask [n]`` (False: padding rows),
so padded arrays give the same labels on the real rows as the unpadded ones.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SpaceEvent = tuple[np.ndarray, np.ndarray, pd.DataFrame, Mapping[str, Any] | None]
"""A tuning event ``(h [n, d], hit_id [n], truth, extra_kwargs)``: the embedded hits, their hit
ids (row order of ``h``), the truth frame (``hit_id, particle_id, weight``) and the clusterer's
per-event keyword arguments (e.g. ``senders``/``receivers`` for :func:`edge_components`)."""

ScoreFn = Callable[[pd.DataFrame, pd.DataFrame], float]
"""``score_fn(truth, submission) -> float``; the submission has ``hit_id, track_id``."""


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Cluster labels -> the house convention (see the module docstring).

    Args:
      labels: ``[n]`` ints; negative values (e.g. DBSCAN's ``-1`` noise) are singletons.

    Returns:
      ``[n]`` int64 labels ``0..k-1``, numbered in order of first appearance.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = len(labels)
    # noise -> unique keys above every real label (no collision)
    top = labels.max() + 1 if n else 0
    keyed = np.where(labels < 0, top + np.arange(n, dtype=np.int64), labels)
    _, first, inverse = np.unique(keyed, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first), dtype=np.int64)
    return rank[inverse.reshape(-1)]


def _points(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"h must be [n, d], got shape {h.shape}")
    return h


def _check_mask(mask: np.ndarray | None, n: int) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), got {mask.shape}")
    return mask


def _on_masked(
    h: np.ndarray, mask: np.ndarray | None, fn: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``fn(h[mask]) -> labels`` spread back to ``[n]``; masked rows get -1 (singletons)."""
    mask = _check_mask(mask, len(h))
    if len(h) == 0:
        return np.zeros(0, np.int64)
    if mask is None:
        return canonical_labels(fn(h))
    out = np.full(len(h), -1, np.int64)
    if mask.any():
        out[mask] = fn(h[mask])
    return canonical_labels(out)


def dbscan_space(
    h: np.ndarray,
    eps: float,
    min_samples: int = 2,
    mask: np.ndarray | None = None,
    n_jobs: int | None = -1,
) -> np.ndarray:
    """DBSCAN of embedded points (:class:`sklearn.cluster.DBSCAN`, kd-tree, Euclidean).

    Args:
      h: ``[n, d]`` float32 embedded points.
      eps: neighbourhood radius (inclusive: pairs at distance ``<= eps`` are neighbours);
        ``0`` is allowed (only identical points are neighbours).
      min_samples: points (the point itself included) within ``eps`` that make a core point;
        ``1``: the connected components of the ``eps``-graph.
      mask: optional ``[n]`` bool, False for padding rows (left out, singleton labels).
      n_jobs: threads for the neighbour search (-1: all cores).

    Returns:
      ``[n]`` int64 labels, consecutive from 0; noise points are singletons.
    """
    from sklearn.cluster import DBSCAN

    h = _points(h)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    eps = max(float(eps), float(np.finfo(np.float64).tiny))  # scikit-learn wants eps > 0

    def fit(x: np.ndarray) -> np.ndarray:
        db = DBSCAN(
            eps=float(eps), min_samples=int(min_samples), algorithm="kd_tree", n_jobs=n_jobs
        )
        return db.fit(x).labels_

    return _on_masked(h, mask, fit)


def hdbscan_space(
    h: np.ndarray,
    min_cluster_size: int = 3,
    min_samples: int | None = None,
    mask: np.ndarray | None = None,
    **kw: Any,
) -> np.ndarray:
    """HDBSCAN of embedded points (:class:`sklearn.cluster.HDBSCAN`, Euclidean).

    The neighbour (core-distance) search defaults to ``algorithm="kd_tree"`` so that
    scikit-learn never falls back to the ``O(n^2)``-memory ``brute`` distance matrix (about
    97 GB at 110k points). scikit-learn's minimum spanning tree (Prim's algorithm on the
    mutual-reachability distance) is still ``O(n^2)`` in time, ``O(n)`` in memory: measured on
    ``n/10`` blobs of 10 points in 12-D, 2 cores (with another job running): 0.4 s at 10k
    points, 8.6 s at 50k, 48 s at 110k (about ``n^2.2``). That is slow but usable for a
    full mu = 200 event, so no approximation is made.

    Args:
      h: ``[n, d]`` float32 embedded points.
      min_cluster_size: smallest cluster HDBSCAN reports (smaller groups become noise).
      min_samples: neighbours defining the core distance (None: ``min_cluster_size``).
      mask: optional ``[n]`` bool, False for padding rows (left out, singleton labels).
      **kw: other :class:`~sklearn.cluster.HDBSCAN` arguments (``algorithm``, ``leaf_size``,
        ``cluster_selection_epsilon``, ``cluster_selection_method``, ``n_jobs``...).

    Returns:
      ``[n]`` int64 labels, consecutive from 0; noise points are singletons. With fewer points
      than ``min_cluster_size`` (or than ``min_samples``), all points are singletons.
    """
    from sklearn.cluster import HDBSCAN

    h = _points(h)
    opts: dict[str, Any] = {"algorithm": "kd_tree", "n_jobs": -1, "copy": True}
    opts.update(kw)
    need = max(int(min_cluster_size), int(min_samples or 0), 2)

    def fit(x: np.ndarray) -> np.ndarray:
        if len(x) < need:
            return np.full(len(x), -1, np.int64)
        model = HDBSCAN(min_cluster_size=int(min_cluster_size), min_samples=min_samples, **opts)
        return model.fit(x).labels_

    return _on_masked(h, mask, fit)


def edge_components(
    h: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    cut: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Connected components of the edges shorter than ``cut`` in the embedding.

    Args:
      h: ``[n, d]`` float32 embedded points.
      senders: ``[E]`` int edge sources (directed edges; a component ignores direction).
      receivers: ``[E]`` int edge targets.
      cut: edges of Euclidean length ``|h[s] - h[r]| < cut`` (strict) are kept.
      mask: optional ``[n]`` bool, False for padding rows: edges touching them are dropped and
        they are singletons.

    Returns:
      ``[n]`` int64 labels, consecutive from 0; points without a kept edge are singletons.
    """
    h = _points(h)
    n = len(h)
    s = np.asarray(senders, dtype=np.int64).reshape(-1)
    r = np.asarray(receivers, dtype=np.int64).reshape(-1)
    if s.shape != r.shape:
        raise ValueError(f"senders {s.shape} and receivers {r.shape} differ in shape")
    if len(s) and (min(s.min(), r.min()) < 0 or max(s.max(), r.max()) >= n):
        raise ValueError(f"edge endpoints must lie in [0, {n})")
    mask = _check_mask(mask, n)
    keep = np.linalg.norm(h[s] - h[r], axis=1) < cut
    if mask is not None:
        keep &= mask[s] & mask[r]
    s, r = s[keep], r[keep]
    graph = coo_matrix((np.ones(len(s), np.int8), (s, r)), shape=(n, n))
    _, labels = connected_components(graph, directed=True, connection="weak")
    return canonical_labels(labels)


def knn_components(h: np.ndarray, k: int, cut: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Connected components of the ``k``-nearest-neighbour graph of ``h``, edges ``< cut``.

    The graph is :func:`cgnn_jax.graph.neighbors.neighbor_graph` (``mode="knn_radius"``: each
    point's ``k`` nearest within ``cut``, symmetrised), then :func:`edge_components`.

    Args:
      h: ``[n, d]`` float32 embedded points.
      k: neighbours per point.
      cut: edge length threshold (strict).
      mask: optional ``[n]`` bool, False for padding rows (left out of the graph, singletons).

    Returns:
      ``[n]`` int64 labels, consecutive from 0.
    """
    from cgnn_jax.graph.neighbors import neighbor_graph

    h = _points(h)

    def fit(x: np.ndarray) -> np.ndarray:
        s, r = neighbor_graph(x, mode="knn_radius", k=int(k), radius=float(cut))
        return edge_components(x, s, r, cut)

    return _on_masked(h, mask, fit)


def _tuned_param(fn: Callable[..., np.ndarray]) -> str:
    """``"cut"`` if ``fn`` takes a ``cut`` argument, else ``"eps"``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "eps"
    return "cut" if "cut" in params else "eps"


def tune_cut(
    fn: Callable[..., np.ndarray],
    events: Sequence[SpaceEvent],
    grid: Sequence[float],
    param: str | None = None,
    score_fn: ScoreFn | None = None,
    **kwargs: Any,
) -> tuple[float, pd.DataFrame]:
    """Grid-search a clusterer's threshold by the mean TrackML score over tuning events.

    Args:
      fn: a clusterer ``fn(h, **{param: value}, **extra, **kwargs) -> labels [n]`` (one of this
        module's or any with that signature).
      events: ``(h [n, d], hit_id [n], truth, extra_kwargs)`` tuples (see :data:`SpaceEvent`);
        ``extra_kwargs`` (may be None) are per-event arguments, e.g. the edges for
        :func:`edge_components`.
      grid: the values to try.
      param: the argument tuned; None: ``"cut"`` if ``fn`` takes one, else ``"eps"``.
      score_fn: ``(truth, submission) -> float``; None: :func:`cgnn_jax.metrics.score_event`.
      **kwargs: fixed arguments for every call (e.g. ``k``, ``min_samples``).

    Returns:
      ``(best, table)``: the value of the highest mean score (the first one on ties) and a
      ``[len(grid)]`` frame with columns ``<param>, score`` (mean), ``std``, ``seconds`` (total
      clustering time) and ``event_<i>`` (score per event, ``i`` its position), in grid order.

    Raises:
      ValueError: no events, an empty grid, or an event whose ``hit_id`` does not match ``h``.
    """
    if not events:
        raise ValueError("tune_cut needs at least one event")
    values = [float(v) for v in grid]
    if not values:
        raise ValueError("grid is empty")
    if score_fn is None:
        from cgnn_jax.metrics import score_event

        score_fn = score_event
    param = param or _tuned_param(fn)
    for i, (h, hit_id, _, _) in enumerate(events):
        if len(np.asarray(hit_id)) != len(h):
            raise ValueError(f"event {i}: {len(hit_id)} hit ids for {len(h)} points")

    rows = []
    for value in values:
        row: dict[str, float] = {param: value}
        scores, seconds = [], 0.0
        for i, (h, hit_id, truth, extra) in enumerate(events):
            start = time.perf_counter()
            labels = fn(h, **{param: value}, **dict(extra or {}), **kwargs)
            seconds += time.perf_counter() - start
            sub = pd.DataFrame({"hit_id": np.asarray(hit_id), "track_id": labels})
            scores.append(float(score_fn(truth, sub)))
            row[f"event_{i}"] = scores[-1]
        row.update(score=float(np.mean(scores)), std=float(np.std(scores)), seconds=seconds)
        rows.append(row)
    table = pd.DataFrame(rows)
    event_cols = [f"event_{i}" for i in range(len(events))]
    table = table[[param, "score", "std", "seconds", *event_cols]]
    best = values[int(np.argmax(table["score"].to_numpy()))]
    return best, table


__all__ = [
    "SpaceEvent",
    "canonical_labels",
    "dbscan_space",
    "edge_components",
    "hdbscan_space",
    "knn_components",
    "tune_cut",
]
