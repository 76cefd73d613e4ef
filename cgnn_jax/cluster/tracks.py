"""Cluster ids -> track ids."""

from __future__ import annotations

import numpy as np


def dense_track_ids(cluster: np.ndarray) -> np.ndarray:
    """Cluster ids (any ints) ``[n]`` -> track ids ``1..K`` ``[n]`` in order of first appearance
    (int64)."""
    _, first, inv = np.unique(cluster, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    return rank[inv.reshape(-1)]
