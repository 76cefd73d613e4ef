"""Tracking efficiency and fake rate in bins of p_T and η.

Definitions (all built on the double-majority matching of :mod:`cgnn_jax.metrics.score`):

* **Reconstructable particle**: a particle with ``particle_id != 0`` and at least
  ``min_particle_hits`` (default 4, as for the weights) hits in ``truth``.
* **Matched track**: a reconstructed track whose majority particle holds more than half of
  its hits and which holds more than half of that particle's hits (a "good" track of the
  TrackML score), and whose majority particle is not noise (``particle_id != 0``).  At most
  one track can match a given particle.
* **Efficiency**: the fraction of reconstructable particles that are the majority particle
  of a matched track, binned in the particle's ``p_T = hypot(px, py)`` and
  ``η = asinh(pz / p_T)`` from ``particles``.
* **Fake rate**: among reconstructed tracks with at least ``min_track_hits`` (default 3)
  hits, the fraction that are not matched.  A track is binned by

  - ``p_T``: its majority particle's ``p_T`` (matched or not); tracks whose majority
    particle is noise or absent from ``particles`` have no ``p_T`` and appear in no ``p_T``
    bin (they still count in the overall fake rate);
  - ``η``: its matched particle's ``η`` if matched; for a fake, the pseudorapidity of the
    mean unit direction (seen from the origin) of its hits' true positions ``tx, ty, tz``.

* Bins are half-open ``[lo, hi)``; values outside all bins are left out of the bin tables
  (but not out of the overall numbers).  Errors are binomial,
  ``sqrt(f (1 - f) / n)``; efficiency and error are NaN in an empty bin.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from cgnn_jax.metrics.score import (
    _integer_column,
    _require_columns,
    align_submission,
    match_tracks,
)

DEFAULT_BINS_PT: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, np.inf)
DEFAULT_BINS_ETA: tuple[float, ...] = tuple(np.round(np.arange(-4.0, 4.0001, 0.5), 6).tolist())

BIN_COLUMNS: tuple[str, ...] = ("bin_lo", "bin_hi", "n", "n_pass", "efficiency", "error")


@dataclasses.dataclass
class TrackEfficiency:
    """Efficiency and fake rate of one event's reconstruction.

    Attributes:
      efficiency: overall fraction of reconstructable particles matched (NaN if none).
      efficiency_error: its binomial error.
      fake_rate: overall fraction of tracks (``>= min_track_hits`` hits) not matched.
      fake_rate_error: its binomial error.
      n_reconstructable: number of reconstructable particles.
      n_matched: number of those matched.
      n_tracks: number of tracks with ``>= min_track_hits`` hits.
      n_fake: number of those not matched.
      efficiency_pt / efficiency_eta: per-bin tables, columns :data:`BIN_COLUMNS` (``n``:
        reconstructable particles in the bin, ``n_pass``: matched ones, ``efficiency`` the
        ratio, ``error`` binomial).
      fake_rate_pt / fake_rate_eta: same columns for tracks (``n``: tracks, ``n_pass``:
        fakes, ``efficiency`` holds the fake rate).
    """

    efficiency: float
    efficiency_error: float
    fake_rate: float
    fake_rate_error: float
    n_reconstructable: int
    n_matched: int
    n_tracks: int
    n_fake: int
    efficiency_pt: pd.DataFrame
    efficiency_eta: pd.DataFrame
    fake_rate_pt: pd.DataFrame
    fake_rate_eta: pd.DataFrame


def _ratio(k: np.ndarray | int, n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(n > 0, k / np.where(n > 0, n, 1.0), np.nan)
        err = np.where(n > 0, np.sqrt(f * (1.0 - f) / np.where(n > 0, n, 1.0)), np.nan)
    return f, err


def binned_fraction(values: np.ndarray, passed: np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    """Per-bin count, pass count, fraction and binomial error.

    Args:
      values: ``[n]`` the binned variable (NaN or out-of-range values are left out).
      passed: ``[n]`` bool.
      edges: ``[b + 1]`` increasing bin edges; bins are ``[lo, hi)``.

    Returns:
      DataFrame with columns :data:`BIN_COLUMNS`, one row per bin.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bin edges must be a strictly increasing 1-D sequence, got {edges}")
    values = np.asarray(values, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    b = np.searchsorted(edges, values, side="right") - 1
    ok = (b >= 0) & (b < len(edges) - 1) & ~np.isnan(values)
    n = np.bincount(b[ok], minlength=len(edges) - 1)
    k = np.bincount(b[ok], weights=passed[ok].astype(np.float64), minlength=len(edges) - 1)
    f, err = _ratio(k, n)
    return pd.DataFrame(
        {
            "bin_lo": edges[:-1],
            "bin_hi": edges[1:],
            "n": n.astype(np.int64),
            "n_pass": k.astype(np.int64),
            "efficiency": f,
            "error": err,
        }
    )


def _lookup(keys_sorted: np.ndarray, order: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of each ``query`` in the table sorted as ``keys_sorted``; -1 if absent."""
    pos = np.searchsorted(keys_sorted, query)
    found = np.zeros(len(query), dtype=bool)
    inside = pos < len(keys_sorted)
    found[inside] = keys_sorted[pos[inside]] == query[inside]
    return np.where(found, order[np.minimum(pos, max(len(keys_sorted) - 1, 0))], -1)


def track_efficiency(
    truth: pd.DataFrame,
    particles: pd.DataFrame,
    submission: pd.DataFrame,
    bins_pt: tuple[float, ...] | np.ndarray = DEFAULT_BINS_PT,
    bins_eta: tuple[float, ...] | np.ndarray = DEFAULT_BINS_ETA,
    min_particle_hits: int = 4,
    min_track_hits: int = 3,
) -> TrackEfficiency:
    """Efficiency and fake rate of one event (definitions in the module docstring).

    Args:
      truth: columns ``hit_id, particle_id, tx, ty, tz``.
      particles: columns ``particle_id, px, py, pz``.
      submission: ``hit_id, track_id``, one row per truth hit.
      bins_pt: p_T bin edges (GeV).
      bins_eta: η bin edges.
      min_particle_hits: a particle is reconstructable with at least this many hits.
      min_track_hits: only tracks with at least this many hits enter the fake rate.

    Returns:
      A :class:`TrackEfficiency`.

    Raises:
      ValueError: missing columns or an invalid hit assignment (see
        :func:`cgnn_jax.metrics.score.score_event`).
    """
    _require_columns(truth, ("hit_id", "particle_id", "tx", "ty", "tz"), "truth")
    _require_columns(particles, ("particle_id", "px", "py", "pz"), "particles")
    _require_columns(submission, ("hit_id", "track_id"), "submission")

    pid = _integer_column(truth, "particle_id", "truth")
    track_of_hit = align_submission(
        _integer_column(truth, "hit_id", "truth"),
        _integer_column(submission, "hit_id", "submission"),
        _integer_column(submission, "track_id", "submission"),
    )
    tracks = match_tracks(pid, track_of_hit)
    matched = tracks["good"] & (tracks["major_particle_id"] != 0)

    # Per-particle kinematics.
    p_pid = _integer_column(particles, "particle_id", "particles")
    px = particles["px"].to_numpy(np.float64)
    py = particles["py"].to_numpy(np.float64)
    pz = particles["pz"].to_numpy(np.float64)
    p_pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_eta = np.arcsinh(pz / p_pt)
    p_order = np.argsort(p_pid, kind="stable")
    p_sorted = p_pid[p_order]

    # Reconstructable particles (from the truth hit counts).
    t_particles, t_counts = np.unique(pid, return_counts=True)
    reco = (t_particles != 0) & (t_counts >= min_particle_hits)
    r_pid = t_particles[reco]
    r_row = _lookup(p_sorted, p_order, r_pid)
    r_pt = np.where(r_row >= 0, p_pt[np.maximum(r_row, 0)] if len(p_pt) else np.nan, np.nan)
    r_eta = np.where(r_row >= 0, p_eta[np.maximum(r_row, 0)] if len(p_eta) else np.nan, np.nan)
    r_found = np.isin(r_pid, tracks["major_particle_id"][matched])

    # Tracks entering the fake rate.
    sel = tracks["nhits"] >= min_track_hits
    t_fake = ~matched[sel]
    t_row = _lookup(p_sorted, p_order, tracks["major_particle_id"][sel])
    has_p = (t_row >= 0) & (tracks["major_particle_id"][sel] != 0)
    t_pt = np.where(has_p, p_pt[np.maximum(t_row, 0)] if len(p_pt) else np.nan, np.nan)
    p_eta_of_track = np.where(has_p, p_eta[np.maximum(t_row, 0)] if len(p_eta) else np.nan, np.nan)

    # Mean unit direction of each track's hits (for fakes' η).
    xyz = truth[["tx", "ty", "tz"]].to_numpy(np.float64)
    norm = np.linalg.norm(xyz, axis=1, keepdims=True)
    unit = np.divide(xyz, norm, out=np.zeros_like(xyz), where=norm > 0)
    t_idx = np.searchsorted(tracks["track_id"], track_of_hit)
    n_t = len(tracks["track_id"])
    mean_dir = np.stack(
        [np.bincount(t_idx, weights=unit[:, j], minlength=n_t) for j in range(3)], axis=1
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        hit_eta = np.arcsinh(mean_dir[:, 2] / np.hypot(mean_dir[:, 0], mean_dir[:, 1]))
    t_eta = np.where(t_fake, hit_eta[sel], p_eta_of_track)

    eff, eff_err = _ratio(int(r_found.sum()), len(r_pid))
    fake, fake_err = _ratio(int(t_fake.sum()), int(sel.sum()))
    return TrackEfficiency(
        efficiency=float(eff),
        efficiency_error=float(eff_err),
        fake_rate=float(fake),
        fake_rate_error=float(fake_err),
        n_reconstructable=len(r_pid),
        n_matched=int(r_found.sum()),
        n_tracks=int(sel.sum()),
        n_fake=int(t_fake.sum()),
        efficiency_pt=binned_fraction(r_pt, r_found, np.asarray(bins_pt)),
        efficiency_eta=binned_fraction(r_eta, r_found, np.asarray(bins_eta)),
        fake_rate_pt=binned_fraction(t_pt, t_fake, np.asarray(bins_pt)),
        fake_rate_eta=binned_fraction(t_eta, t_fake, np.asarray(bins_eta)),
    )


def combine_track_efficiency(results: list[TrackEfficiency]) -> TrackEfficiency:
    """Pool several events' :class:`TrackEfficiency` (same bins) into one.

    Counts are summed (overall and per bin) and the fractions and binomial errors are
    recomputed from the sums, so the result equals :func:`track_efficiency` on the events
    taken together.

    Args:
      results: one or more results computed with the same bin edges.

    Returns:
      The pooled :class:`TrackEfficiency`.

    Raises:
      ValueError: no results, or results with different bin edges.
    """
    results = list(results)
    if not results:
        raise ValueError("combine_track_efficiency needs at least one result")
    tables = ("efficiency_pt", "efficiency_eta", "fake_rate_pt", "fake_rate_eta")
    pooled: dict[str, pd.DataFrame] = {}
    for name in tables:
        first = getattr(results[0], name)
        n = np.zeros(len(first), np.int64)
        k = np.zeros(len(first), np.int64)
        for r in results:
            t = getattr(r, name)
            same = len(t) == len(first) and np.array_equal(
                t[["bin_lo", "bin_hi"]].to_numpy(), first[["bin_lo", "bin_hi"]].to_numpy()
            )
            if not same:
                raise ValueError(
                    f"combine_track_efficiency: the {name} bins differ between results"
                )
            n += t["n"].to_numpy(np.int64)
            k += t["n_pass"].to_numpy(np.int64)
        f, err = _ratio(k, n)
        pooled[name] = pd.DataFrame(
            {
                "bin_lo": first["bin_lo"].to_numpy(),
                "bin_hi": first["bin_hi"].to_numpy(),
                "n": n,
                "n_pass": k,
                "efficiency": f,
                "error": err,
            }
        )
    n_reco = sum(r.n_reconstructable for r in results)
    n_matched = sum(r.n_matched for r in results)
    n_tracks = sum(r.n_tracks for r in results)
    n_fake = sum(r.n_fake for r in results)
    eff, eff_err = _ratio(n_matched, n_reco)
    fake, fake_err = _ratio(n_fake, n_tracks)
    return TrackEfficiency(
        efficiency=float(eff),
        efficiency_error=float(eff_err),
        fake_rate=float(fake),
        fake_rate_error=float(fake_err),
        n_reconstructable=n_reco,
        n_matched=n_matched,
        n_tracks=n_tracks,
        n_fake=n_fake,
        **pooled,
    )
