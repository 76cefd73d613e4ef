"""Purity and recall of a graph's directed edges against the true particle of each hit, and the
pairs of hits adjacent along a track (the "truth graph")."""

from __future__ import annotations

import numpy as np

from cgnn_jax.utils.arrays import sorted_unique


def edge_purity_recall(
    senders: np.ndarray, receivers: np.ndarray, particle_id: np.ndarray
) -> dict[str, float | int]:
    """Edge purity and recall over hits ``0 .. n-1``.

    An edge ``s -> r`` is *true* when ``s != r`` and both hits belong to the same particle
    with ``particle_id != 0`` (noise belongs to no particle).

    * ``purity = n_true_edges / n_edges``: the fraction of the given edges that are true
      (repeated edges count every time); NaN for an empty edge set.
    * ``recall = n_true_distinct / n_true_total``: distinct true directed edges found over
      all ordered pairs of distinct hits of the same particle, ``sum_p k_p (k_p - 1)``;
      repeated edges count once; NaN when no particle has two hits.

    Args:
      senders: ``[e]`` int hit indices.
      receivers: ``[e]`` int hit indices.
      particle_id: ``[n]`` int, the particle of every hit (0 for noise).

    Returns:
      dict with ``purity, recall`` (float) and ``n_edges, n_true_edges, n_true_distinct,
      n_true_total`` (int).

    Raises:
      ValueError: shapes differ or an index is outside ``0 .. n-1``.
    """
    s = np.asarray(senders).astype(np.int64).ravel()
    r = np.asarray(receivers).astype(np.int64).ravel()
    pid = np.asarray(particle_id).astype(np.int64).ravel()
    if s.shape != r.shape:
        raise ValueError(f"senders {s.shape} and receivers {r.shape} differ in length")
    n = len(pid)
    bad = (s < 0) | (s >= n) | (r < 0) | (r >= n)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{len(rows)} edge(s) point outside hits 0..{n - 1}, e.g. edge {int(rows[0])}: "
            f"{int(s[rows[0]])} -> {int(r[rows[0]])}"
        )
    true = (s != r) & (pid[s] == pid[r]) & (pid[s] != 0)
    n_true = int(true.sum())
    n_distinct = len(sorted_unique(s[true] * np.int64(n) + r[true]))

    _, counts = np.unique(pid[pid != 0], return_counts=True)
    n_total = int(np.sum(counts.astype(np.int64) * (counts - 1)))
    return {
        "purity": n_true / len(s) if len(s) else float("nan"),
        "recall": n_distinct / n_total if n_total else float("nan"),
        "n_edges": len(s),
        "n_true_edges": n_true,
        "n_true_distinct": n_distinct,
        "n_true_total": n_total,
    }


def consecutive_pairs(pos: np.ndarray, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs ``(i, j)`` of hits adjacent along their particle's track, both directions.

    Hits of a particle are ordered by their distance from the origin; noise is excluded.
    """
    sig = np.flatnonzero(pid != 0)
    dist = np.linalg.norm(pos[sig], axis=1)
    order = sig[np.lexsort((dist, pid[sig]))]
    same = pid[order[1:]] == pid[order[:-1]]
    a, b = order[:-1][same], order[1:][same]
    return np.concatenate([a, b]), np.concatenate([b, a])


def consecutive_recall(
    senders: np.ndarray, receivers: np.ndarray, pos: np.ndarray, pid: np.ndarray
) -> float:
    """Share of consecutive same-particle pairs (both directions) that are edges of the graph."""
    a, b = consecutive_pairs(pos, pid)
    if len(a) == 0:
        return float("nan")
    n = np.int64(len(pid))
    edges = np.sort(senders.astype(np.int64) * n + receivers)
    want = a.astype(np.int64) * n + b
    idx = np.clip(np.searchsorted(edges, want), 0, max(len(edges) - 1, 0))
    return float((edges[idx] == want).mean()) if len(edges) else 0.0
