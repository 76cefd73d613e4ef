"""The TrackML challenge score, vectorised with numpy.

Definition (identical to the challenge's reference ``trackml/score.py``):

* Every truth hit is assigned to exactly one reconstructed track by the submission.
* For each reconstructed track the *majority particle* is the particle holding the most of
  the track's hits; ties go to the smaller ``particle_id``.  Noise hits carry
  ``particle_id == 0`` and count as "particle 0" like any other particle (they weigh 0).
* A track is *good* when its majority particle holds more than half of the track's hits
  **and** the track holds more than half of that particle's hits (both strict, the
  "double majority").
* The event score is the summed truth ``weight`` of the hits of good tracks that belong to
  their majority particle, divided by the total truth weight of the event.

No Python loop over tracks or hits: the (track, particle) pair counts come from one
``np.unique`` over a combined integer key, the majority from a per-track maximum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRUTH_COLUMNS: tuple[str, ...] = ("hit_id", "particle_id", "weight")
SUBMISSION_COLUMNS: tuple[str, ...] = ("hit_id", "track_id")

ANALYZE_COLUMNS: tuple[str, ...] = (
    "track_id",
    "nhits",
    "major_particle_id",
    "major_particle_nhits",
    "major_nhits",
    "major_weight",
    "good",
)

_MAX_LISTED = 10


def _list_some(values: np.ndarray) -> str:
    """``'[1, 2, 3]'`` or ``'[1, 2, ... (n in all)]'`` for error messages."""
    values = np.asarray(values)
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED].tolist())
    if len(values) > _MAX_LISTED:
        return f"[{shown}, ... ({len(values)} in all)]"
    return f"[{shown}]"


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")
    repeated = [c for c in columns if int((df.columns == c).sum()) > 1]
    if repeated:
        raise ValueError(f"{what} has column(s) {repeated} more than once")


def _integer_column(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """The column as an int64 array; ValueError on NaN, non-integral or out-of-range values."""
    values = df[column].to_numpy()
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    try:
        if values.dtype.kind not in "fOUS":  # complex, datetime, timedelta, void
            raise TypeError(values.dtype)
        as_float = values.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} column {column!r} is not numeric ({values.dtype})") from e
    bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{what} column {column!r} holds {len(rows)} non-integer value(s) "
            f"(NaN, inf or fractional) at rows {_list_some(rows)}"
        )
    big = np.abs(as_float) >= 2.0**63
    if big.any():
        rows = np.flatnonzero(big)
        raise ValueError(
            f"{what} column {column!r} holds {len(rows)} value(s) outside the int64 range "
            f"at rows {_list_some(rows)}"
        )
    return as_float.astype(np.int64)


def _check_event_id(submission: pd.DataFrame, event_id: int | None) -> None:
    """Consistency of an optional submission ``event_id`` column with the argument."""
    if "event_id" not in submission.columns or len(submission) == 0:
        return
    ids = np.unique(_integer_column(submission, "event_id", "submission"))
    if event_id is not None:
        other = ids[ids != int(event_id)]
        if len(other):
            raise ValueError(
                f"submission holds rows of event_id(s) {_list_some(other)}, "
                f"but event {int(event_id)} is being scored; select its rows first"
            )
    elif len(ids) > 1:
        raise ValueError(
            f"submission holds several events {_list_some(ids)}; split it by event_id "
            "and score each event separately (or pass event_id=...)"
        )


def align_submission(
    truth_hit_id: np.ndarray, sub_hit_id: np.ndarray, sub_track_id: np.ndarray
) -> np.ndarray:
    """Track id of every truth hit, in truth order, after validating the assignment.

    Args:
      truth_hit_id: ``[n]`` int, the truth hit ids (unique).
      sub_hit_id: ``[m]`` int, the submission's hit ids.
      sub_track_id: ``[m]`` int, the submission's track ids.

    Returns:
      ``[n]`` int64, the track id of each truth hit.

    Raises:
      ValueError: repeated truth hit ids, repeated submission hit ids, submission hit ids
        absent from the truth, or truth hits absent from the submission.
    """
    truth_hit_id = np.asarray(truth_hit_id, dtype=np.int64)
    sub_hit_id = np.asarray(sub_hit_id, dtype=np.int64)
    sub_track_id = np.asarray(sub_track_id, dtype=np.int64)

    t_order = np.argsort(truth_hit_id, kind="stable")
    t_sorted = truth_hit_id[t_order]
    if len(t_sorted) > 1:
        dup = t_sorted[1:] == t_sorted[:-1]
        if dup.any():
            raise ValueError(f"truth repeats hit_id(s) {_list_some(np.unique(t_sorted[1:][dup]))}")

    s_order = np.argsort(sub_hit_id, kind="stable")
    s_sorted = sub_hit_id[s_order]
    if len(s_sorted) > 1:
        dup = s_sorted[1:] == s_sorted[:-1]
        if dup.any():
            repeated = np.unique(s_sorted[1:][dup])
            raise ValueError(
                f"submission assigns {len(repeated)} hit_id(s) more than once: "
                f"{_list_some(repeated)}"
            )

    pos = np.searchsorted(t_sorted, sub_hit_id)
    known = np.zeros(len(sub_hit_id), dtype=bool)
    inside = pos < len(t_sorted)
    known[inside] = t_sorted[pos[inside]] == sub_hit_id[inside]
    if not np.all(known):
        foreign = np.unique(sub_hit_id[~known])
        raise ValueError(
            f"submission holds {len(foreign)} hit_id(s) absent from the truth: {_list_some(foreign)}"
        )
    if len(sub_hit_id) != len(truth_hit_id):
        covered = np.zeros(len(t_sorted), dtype=bool)
        covered[pos] = True
        missing = t_sorted[~covered]
        raise ValueError(
            f"submission misses {len(missing)} of the truth's {len(truth_hit_id)} hits: "
            f"hit_id(s) {_list_some(missing)}"
        )
    track_of_hit = np.empty(len(truth_hit_id), dtype=np.int64)
    track_of_hit[t_order[pos]] = sub_track_id
    return track_of_hit


def match_tracks(
    particle_id: np.ndarray, track_id: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Double-majority matching of tracks to particles, on aligned per-hit arrays.

    Args:
      particle_id: ``[n]`` int, the true particle of every hit (0 for noise).
      track_id: ``[n]`` int, the reconstructed track of every hit.
      weight: optional ``[n]`` hit weights (summed for the majority particle's hits).

    Returns:
      dict of per-track arrays, tracks sorted by ``track_id``: ``track_id``, ``nhits``,
      ``major_particle_id``, ``major_particle_nhits`` (the particle's hit count in the whole
      event), ``major_nhits`` (its hits on the track), ``major_weight`` (the summed weight of
      those hits, not normalised; zeros if ``weight`` is None) and ``good`` (bool).
    """
    particle_id = np.asarray(particle_id, dtype=np.int64)
    track_id = np.asarray(track_id, dtype=np.int64)
    n = len(particle_id)
    if len(track_id) != n:
        raise ValueError(f"particle_id has {n} hits but track_id has {len(track_id)}")
    w = np.zeros(n) if weight is None else np.asarray(weight, dtype=np.float64)

    particles, p_idx = np.unique(particle_id, return_inverse=True)
    p_nhits = np.bincount(p_idx, minlength=len(particles))
    tracks, t_idx = np.unique(track_id, return_inverse=True)
    n_p = np.int64(len(particles))

    # (track, particle) pairs, sorted by track then particle (particles ascending by id).
    key = t_idx.astype(np.int64) * n_p + p_idx
    pair_key, pair_inv, pair_n = np.unique(key, return_inverse=True, return_counts=True)
    pair_w = np.bincount(pair_inv.ravel(), weights=w, minlength=len(pair_key))
    pair_t = pair_key // n_p
    pair_p = pair_key % n_p

    t_nhits = np.bincount(t_idx, minlength=len(tracks))
    # Per-track maximum pair count; the first pair (smallest particle id) reaching it wins.
    starts = np.flatnonzero(np.r_[True, pair_t[1:] != pair_t[:-1]]) if len(pair_t) else []
    t_max = np.maximum.reduceat(pair_n, starts) if len(pair_t) else np.zeros(0, np.int64)
    at_max = np.flatnonzero(pair_n == t_max[pair_t])
    first = (
        at_max[np.r_[True, pair_t[at_max][1:] != pair_t[at_max][:-1]]] if len(at_max) else at_max
    )

    major_p = pair_p[first]
    major_nhits = pair_n[first]
    major_particle_nhits = p_nhits[major_p]
    good = (2 * major_nhits > t_nhits) & (2 * major_nhits > major_particle_nhits)
    return {
        "track_id": tracks,
        "nhits": t_nhits,
        "major_particle_id": particles[major_p],
        "major_particle_nhits": major_particle_nhits,
        "major_nhits": major_nhits,
        "major_weight": pair_w[first],
        "good": good,
    }


