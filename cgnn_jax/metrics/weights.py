"""The TrackML phase-1 hit weights (the ``weight`` column of the truth files), vectorised.

Follows the challenge's reference ``trackml/weights.py`` (``weight_hits_phase1``):

``weight(hit) = weight_pt(particle) * weight_order(ihit, nhits)``, normalised so that the
weights of the event sum to 1.

* ``weight_pt``: piecewise linear in the particle's transverse momentum
  ``p_T = hypot(px, py)`` (GeV): 0.2 for ``0.05 <= p_T <= 0.5``, rising linearly to 1 at
  ``p_T = 3``, 1 above; 0 below 0.05 GeV (the reference's "should not happen" guard).
* ``weight_order``: the proposal ``[10, 8, 6, 5, 3, 3, 3, 5, 6]`` is stretched over a
  track of ``nhits`` hits (support points ``k * (nhits - 1) / 8``), linearly interpolated at
  hit positions ``0 .. nhits-1`` and normalised to **sum 1 over the track** (as the
  reference does: so every fully reconstructed particle weighs ``weight_pt`` before the
  event normalisation).  ``nhits`` is capped at 20; hits with ``ihit >= 20`` weigh 0.
* Hit order ``ihit``: the reference ranks a particle's hits by ``|tz - vz|``, the
  *longitudinal* distance between the true hit position and the particle vertex (not the 3D
  distance), with pandas' ``rank()`` (ties share the average rank) and ``ihit =
  int(rank - 1)``; this module does exactly that.
* ``nhits``: the particle's number of hits in ``truth`` (the reference's phase-1 function
  reads ``particles.nhits``, which equals it in the challenge data).
* Noise (``particle_id == 0``), particles with fewer than 4 hits, and truth particles absent
  from ``particles`` weigh 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ORDER_PROPOSAL: tuple[float, ...] = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
ORDER_MIN_HITS = 4
ORDER_MAX_HITS = 20
PT_INF = 0.5
PT_SUP = 3.0
PT_MIN = 0.05
W_MIN = 0.2
W_MAX = 1.0
NOISE_PARTICLE_ID = 0


def order_weight_matrix(
    proposal: tuple[float, ...] = ORDER_PROPOSAL,
    min_hits: int = ORDER_MIN_HITS,
    max_hits: int = ORDER_MAX_HITS,
) -> np.ndarray:
    """``W[nhits, ihit]``: the order weight of hit ``ihit`` on a track of ``nhits`` hits.

    Returns:
      ``[max_hits + 1, max_hits]`` float64; rows ``min_hits..max_hits`` sum to 1, the
      others are 0.
    """
    w = np.zeros((max_hits + 1, max_hits))
    k = len(proposal) - 1
    for nhits in range(min_hits, max_hits + 1):  # 17 rows: a table, not a data loop
        supports = np.arange(len(proposal)) * (nhits - 1) / k
        row = np.interp(np.arange(nhits), supports, np.asarray(proposal, dtype=np.float64))
        w[nhits, :nhits] = row / row.sum()
    return w


ORDER_MATRIX: np.ndarray = order_weight_matrix()


def weight_pt(pt: np.ndarray | float) -> np.ndarray:
    """The transverse-momentum weight: 0.2 up to 0.5 GeV, linear to 1 at 3 GeV, then 1.

    Below 0.05 GeV the weight is 0 (as in the reference).
    """
    return np.interp(
        np.asarray(pt, dtype=np.float64),
        [PT_MIN, PT_INF, PT_SUP],
        [W_MIN, W_MIN, W_MAX],
        left=0.0,
        right=W_MAX,
    )


def hit_order(particle_id: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """``int(rank - 1)`` of every hit's ``distance`` within its particle (average ranks).

    Args:
      particle_id: ``[n]`` int.
      distance: ``[n]`` float; NaN gives order 0.

    Returns:
      ``[n]`` int64 in ``0 .. k-1`` for a particle of ``k`` hits.
    """
    particle_id = np.asarray(particle_id, dtype=np.int64)
    distance = np.asarray(distance)
    n = len(particle_id)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    nan = np.isnan(distance)
    # NaNs sort last within a particle and are given order 0 afterwards, like the reference.
    order = np.lexsort((distance, particle_id))
    p_s = particle_id[order]
    d_s = distance[order]
    idx = np.arange(n)
    new_particle = np.r_[True, p_s[1:] != p_s[:-1]]
    p_start = np.maximum.accumulate(np.where(new_particle, idx, 0))
    pos = idx - p_start
    # Runs of equal (particle, distance): every member gets the mean 0-based position.
    new_run = new_particle | np.r_[True, d_s[1:] != d_s[:-1]]
    run_id = np.cumsum(new_run) - 1
    run_first = pos[new_run]
    run_last = np.r_[pos[np.flatnonzero(new_run)[1:] - 1], pos[-1]] if n else run_first
    mean_pos2 = run_first + run_last  # twice the mean 0-based position
    out[order] = mean_pos2[run_id] // 2
    out[nan] = 0
    return out


def compute_weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    """The challenge's phase-1 hit weights, aligned with the rows of ``truth``.

    Args:
      truth: columns ``particle_id, tz`` (one row per hit).
      particles: columns ``particle_id, vz, px, py`` (unique ``particle_id``).

    Returns:
      ``[len(truth)]`` float32, non-negative, summing to 1 (all zeros if no hit qualifies).

    Raises:
      ValueError: missing columns or repeated ``particle_id`` in ``particles``.
    """
    for df, cols, what in (
        (truth, ("particle_id", "tz"), "truth"),
        (particles, ("particle_id", "vz", "px", "py"), "particles"),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")

    pid = truth["particle_id"].to_numpy().astype(np.int64)
    tz = truth["tz"].to_numpy()
    p_pid = particles["particle_id"].to_numpy().astype(np.int64)
    p_order = np.argsort(p_pid, kind="stable")
    p_sorted = p_pid[p_order]
    if len(p_sorted) > 1 and np.any(p_sorted[1:] == p_sorted[:-1]):
        dup = np.unique(p_sorted[1:][p_sorted[1:] == p_sorted[:-1]])
        raise ValueError(f"particles repeats particle_id(s) {dup[:10].tolist()}")

    # Per-hit particle row (or -1 if the particle is not in the table).
    pos = np.searchsorted(p_sorted, pid)
    found = np.zeros(len(pid), dtype=bool)
    inside = pos < len(p_sorted)
    found[inside] = p_sorted[pos[inside]] == pid[inside]
    row = np.where(found, p_order[np.minimum(pos, max(len(p_sorted) - 1, 0))], -1)

    vz = particles["vz"].to_numpy()
    pt = np.hypot(particles["px"].to_numpy(np.float64), particles["py"].to_numpy(np.float64))
    w_pt = np.where(found, weight_pt(pt)[np.maximum(row, 0)] if len(pt) else 0.0, 0.0)
    # Same arithmetic as the reference: |tz - vz| in the columns' own dtype.
    dvz = np.where(found, np.abs(tz - vz[np.maximum(row, 0)]) if len(vz) else np.nan, np.nan)

    _, inv, counts = np.unique(pid, return_inverse=True, return_counts=True)
    nhits = counts[inv.ravel()]
    ihit = hit_order(pid, dvz)
    valid = (pid != NOISE_PARTICLE_ID) & (nhits >= ORDER_MIN_HITS) & (ihit < ORDER_MAX_HITS)
    w_order = np.where(
        valid,
        ORDER_MATRIX[np.minimum(nhits, ORDER_MAX_HITS), np.minimum(ihit, ORDER_MAX_HITS - 1)],
        0.0,
    )
    w = w_pt * w_order
    total = w.sum()
    if total > 0:
        w = w / total
    return w.astype(np.float32)
