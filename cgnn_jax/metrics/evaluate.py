"""Score a (multi-event) submission against a TrackML dataset on disk."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cgnn_jax.metrics.efficiency import track_efficiency
from cgnn_jax.metrics.score import _integer_column, _list_some, _require_columns, score_event
from cgnn_jax.metrics.weights import compute_weights

EVALUATE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "n_hits",
    "n_tracks",
    "score",
    "efficiency",
    "fake_rate",
    "n_reconstructable",
    "n_fake_candidates",
)


def evaluate_submission(
    data_dir: str | os.PathLike[str],
    submission: pd.DataFrame,
    min_particle_hits: int = 4,
    min_track_hits: int = 3,
) -> pd.DataFrame:
    """Score every event of a dataset against a submission holding all of them.

    Each event's ``hits``, ``particles`` and ``truth`` are read with :mod:`cgnn_jax.io`.
    The truth ``weight`` column is used as is; if it is absent or sums to 0 the weights are
    recomputed with :func:`~cgnn_jax.metrics.weights.compute_weights`.

    Args:
      data_dir: anything :func:`cgnn_jax.io.list_event_ids` accepts (directory, zip).
      submission: columns ``event_id, hit_id, track_id``.
      min_particle_hits: reconstructable-particle threshold of the efficiency.
      min_track_hits: minimum track size entering the fake rate.

    Returns:
      One row per event, ascending ``event_id``, columns :data:`EVALUATE_COLUMNS`:
      ``n_tracks`` counts all submitted tracks; ``efficiency`` is over all reconstructable
      particles and ``fake_rate`` over tracks with ``>= min_track_hits`` hits
      (``n_fake_candidates`` of them); see :mod:`cgnn_jax.metrics.efficiency`.

    Raises:
      ValueError: the submission lacks columns, lacks an event of the data, holds an event
        absent from the data, or an event's assignment is invalid (the message names the
        event).
    """
    from cgnn_jax.io import iter_events, list_event_ids  # only needed here

    _require_columns(submission, ("event_id", "hit_id", "track_id"), "submission")
    sub_events = _integer_column(submission, "event_id", "submission")
    data_ids = np.asarray(list_event_ids(data_dir), dtype=np.int64)
    if len(data_ids) == 0:
        raise ValueError(f"no TrackML events found under {os.fspath(data_dir)!r}")
    sub_ids = np.unique(sub_events)
    missing = np.setdiff1d(data_ids, sub_ids)
    extra = np.setdiff1d(sub_ids, data_ids)
    problems = []
    if len(missing):
        problems.append(f"lacks {len(missing)} event(s) of the data: {_list_some(missing)}")
    if len(extra):
        problems.append(f"holds {len(extra)} event(s) not in the data: {_list_some(extra)}")
    if problems:
        raise ValueError(f"submission {'; and '.join(problems)} (data: {os.fspath(data_dir)})")

    order = np.argsort(sub_events, kind="stable")
    bounds = np.searchsorted(sub_events[order], data_ids, side="left")
    ends = np.searchsorted(sub_events[order], data_ids, side="right")
    rows = []
    for event in iter_events(data_dir, parts=("hits", "particles", "truth")):
        i = int(np.searchsorted(data_ids, event.event_id))
        sub = submission.iloc[order[bounds[i] : ends[i]]]
        truth, particles = event.truth, event.particles
        if truth is None or particles is None:
            raise ValueError(f"event {event.event_id} has no truth or particles file")
        if "weight" not in truth.columns or not truth["weight"].sum() > 0:
            truth = truth.assign(weight=compute_weights(truth, particles))
        try:
            score = score_event(truth, sub, event_id=event.event_id)
            eff = track_efficiency(
                truth,
                particles,
                sub,
                min_particle_hits=min_particle_hits,
                min_track_hits=min_track_hits,
            )
        except ValueError as e:
            raise ValueError(f"event {event.event_id}: {e}") from e
        rows.append(
            {
                "event_id": int(event.event_id),
                "n_hits": len(event.hits),
                "n_tracks": int(sub["track_id"].nunique()),
                "score": score,
                "efficiency": eff.efficiency,
                "fake_rate": eff.fake_rate,
                "n_reconstructable": eff.n_reconstructable,
                "n_fake_candidates": eff.n_tracks,
            }
        )
    return pd.DataFrame(rows, columns=list(EVALUATE_COLUMNS))
