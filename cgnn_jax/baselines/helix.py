"""Helix-unrolling DBSCAN: the well-known TrackML public kernel, vectorised.

In a solenoid field ``B`` along ``z`` a particle from the origin with transverse momentum
``p_T`` follows a circle of radius ``R[mm] = p_T[GeV] / (0.0003 · B[T])`` in the transverse
plane. At transverse radius ``r_t`` its azimuth is ``φ = φ0 + arcsin(κ · r_t)`` with the
signed curvature parameter ``κ = ± 1 / (2R)`` (sign = charge × field orientation). So for the
right ``κ`` the *unrolled* azimuth ``a1 = φ - arcsin(κ · r_t)`` is the same for every hit of
the track, and so are ``z / r_t`` and ``z / r3`` (for a vertex at the origin).

The kernel scans ``κ`` over a grid of both signs; at each step it clusters the standardised,
weighted features ``(sin a1, cos a1, z/r_t, z/r3)`` with DBSCAN, and a hit moves to its new
cluster when that cluster is larger than the one it is in now, as long as the new one has at
most ``max_track_size`` hits. Unlike the original kernel, every hit starts alone (so the
first step obeys the size cap too).

With ``B = 2 T``: ``κ[1/mm] = 0.0003 / p_T[GeV]``, so ``kappa_max = 1e-3`` reaches
``p_T ≈ 0.3 GeV`` (whose tracks curl back at ``r_t = 1 m``). Track ids follow the
convention of :mod:`cgnn_jax.baselines.dbscan` (``int64``, consecutive from 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cgnn_jax.baselines.dbscan import Backend, cluster_labels, hit_xyz, standardize
from cgnn_jax.utils.cpus import ordered_map, usable_cpus

B_FIELD_T = 2.0
"""The TrackML solenoid field (tesla)."""

DEFAULT_N_SCAN = 100
DEFAULT_KAPPA_MAX = 1.0e-3
DEFAULT_EPS = 0.0045  # tuned on simulated full mu=200 events (benchmarks/baselines_score.py)
DEFAULT_EPS_STEP = 5.0e-6
DEFAULT_MAX_TRACK_SIZE = 20
DEFAULT_WEIGHTS = (1.0, 1.0, 0.75, 0.5)

_TINY = 1e-12


def kappa_from_pt(pt_gev: float | np.ndarray, b_tesla: float = B_FIELD_T) -> float | np.ndarray:
    """``|κ| = 1 / (2R)`` in 1/mm for ``p_T`` in GeV, with ``R = p_T / (0.0003 · B)``."""
    return 0.0003 * b_tesla / (2.0 * np.asarray(pt_gev, dtype=np.float64))


def pt_from_kappa(kappa: float | np.ndarray, b_tesla: float = B_FIELD_T) -> float | np.ndarray:
    """Inverse of :func:`kappa_from_pt` (``p_T`` in GeV from ``|κ|`` in 1/mm)."""
    return 0.0003 * b_tesla / (2.0 * np.abs(np.asarray(kappa, dtype=np.float64)))


def kappa_grid(n_scan: int = DEFAULT_N_SCAN, kappa_max: float = DEFAULT_KAPPA_MAX) -> np.ndarray:
    """The scan order of the signed curvature: ``0, +k1, -k1, +k2, -k2, ...``.

    Magnitudes are evenly spaced in ``(0, kappa_max]``, ``n_scan // 2`` of them, each with
    both signs; straight tracks (``κ = 0``) come first. For even ``n_scan`` the last
    magnitude (``kappa_max``) is only scanned with the ``+`` sign.

    Args:
      n_scan: number of steps (>= 1).
      kappa_max: largest ``|κ|`` (1/mm).

    Returns:
      ``[n_scan]`` float64 signed ``κ`` values, in scan order.
    """
    if n_scan < 1:
        raise ValueError(f"n_scan must be >= 1, got {n_scan}")
    n_mag = n_scan // 2
    mags = np.linspace(0.0, kappa_max, n_mag + 1)[1:]
    signed = np.stack([mags, -mags], axis=1).reshape(-1)
    return np.concatenate([[0.0], signed])[:n_scan]


def helix_features(
    hits: pd.DataFrame,
    kappa: float,
    weights: Sequence[float] | None = DEFAULT_WEIGHTS,
    *,
    _cache: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Standardised, weighted ``(sin a1, cos a1, z/r_t, z/r3)`` for one curvature.

    Args:
      hits: ``[n]`` rows with columns ``x, y, z`` (mm).
      kappa: signed curvature parameter ``κ`` (1/mm); ``a1 = φ - arcsin(clip(κ · r_t))``.
      weights: ``[4]`` column weights after standardising, or None.

    Returns:
      ``[n, 4]`` float64.
    """
    geo = _cache if _cache is not None else _geometry(hits)
    a1 = geo["phi"] - np.arcsin(np.clip(kappa * geo["rt"], -1.0, 1.0))
    feats = np.stack([np.sin(a1), np.cos(a1), geo["z_rt"], geo["z_r3"]], axis=1)
    return standardize(feats, weights)


