"""Run a track-finding method over every event of a dataset and build one submission."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cgnn_jax.baselines import MethodFn, get_method, reconstruct_baseline
from cgnn_jax.io import Event, iter_events, list_event_ids, read_event
from cgnn_jax.io.schema import SUBMISSION_DTYPES

SUBMISSION_COLUMNS: tuple[str, ...] = tuple(SUBMISSION_DTYPES)

PathLike = str | os.PathLike


def submission_frame(event_id: int, hit_id: np.ndarray, track_id: np.ndarray) -> pd.DataFrame:
    """A ``[n]`` submission frame ``event_id, hit_id, track_id`` with the schema dtypes."""
    n = len(hit_id)
    return pd.DataFrame(
        {
            "event_id": np.full(n, int(event_id), dtype=SUBMISSION_DTYPES["event_id"]),
            "hit_id": np.asarray(hit_id).astype(SUBMISSION_DTYPES["hit_id"]),
            "track_id": np.asarray(track_id).astype(SUBMISSION_DTYPES["track_id"]),
        }
    )


def reconstruct_event(event: Event, method: str | MethodFn, **kwargs: Any) -> pd.DataFrame:
    """One event's submission: ``[n_hits]`` rows ``event_id, hit_id, track_id``, hits order."""
    ids = reconstruct_baseline(event.hits, method, **kwargs)
    return submission_frame(event.event_id, event.hits["hit_id"].to_numpy(), ids)


def _reconstruct_one(
    data: PathLike, event_id: int, method: MethodFn, validate: bool, kwargs: dict[str, Any]
) -> pd.DataFrame:
    """Worker-process task: read the hits of one event and reconstruct it."""
    event = read_event(data, event_id, parts=("hits",), validate=validate)
    return reconstruct_event(event, method, **kwargs)


def _empty_submission() -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, dtype=dt) for c, dt in SUBMISSION_DTYPES.items()})


def reconstruct_dataset(
    data: PathLike,
    method: str | MethodFn,
    workers: int = 1,
    event_ids: Iterable[int] | None = None,
    progress: bool = True,
    validate: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Reconstruct every event under ``data`` (only the hits files are read).

    Args:
      data: a directory, ``.zip`` or prefix path understood by :func:`cgnn_jax.io.read_event`.
      method: a key of :data:`cgnn_jax.baselines.METHODS` (``dbscan``, ``helix_dbscan``, or
        one added with :func:`cgnn_jax.baselines.register_method`) or a picklable callable
        ``fn(hits, **kwargs) -> track ids``. Unknown names raise ``ValueError`` listing the
        valid ones, before any event is read.
      workers: number of worker processes (``<= 1``: run in this process). Workers are
        started with ``spawn`` (safe even when JAX is loaded in the parent) and read their
        events themselves.
      event_ids: restrict to these events (default: all, see
        :func:`cgnn_jax.io.list_event_ids`).
      progress: show a tqdm bar over events.
      validate: run the reader's data checks.
      **kwargs: passed to the method (e.g. ``eps``, ``n_scan``).

    Returns:
      the submission: one row per hit of every event, columns ``event_id, hit_id,
      track_id`` (schema dtypes), events in ascending id order, hits in file order.
      Track ids are unique within an event only (as the TrackML score expects).
    """
    fn = get_method(method)
    name = method if isinstance(method, str) else getattr(fn, "__name__", "method")
    ids = list_event_ids(data) if event_ids is None else [int(e) for e in event_ids]
    if not ids:
        return _empty_submission()
    frames: dict[int, pd.DataFrame] = {}
    bar = tqdm(total=len(ids), desc=str(name), unit="event", disable=not progress)
    try:
        if workers <= 1 or len(ids) == 1:
            for event in iter_events(data, parts=("hits",), event_ids=ids, validate=validate):
                frames[event.event_id] = reconstruct_event(event, fn, **kwargs)
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            n_proc = min(int(workers), len(ids))
            with ProcessPoolExecutor(max_workers=n_proc, mp_context=ctx) as pool:
                futures = {
                    pool.submit(_reconstruct_one, data, eid, fn, validate, kwargs): eid
                    for eid in ids
                }
                try:
                    for fut in as_completed(futures):
                        frames[futures[fut]] = fut.result()
                        bar.update(1)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return pd.concat([frames[e] for e in ids], ignore_index=True)
