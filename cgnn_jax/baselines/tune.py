"""Choose a baseline's DBSCAN ``eps`` on events with truth, by the TrackML score."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cgnn_jax.baselines import MethodFn, get_method, reconstruct_baseline
from cgnn_jax.io import Event, submission_frame

ScoreFn = Callable[[pd.DataFrame, pd.DataFrame], float]
"""``score_fn(truth, submission) -> float``; the submission has ``event_id, hit_id,
track_id`` with one row per hit."""

DEFAULT_EPS_GRIDS: dict[str, tuple[float, ...]] = {
    "dbscan": (0.004, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.02),
    "helix_dbscan": (0.002, 0.0025, 0.003, 0.0035, 0.004, 0.005, 0.006),
}
"""The grids :func:`tune_eps` uses when ``eps_grid`` is None."""


def tune_eps(
    events: Sequence[Event],
    method: str | MethodFn = "dbscan",
    eps_grid: Sequence[float] | None = None,
    score_fn: ScoreFn | None = None,
    **kwargs: Any,
) -> tuple[float, pd.DataFrame]:
    """Grid-search ``eps`` for a method by the mean score over ``events``.

    Args:
      events: events with ``hits`` and ``truth`` (``hit_id, particle_id, weight``).
      method: a key of :data:`cgnn_jax.baselines.METHODS` or a callable taking ``eps``.
      eps_grid: the values to try; None: :data:`DEFAULT_EPS_GRIDS` of the method.
      score_fn: ``(truth, submission) -> float``; None: the TrackML score,
        :func:`cgnn_jax.metrics.score_event` (imported here, lazily).
      **kwargs: other method arguments, fixed during the search.

    Returns:
      ``(best_eps, table)``: the ``eps`` of the highest mean score (the first one on
      ties) and a ``[len(eps_grid)]`` frame with columns ``eps, score`` (mean), ``std``,
      ``seconds`` (total clustering time) and ``event_<id>`` (one score per event), rows in
      grid order.

    Raises:
      ValueError: no events, an empty grid, an event without truth, or no grid default
        for a callable method.
    """
    if not events:
        raise ValueError("tune_eps needs at least one event")
    if eps_grid is None:
        if not isinstance(method, str) or method not in DEFAULT_EPS_GRIDS:
            raise ValueError(f"no default eps grid for method {method!r}; pass eps_grid")
        eps_grid = DEFAULT_EPS_GRIDS[method]
    grid = [float(e) for e in eps_grid]
    if not grid:
        raise ValueError("eps_grid is empty")
    for event in events:
        if event.truth is None:
            raise ValueError(f"event {event.event_id} has no truth; tune_eps needs truth")
    if score_fn is None:
        from cgnn_jax.metrics import score_event

        score_fn = score_event
    fn = get_method(method)

    rows = []
    for eps in grid:
        row: dict[str, float] = {"eps": eps}
        seconds = 0.0
        scores = []
        for event in events:
            start = time.perf_counter()
            ids = reconstruct_baseline(event.hits, fn, eps=eps, **kwargs)
            seconds += time.perf_counter() - start
            sub = submission_frame(event.event_id, event.hits["hit_id"].to_numpy(), ids)
            s = float(score_fn(event.truth, sub))
            scores.append(s)
            row[f"event_{event.event_id}"] = s
        row["score"] = float(np.mean(scores))
        row["std"] = float(np.std(scores))
        row["seconds"] = seconds
        rows.append(row)
    table = pd.DataFrame(rows)
    event_cols = [c for c in table.columns if c.startswith("event_")]
    table = table[["eps", "score", "std", "seconds", *event_cols]]
    best = float(table["eps"].iloc[int(np.argmax(table["score"].to_numpy()))])
    return best, table
