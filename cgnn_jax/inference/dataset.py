"""A submission for a whole dataset: every event reconstructed by one method, resumable, in
worker processes, never mixing runs.

A method is the learned model (:class:`PipelineMethod`) or a baseline of
:mod:`cgnn_jax.baselines` (by name, e.g. ``"dbscan"``, or as a function):
:func:`reconstruct_dataset` runs either. Neither this module nor a baseline run loads JAX; the
model loads it when it is restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cgnn_jax.baselines import MethodFn, get_method, reconstruct_baseline
from cgnn_jax.io import (
    Event,
    event_fingerprints,
    iter_events,
    list_event_ids,
    read_event,
    submission_frame,
)
from cgnn_jax.io.parts import PartStore, directory_fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from cgnn_jax.inference.pipeline import Pipeline

PathLike = str | os.PathLike


def reconstruct_event(event: Event, method: str | MethodFn, **kwargs: Any) -> pd.DataFrame:
    """One event's submission: ``[n_hits]`` rows ``event_id, hit_id, track_id``, hits order."""
    ids = reconstruct_baseline(event.hits, method, **kwargs)
    return submission_frame(event.event_id, event.hits["hit_id"].to_numpy(), ids)


def _event_parts(fn: MethodFn) -> tuple[str, ...]:
    """The event files a method reads: its ``parts`` attribute, else the hits only."""
    return tuple(getattr(fn, "parts", ("hits",)))


def _run_method(event: Event, fn: MethodFn, kwargs: dict[str, Any]) -> pd.DataFrame:
    """One event's submission with a hits method ``fn(hits)`` or an event method ``fn(event)``."""
    if getattr(fn, "takes_event", False):
        ids = np.asarray(fn(event, **kwargs), dtype=np.int64)
        if ids.shape != (event.n_hits,):
            raise ValueError(f"method returned shape {ids.shape}, expected ({event.n_hits},)")
        return submission_frame(event.event_id, event.hits["hit_id"].to_numpy(), ids)
    return reconstruct_event(event, fn, **kwargs)


def _reconstruct_one(
    data: PathLike,
    event_id: int,
    method: MethodFn,
    validate: bool,
    kwargs: dict[str, Any],
    store: PartStore | None = None,
    fingerprint: str | None = None,
) -> pd.DataFrame:
    """Reconstruct one event (read here: worker processes read their own events).

    With a ``store`` the submission is also written there as the event's part.
    """
    event = read_event(data, event_id, parts=_event_parts(method), validate=validate)
    sub = _run_method(event, method, kwargs)
    if store is not None:
        assert fingerprint is not None
        store.write(event_id, fingerprint, sub)
    return sub


