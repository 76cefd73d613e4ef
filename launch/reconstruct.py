"""Reconstruct every event of a TrackML dataset and write one submission file.

Usage::

  python launch/reconstruct.py --data=DIR --method=dbscan|helix_dbscan --out=FILE \
      [--eps=...] [--n_scan=...] [--workers=N]

``--out`` ending in ``.gz`` is gzip-compressed; the file is written atomically.
"""

from __future__ import annotations

import time
from typing import Any

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
from absl import app, flags, logging

from cgnn_jax.baselines import METHODS, MethodFn, get_method
from cgnn_jax.baselines.reconstruct import reconstruct_dataset
from cgnn_jax.io import write_submission

FLAGS = flags.FLAGS

flags.DEFINE_string("data", None, "Dataset: directory, .zip or event prefix.", required=True)
flags.DEFINE_string(
    "method", "dbscan", f"Track finder: one of {sorted(METHODS)} (later also 'cgnn')."
)
flags.DEFINE_string("out", None, "Submission file (.csv or .csv.gz).", required=True)
flags.DEFINE_float("eps", None, "DBSCAN eps (default: the method's own default).")
flags.DEFINE_integer("n_scan", None, "helix_dbscan: number of curvature steps.")
flags.DEFINE_integer("workers", 1, "Events processed in parallel processes.")
flags.DEFINE_string("checkpoint", None, "Model checkpoint, for --method=cgnn (not yet built).")


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
    try:
        fn, kwargs = method_and_kwargs(FLAGS.method)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    start = time.perf_counter()
    sub = reconstruct_dataset(FLAGS.data, fn, workers=FLAGS.workers, **kwargs)
    path = write_submission(sub, FLAGS.out)
    logging.info(
        "%s: %d events, %d hits -> %s (%.1f s)",
        FLAGS.method,
        sub["event_id"].nunique(),
        len(sub),
        path,
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    app.run(main)
