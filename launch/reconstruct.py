"""Reconstruct every event of a TrackML dataset and write one submission file.

Usage::

  python launch/reconstruct.py --data=DIR --out=FILE [--checkpoint=PATH] [--tree_dir=DIR]
  python launch/reconstruct.py --data=DIR --method=dbscan|helix_dbscan --out=FILE \
      [--eps=...] [--n_scan=...] [--workers=N]

``--method=cgnn`` (the default) is the clustering GNN: the pretrained default model, or
``--checkpoint`` (a training workdir or pipeline checkpoint folder); ``--tree_dir`` also writes
each event's cluster tree (``event<ID>-tree.npz``, see :mod:`cgnn_jax.cluster.tree`). Each
event's submission is first written to ``<out>.parts/`` (atomically): a killed run leaves no
half-written ``--out``, and a re-run skips the events already done. ``--workers=N`` reconstructs
events in N processes.

``--out`` ending in ``.gz`` is gzip-compressed; the file is written atomically.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
from absl import app, flags, logging

from cgnn_jax.baselines import METHODS, MethodFn, get_method
from cgnn_jax.baselines.reconstruct import reconstruct_dataset
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
        kwargs["eps"] = FLAGS.eps
    if FLAGS.n_scan is not None:
        if name != "helix_dbscan":
            raise ValueError("--n_scan only applies to --method=helix_dbscan")
        kwargs["n_scan"] = FLAGS.n_scan
    return fn, kwargs


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    start = time.perf_counter()
    if FLAGS.method == "cgnn":
        from cgnn_jax.pipeline import Pipeline
        from cgnn_jax.pipeline import reconstruct_dataset as reconstruct_with_model

        if FLAGS.eps is not None or FLAGS.n_scan is not None:
            raise app.UsageError("--eps / --n_scan are DBSCAN options, not used by --method=cgnn")
        parts = Path(f"{FLAGS.out}.parts")  # per-event parts: a killed run resumes from them
        try:
            pipe = Pipeline.restore(FLAGS.checkpoint) if FLAGS.workers <= 1 else None
            sub = reconstruct_with_model(
                pipe,
                FLAGS.data,
                FLAGS.tree_dir,
                parts_dir=parts,
                workers=FLAGS.workers,
                checkpoint=FLAGS.checkpoint,
            )
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
    else:
        if FLAGS.tree_dir is not None:
            raise app.UsageError("--tree_dir needs --method=cgnn (only it builds a tree)")
        try:
            fn, kwargs = method_and_kwargs(FLAGS.method)
        except ValueError as e:
            raise app.UsageError(str(e)) from e
        sub = reconstruct_dataset(FLAGS.data, fn, workers=FLAGS.workers, **kwargs)
    path = write_submission(sub, FLAGS.out)
    if FLAGS.method == "cgnn":
        shutil.rmtree(f"{FLAGS.out}.parts", ignore_errors=True)
    print(
        f"{FLAGS.method}: {sub['event_id'].nunique()} events, {len(sub)} hits -> {path} "
        f"({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    app.run(main)