def _prepare(
    truth: pd.DataFrame, submission: pd.DataFrame, event_id: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated, aligned ``(particle_id, track_id, weight)`` per truth hit."""
    _require_columns(truth, TRUTH_COLUMNS, "truth")
    _require_columns(submission, SUBMISSION_COLUMNS, "submission")
    _check_event_id(submission, event_id)
    track_of_hit = align_submission(
        _integer_column(truth, "hit_id", "truth"),
        _integer_column(submission, "hit_id", "submission"),
        _integer_column(submission, "track_id", "submission"),
    )
    particle_id = _integer_column(truth, "particle_id", "truth")
    try:
        weight = truth["weight"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"truth column 'weight' is not numeric ({truth['weight'].dtype})") from e
    if not np.all(np.isfinite(weight)):
        raise ValueError("truth column 'weight' holds NaN or inf")
    return particle_id, track_of_hit, weight


def analyze_tracks(
    truth: pd.DataFrame, submission: pd.DataFrame, event_id: int | None = None
) -> pd.DataFrame:
    """Majority particle, hit counts and weight of every reconstructed track.

    Args:
      truth: one event's truth, columns ``hit_id, particle_id, weight``.
      submission: ``hit_id, track_id`` (optionally ``event_id``), one row per truth hit.
      event_id: if given, a submission ``event_id`` column must hold only this value.

    Returns:
      One row per track, sorted by ``track_id``, columns ``track_id, nhits,
      major_particle_id, major_particle_nhits, major_nhits, major_weight, good``;
      ``major_weight`` is normalised by the event's total truth weight (as in the
      reference), so ``score_event == major_weight[good].sum()``.

    Raises:
      ValueError: see :func:`score_event`.
    """
    particle_id, track_of_hit, weight = _prepare(truth, submission, event_id)
    out = match_tracks(particle_id, track_of_hit, weight)
    total = weight.sum()
    out["major_weight"] = out["major_weight"] / total if total > 0 else out["major_weight"] * 0.0
    return pd.DataFrame({c: out[c] for c in ANALYZE_COLUMNS})


def score_event(
    truth: pd.DataFrame, submission: pd.DataFrame, event_id: int | None = None
) -> float:
    """The TrackML score of one event (see the module docstring for the definition).

    Args:
      truth: one event's truth, columns ``hit_id, particle_id, weight`` (others ignored).
      submission: ``hit_id, track_id`` (optionally ``event_id``), exactly one row per
        truth hit.  Track ids are arbitrary integers.
      event_id: if given and the submission has an ``event_id`` column, all its values
        must equal it.  Without it, a submission ``event_id`` column must hold one value.

    Returns:
      The score in ``[0, 1]``; 0.0 for an event whose truth weights sum to 0.

    Raises:
      ValueError: missing columns; truth hits absent from the submission; hits repeated in
        the submission; submission hits absent from the truth; non-integer ids; an
        ``event_id`` column inconsistent with ``event_id``.
    """
    particle_id, track_of_hit, weight = _prepare(truth, submission, event_id)
    total = weight.sum()
    if not total > 0:
        return 0.0
    out = match_tracks(particle_id, track_of_hit, weight)
    return float(out["major_weight"][out["good"]].sum() / total)
