"""Reconstruct every event of a TrackML dataset and write one submission file.

Usage::

  python launch/reconstruct.py --data=DIR --out=FILE [--checkpoint=PATH] [--tree_dir=DIR]
  python launch/reconstruct.py --data=DIR --method=dbscan|helix_dbscan --out=FILE \
      [--eps=...] [--n_scan=...] [--workers=N]

``--method=cgnn`` (the default) is the clustering GNN: the pretrained default model, or
``--checkpoint`` (a training workdir or pipeline checkpoint folder); ``--tree_dir`` also writes
each event's cluster tree (``event<ID>-tree.npz``, see :mod:`cgnn_jax.cluster.tree`). Each
event's submission is first written to ``<out>.parts/`` (atomically): a killed run leaves no
half-written ``--out``, and a re-run skips the events already done — only those made with the
same method, options and model from input files with the same contents (a part of another run
is never reused; see :mod:`cgnn_jax.io.parts`). A dataset with no events is an error, never an
empty submission. ``--workers=N`` reconstructs
events in N processes.

``--out`` ending in ``.gz`` is gzip-compressed; the file is written atomically.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
import _cli
from absl import app, flags

from cgnn_jax.baselines import METHODS, MethodFn, get_method
from cgnn_jax.inference import part_store, reconstruct_dataset
from cgnn_jax.io import write_submission

FLAGS = flags.FLAGS

flags.DEFINE_string("data", None, "Dataset: directory, .zip or event prefix.", required=True)
flags.DEFINE_string(
    "method", "cgnn", f"Track finder: 'cgnn' (the clustering GNN) or one of {sorted(METHODS)}."
)
flags.DEFINE_string("out", None, "Submission file (.csv or .csv.gz).", required=True)
flags.DEFINE_float("eps", None, "DBSCAN eps (default: the method's own default).")
flags.DEFINE_integer("n_scan", None, "helix_dbscan: number of curvature steps.")
flags.DEFINE_integer("workers", 1, "Events processed in parallel processes.")
flags.DEFINE_string("checkpoint", None, "--method=cgnn: pipeline checkpoint (default: pretrained).")
flags.DEFINE_string("tree_dir", None, "--method=cgnn: also write each event's cluster tree here.")


def method_and_kwargs(name: str) -> tuple[MethodFn, dict[str, Any]]:
    """The function and keyword arguments for ``--method=name`` and the other flags.

    Hook for the learned model: a ``cgnn`` branch goes here, building its (picklable)
    method from ``--checkpoint`` (or registering it with
    :func:`cgnn_jax.baselines.register_method`). Unknown names raise ``ValueError``
    listing the valid methods.
    """
    fn = get_method(name)
    if FLAGS.checkpoint is not None:
        raise ValueError(f"--checkpoint is not used by --method={name}")
    kwargs: dict[str, Any] = {}
    if FLAGS.eps is not None:
        if not (math.isfinite(FLAGS.eps) and FLAGS.eps > 0):
            raise ValueError(f"--eps must be a positive finite number, got {FLAGS.eps}")
        kwargs["eps"] = FLAGS.eps
    if FLAGS.n_scan is not None:
        if name != "helix_dbscan":
            raise ValueError("--n_scan only applies to --method=helix_dbscan")
        if FLAGS.n_scan < 1:
            raise ValueError(f"--n_scan must be >= 1, got {FLAGS.n_scan}")
        kwargs["n_scan"] = FLAGS.n_scan
    return fn, kwargs


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.workers < 1:
        raise app.UsageError(f"--workers must be >= 1, got {FLAGS.workers}")
    start = time.perf_counter()
    out = Path(FLAGS.out)
    if out.is_dir():
        raise IsADirectoryError(f"--out is a folder, expected a submission file: {out}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out: no such folder: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"--out: folder not writable: {out.parent}")
    if FLAGS.method == "cgnn":
        from cgnn_jax.inference import PipelineMethod

        if FLAGS.eps is not None or FLAGS.n_scan is not None:
            raise app.UsageError("--eps / --n_scan are DBSCAN options, not used by --method=cgnn")
        from cgnn_jax.inference.pipeline_checkpoint import verify_pipeline_checkpoint

        verify_pipeline_checkpoint(FLAGS.checkpoint)  # a damaged model: one line, before any work
        fn: MethodFn = PipelineMethod(FLAGS.checkpoint, FLAGS.tree_dir)
        kwargs: dict[str, Any] = {}
    else:
        if FLAGS.tree_dir is not None:
            raise app.UsageError("--tree_dir needs --method=cgnn (only it builds a tree)")
        try:
            fn, kwargs = method_and_kwargs(FLAGS.method)
        except ValueError as e:
            raise app.UsageError(str(e)) from e
    # per-event parts: a killed run resumes from them, and only a run with the same method,
    # options, model and input file contents reuses them (cgnn_jax.io.parts)
    parts = Path(f"{FLAGS.out}.parts")
    sub = reconstruct_dataset(FLAGS.data, fn, workers=FLAGS.workers, parts_dir=parts, **kwargs)
    path = write_submission(sub, FLAGS.out)
    part_store(parts, fn, kwargs).finish()
    print(
        f"{FLAGS.method}: {sub['event_id'].nunique()} events, {len(sub)} hits -> {path} "
        f"({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    _cli.run(
        main,
        fast_exit=True,
        inputs=("data", "checkpoint"),
        files=("out",),
        folders=("tree_dir",),
        data=("data",),
    )
