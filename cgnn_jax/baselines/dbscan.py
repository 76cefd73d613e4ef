"""The classic TrackML DBSCAN benchmark: cluster hits by their direction from the origin.

A track from the beam line is (for high p_T) close to a straight line from the origin, so
all of its hits share the direction ``(x/r3, y/r3, z/r)`` with ``r = sqrt(x² + y²)`` and
``r3 = sqrt(x² + y² + z²)``. Standardising these three features and running DBSCAN with a
small ``eps`` gives the public-kernel baseline (TrackML score ≈ 0.2 on real events).

Track-id convention used by every function of :mod:`cgnn_jax.baselines`: one ``int64`` id
per hit row, in the row order of ``hits``, consecutive from ``1`` to ``n_tracks``; ``0`` is
never used. DBSCAN noise (only possible with ``min_samples > 1``) becomes singleton tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

Backend = Literal["auto", "sklearn", "ckdtree"]

DEFAULT_EPS = 0.008  # tuned on simulated full mu=200 events (benchmarks/baselines_score.py)
"""The public kernel's ``eps`` for :func:`dbscan_tracks` (unweighted features)."""

_TINY = 1e-12


def hit_xyz(hits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hit positions as three ``float64`` arrays of shape ``[n]`` (mm)."""
    return (
        np.asarray(hits["x"], dtype=np.float64),
        np.asarray(hits["y"], dtype=np.float64),
        np.asarray(hits["z"], dtype=np.float64),
    )


def standardize(features: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Zero-mean, unit-variance columns (like ``StandardScaler``), optionally re-weighted.

    Args:
      features: ``[n, d]``.
      weights: ``[d]`` multiplicative column weights applied after standardising, or None.

    Returns:
      ``[n, d]`` float64. Constant columns are only centred (their std is taken as 1).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.shape[0] == 0:
        return x.copy()
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    out = (x - x.mean(axis=0)) / std
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (x.shape[1],):
            raise ValueError(f"weights must have shape ({x.shape[1]},), got {w.shape}")
        out *= w
    return out


def dbscan_features(hits: pd.DataFrame, weights: Sequence[float] | None = None) -> np.ndarray:
    """The classic normalised hit direction, standardised.

    Args:
      hits: ``[n]`` rows with columns ``x, y, z`` (mm).
      weights: optional ``[3]`` column weights applied after standardising (the public
        kernel's tuned variant used ``(0.65, 0.965, 1.528)``); None means unweighted.

    Returns:
      ``[n, 3]`` float64: standardised ``(x/r3, y/r3, z/r)``.
    """
    x, y, z = hit_xyz(hits)
    r = np.maximum(np.hypot(x, y), _TINY)
    r3 = np.maximum(np.sqrt(x * x + y * y + z * z), _TINY)
    return standardize(np.stack([x / r3, y / r3, z / r], axis=1), weights)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Noise (``-1``) to singletons, then consecutive ids ``0..k-1`` (order of first id)."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    if noise.any():
        start = labels.max() + 1 if (~noise).any() else 0
        labels[noise] = start + np.arange(int(noise.sum()), dtype=np.int64)
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1)


def cluster_labels(
    features: np.ndarray,
    eps: float,
    min_samples: int = 1,
    algorithm: str = "kd_tree",
    n_jobs: int | None = None,
    backend: Backend = "sklearn",
) -> np.ndarray:
    """DBSCAN labels, with noise turned into singletons.

    Args:
      features: ``[n, d]`` points.
      eps: DBSCAN neighbourhood radius (inclusive, Euclidean).
      min_samples: DBSCAN ``min_samples`` (the point itself counts).
      algorithm: scikit-learn neighbour search (``kd_tree``, ``ball_tree``, ``brute``, ``auto``).
      n_jobs: scikit-learn parallel jobs for the neighbour search (None = 1, -1 = all cores).
      backend: ``sklearn`` runs :class:`sklearn.cluster.DBSCAN`; ``ckdtree`` computes the
        connected components of the ``eps``-graph with :class:`scipy.spatial.cKDTree`, which is
        exactly DBSCAN when ``min_samples == 1`` (every point is a core point) and several
        times faster; ``auto`` picks ``ckdtree`` when ``min_samples == 1``.

    Returns:
      ``[n]`` int64 cluster ids, consecutive from 0.

    Raises:
      ValueError: ``eps`` is not a positive finite number.
    """
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps}")
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if backend == "auto":
        backend = "ckdtree" if min_samples <= 1 else "sklearn"
    if backend == "ckdtree":
        if min_samples > 1:
            raise ValueError("backend='ckdtree' is only exact for min_samples=1; use 'sklearn'")
        pairs = cKDTree(x).query_pairs(eps, output_type="ndarray")
        graph = coo_matrix(
            (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
        )
        _, labels = connected_components(graph, directed=False)
        return _relabel(labels)
    if backend != "sklearn":
        raise ValueError(f"unknown backend {backend!r}; valid: 'auto', 'sklearn', 'ckdtree'")
    from sklearn.cluster import DBSCAN  # ~1 s of imports: only when used

    db = DBSCAN(eps=eps, min_samples=min_samples, algorithm=algorithm, n_jobs=n_jobs)
    return _relabel(db.fit(x).labels_)


def dbscan_tracks(
    hits: pd.DataFrame,
    eps: float = DEFAULT_EPS,
    min_samples: int = 1,
    weights: Sequence[float] | None = None,
    algorithm: str = "kd_tree",
    n_jobs: int | None = None,
    backend: Backend = "sklearn",
) -> np.ndarray:
    """Tracks from DBSCAN on :func:`dbscan_features` (the TrackML DBSCAN benchmark).

    Args:
      hits: ``[n]`` rows with columns ``x, y, z`` (mm).
      eps: DBSCAN radius in standardised-feature units.
      min_samples: DBSCAN ``min_samples``; noise hits become singleton tracks.
      weights: optional ``[3]`` feature weights (see :func:`dbscan_features`).
      algorithm, n_jobs, backend: see :func:`cluster_labels`.

    Returns:
      ``[n]`` int64 track ids, one per row of ``hits``, consecutive from 1.
    """
    features = dbscan_features(hits, weights)
    labels = cluster_labels(features, eps, min_samples, algorithm, n_jobs, backend)
    return labels + 1
