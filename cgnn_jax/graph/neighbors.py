"""Neighbour search in the embedding space: kd-tree kNN and ε-ball queries -> directed edges."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from cgnn_jax.utils.arrays import sorted_unique

MODES = ("knn", "radius", "knn_radius")


def neighbor_graph(
    points: np.ndarray,
    mode: str = "knn_radius",
    k: int = 32,
    radius: float = 1.0,
    symmetric: bool = True,
    workers: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges between points ``[n, d]``, in O(n log n) with a kd-tree.

    Args:
      points: ``[n, d]`` embedded hits.
      mode: ``"knn"``: each point's ``k`` nearest others; ``"radius"``: every pair closer than
        ``radius`` (the ε-ball; unbounded degree); ``"knn_radius"``: the ``k`` nearest that are
        also within ``radius`` (bounded degree: the default).
      symmetric: add the reverse of every edge (the union of both directions).
      workers: threads for the query (-1: all cores).
    Returns:
      ``(senders, receivers)``, int32 ``[E]`` each, no self loops, no duplicates, sorted by sender.
    """
    if mode not in MODES:
        raise ValueError(f"unknown graph mode {mode!r}; valid: {', '.join(MODES)}")
    points = np.ascontiguousarray(points, dtype=np.float32)
    n = len(points)
    if n < 2:
        e = np.zeros(0, np.int32)
        return e, e
    tree = cKDTree(points)
    if mode == "radius":
        pairs = tree.query_pairs(radius, output_type="ndarray")
        s, r = pairs[:, 0], pairs[:, 1]
        s, r = np.concatenate([s, r]), np.concatenate([r, s])
        key = sorted_unique(s.astype(np.int64) * n + r)
        return (key // n).astype(np.int32), (key % n).astype(np.int32)
    kk = min(k + 1, n)
    ub = np.inf if mode == "knn" else radius
    dist, idx = tree.query(points, k=kk, distance_upper_bound=ub, workers=workers)
    dist = dist.reshape(n, kk)
    idx = idx.reshape(n, kk)
    src = np.repeat(np.arange(n), kk).reshape(n, kk)
    ok = (idx < n) & (idx != src)
    s, r = src[ok], idx[ok]
    if symmetric:
        s, r = np.concatenate([s, r]), np.concatenate([r, s])
    key = sorted_unique(s.astype(np.int64) * n + r)
    return (key // n).astype(np.int32), (key % n).astype(np.int32)