def _geometry(hits: pd.DataFrame) -> dict[str, np.ndarray]:
    x, y, z = hit_xyz(hits)
    rt = np.hypot(x, y)
    r3 = np.sqrt(rt * rt + z * z)
    return {
        "phi": np.arctan2(y, x),
        "rt": rt,
        "z_rt": z / np.maximum(rt, _TINY),
        "z_r3": z / np.maximum(r3, _TINY),
    }


def merge_step(
    labels: np.ndarray, sizes: np.ndarray, new_labels: np.ndarray, max_track_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One merge of the scan: hits move to a new cluster that is larger than their current one.

    Args:
      labels: ``[n]`` int64 current cluster ids (consecutive from 0).
      sizes: ``[n]`` int64 size of each hit's current cluster.
      new_labels: ``[n]`` int64 cluster ids of this step (consecutive from 0).
      max_track_size: a hit only moves into a new cluster of at most this many hits.

    Returns:
      ``(labels, sizes)`` after the move, ids again consecutive from 0.
    """
    new_sizes = np.bincount(new_labels)[new_labels]
    move = (new_sizes > sizes) & (new_sizes <= max_track_size)
    if not move.any():
        return labels, sizes
    merged = np.where(move, new_labels + labels.max() + 1, labels)
    _, merged = np.unique(merged, return_inverse=True)
    merged = merged.astype(np.int64).reshape(-1)
    return merged, np.bincount(merged)[merged]


def helix_dbscan_tracks(
    hits: pd.DataFrame,
    eps: float = DEFAULT_EPS,
    n_scan: int = DEFAULT_N_SCAN,
    kappa_max: float = DEFAULT_KAPPA_MAX,
    eps_step: float = DEFAULT_EPS_STEP,
    max_track_size: int = DEFAULT_MAX_TRACK_SIZE,
    weights: Sequence[float] | None = DEFAULT_WEIGHTS,
    min_samples: int = 1,
    algorithm: str = "kd_tree",
    n_jobs: int | None = None,
    backend: Backend = "auto",
    kappas: Sequence[float] | None = None,
) -> np.ndarray:
    """Tracks from the helix-unrolling DBSCAN scan.

    Args:
      hits: ``[n]`` rows with columns ``x, y, z`` (mm).
      eps: DBSCAN radius at the first step (standardised, weighted feature units).
      n_scan: number of curvature steps (see :func:`kappa_grid`).
      kappa_max: largest ``|κ|`` scanned, 1/mm (``1e-3`` ↔ ``p_T ≈ 0.3 GeV`` at 2 T).
      eps_step: per-step growth of ``eps``: step ``i`` uses ``eps + i · eps_step``.
      max_track_size: largest cluster a hit may move into.
      weights: ``[4]`` feature weights for ``(sin a1, cos a1, z/r_t, z/r3)``, or None.
      min_samples, algorithm, n_jobs, backend: DBSCAN settings, see
        :func:`cgnn_jax.baselines.dbscan.cluster_labels` (``auto`` = the exact, faster
        cKDTree connected components when ``min_samples == 1``).
      kappas: explicit signed ``κ`` values to scan instead of :func:`kappa_grid`.

    Returns:
      ``[n]`` int64 track ids, one per row of ``hits``, consecutive from 1.
    """
    n = len(hits)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    grid = np.asarray(kappa_grid(n_scan, kappa_max) if kappas is None else kappas, dtype=np.float64)
    geo = _geometry(hits)
    labels = np.arange(n, dtype=np.int64)
    sizes = np.ones(n, dtype=np.int64)

    def step_labels(i: int) -> np.ndarray:
        feats = helix_features(hits, float(grid[i]), weights, _cache=geo)
        return cluster_labels(feats, eps + i * eps_step, min_samples, algorithm, n_jobs, backend)

    # The steps' clusterings are independent (the kd-tree queries free the GIL): computed a
    # few steps ahead on threads, merged in scan order, so the result is the serial one
    # (~2x faster on 2 cores: a full event 14.3 -> 7.4 s).
    for new in ordered_map(step_labels, range(len(grid)), usable_cpus()):
        labels, sizes = merge_step(labels, sizes, new, max_track_size)
    return labels + 1