def method_run_key(method: str | MethodFn, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What, besides the input, determines a method's output: its name, options and, for a
    method object with a ``run_key()``, what it says (e.g. a model's checkpoint fingerprint)."""
    fn = get_method(method)
    name = (
        method
        if isinstance(method, str)
        else f"{fn.__module__}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    )
    key: dict[str, Any] = {"method": name, "options": {k: kwargs[k] for k in sorted(kwargs)}}
    if hasattr(fn, "run_key"):
        key["model"] = fn.run_key()
    return key


def reconstruct_dataset(
    data: PathLike,
    method: str | MethodFn,
    workers: int = 1,
    event_ids: Iterable[int] | None = None,
    progress: bool = True,
    validate: bool = True,
    parts_dir: PathLike | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Reconstruct every event under ``data``.

    Args:
      data: a directory, ``.zip`` or prefix path understood by :func:`cgnn_jax.io.read_event`.
      method: a key of :data:`cgnn_jax.baselines.METHODS` (``dbscan``, ``helix_dbscan``, or
        one added with :func:`cgnn_jax.baselines.register_method`) or a picklable callable:
        ``fn(hits, **kwargs) -> track ids``, or, for an object with ``takes_event = True``,
        ``fn(event, **kwargs)`` reading the event files named by its ``parts`` attribute
        (the learned model does this). Unknown names raise ``ValueError`` listing the valid
        ones, before any event is read.
      workers: number of worker processes (``<= 1``: run in this process). Workers are
        started with ``spawn`` (safe even when JAX is loaded in the parent) and read their
        events themselves.
      event_ids: restrict to these events (default: all, see
        :func:`cgnn_jax.io.list_event_ids`).
      progress: show a tqdm bar over events.
      validate: run the reader's data checks.
      parts_dir: resumable mode: each event's submission is saved there as soon as it is
        done, and a re-run reuses the parts made by the same method, options and model from
        input files with the same contents (and, for a method with ``has_output(event_id)``,
        whose other outputs exist) — never those of another run
        (:class:`cgnn_jax.io.parts.PartStore`). The caller removes them with
        ``PartStore.finish`` (see :func:`part_store`) once the final file is written.
      **kwargs: passed to the method (e.g. ``eps``, ``n_scan``).

    Returns:
      the submission: one row per hit of every event, columns ``event_id, hit_id,
      track_id`` (schema dtypes), events in ascending id order, hits in file order.
      Track ids are unique within an event only (as the TrackML score expects).

    Raises:
      ValueError: ``data`` holds no events (never an empty submission), or an unknown method.
    """
    fn = get_method(method)
    name = method if isinstance(method, str) else getattr(fn, "__name__", type(fn).__name__)
    ids = list_event_ids(data) if event_ids is None else [int(e) for e in event_ids]
    if not ids:
        raise ValueError(f"no events under {data} (expected eventNNNNNNNNN-hits.csv[.gz] files)")
    store = None
    fps: dict[int, str] = {}
    if parts_dir is not None:
        store = part_store(parts_dir, method, kwargs)
        fps = event_fingerprints(data, _event_parts(fn))
        missing = [e for e in ids if e not in fps]
        if missing:
            raise ValueError(f"no files for event {missing[0]} under {data}")
    frames: dict[int, pd.DataFrame] = {}
    if store is not None:
        has_output = getattr(fn, "has_output", lambda event_id: True)
        for e in ids:
            if store.has(e, fps[e]) and has_output(e):
                frames[e] = store.read(e, fps[e])
    todo = [e for e in ids if e not in frames]
    bar = tqdm(
        total=len(ids), initial=len(frames), desc=str(name), unit="event", disable=not progress
    )
    try:
        if workers <= 1 or len(todo) <= 1:
            for event in iter_events(
                data, parts=_event_parts(fn), event_ids=todo, validate=validate
            ):
                sub = _run_method(event, fn, kwargs)
                if store is not None:
                    store.write(event.event_id, fps[event.event_id], sub)
                frames[event.event_id] = sub
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            n_proc = min(int(workers), len(todo))
            with ProcessPoolExecutor(
                max_workers=n_proc, mp_context=ctx, initializer=_worker_init
            ) as pool:
                with _sigint_blocked():  # the workers are started by the submits
                    futures = {
                        pool.submit(
                            _reconstruct_one, data, eid, fn, validate, kwargs, store, fps.get(eid)
                        ): eid
                        for eid in todo
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


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread meanwhile: worker processes started here inherit the
    block, so a Ctrl-C during their start-up waits until a launch script's handler is installed
    (``launch/_bootstrap.py``) or :func:`_worker_init` runs, instead of printing a traceback of
    the worker's imports. A Ctrl-C meanwhile reaches this process once the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_init() -> None:
    """A worker process's first step: let SIGINT in again (see :func:`_sigint_blocked`)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def part_store(parts_dir: PathLike, method: str | MethodFn, kwargs: dict[str, Any]) -> PartStore:
    """The :class:`~cgnn_jax.io.parts.PartStore` that :func:`reconstruct_dataset` uses."""
    return PartStore(parts_dir, method_run_key(method, kwargs))


class PipelineMethod:
    """The learned model as a method of :func:`reconstruct_dataset`.

    An event method (``takes_event``: it reads hits and cells) that is picklable: sent to a
    worker process it carries only the checkpoint path and restores the model there, once.
    Its :meth:`run_key` fingerprints the model (the checkpoint files, or the parameters of a
    pipeline given in memory) so that saved per-event results are reused only by the same model.

    Args:
      checkpoint: the pipeline checkpoint (``None``: the pretrained default model).
      tree_dir: also write each event's cluster tree there (``event<ID>-tree.npz``).
      pipe: an already restored pipeline to use in this process.
    """

    takes_event = True
    parts = ("hits", "cells")
    __name__ = "cgnn"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        tree_dir: str | Path | None = None,
        pipe: Pipeline | None = None,
    ) -> None:
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.tree_dir = None if tree_dir is None else str(tree_dir)
        self._pipe = pipe
        self._from_memory = pipe is not None and checkpoint is None

    def __getstate__(self) -> dict[str, Any]:
        if self._from_memory:
            raise ValueError(
                "a pipeline given in memory cannot go to worker processes; pass its checkpoint"
            )
        return {**self.__dict__, "_pipe": None}

    @property
    def pipe(self) -> Pipeline:
        if self._pipe is None:
            from cgnn_jax.inference.pipeline import Pipeline

            self._pipe = Pipeline.restore(self.checkpoint)
        return self._pipe

    def run_key(self) -> dict[str, Any]:
        import jax

        from cgnn_jax.inference.pipeline_checkpoint import PRETRAINED_DIR

        if self._from_memory:
            h = hashlib.sha256()
            dense = self.pipe.dense
            for leaf in jax.tree_util.tree_leaves(
                (self.pipe.params, dense.params if dense is not None else None)
            ):
                h.update(np.asarray(leaf).tobytes())
            cfgs = [self.pipe.config, self.pipe.stage1_config]
            if dense is not None:
                cfgs.append(dense.config)
                h.update(f"dense_min_hits={self.pipe.dense_min_hits}".encode())
            for cfg in cfgs:
                h.update(cfg.to_json_best_effort(sort_keys=True).encode())
            model = f"params:{h.hexdigest()}"
        else:
            path = Path(self.checkpoint) if self.checkpoint is not None else PRETRAINED_DIR
            if not path.exists():
                raise FileNotFoundError(f"no such checkpoint: {path}")
            model = f"files:{directory_fingerprint(path)}"
        return {"model": model}

    def has_output(self, event_id: int) -> bool:
        """Whether what this method writes besides the submission (the tree) exists for
        ``event_id``: a saved part is only reused if it does."""
        return self.tree_dir is None or self._tree_path(event_id).is_file()

    def _tree_path(self, event_id: int) -> Path:
        return Path(self.tree_dir) / f"event{int(event_id):09d}-tree.npz"

    def __call__(self, event: Event) -> np.ndarray:
        if self.tree_dir is None:
            return self.pipe.reconstruct(event)
        from cgnn_jax.cluster.tree import write_tree

        tid, tree = self.pipe.reconstruct(event, return_tree=True)
        Path(self.tree_dir).mkdir(parents=True, exist_ok=True)
        write_tree(tree, self._tree_path(event.event_id))
        return tid
