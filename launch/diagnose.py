"""The stage-ceiling diagnostic: where a trained pipeline loses its TrackML score.

Usage::

    python launch/diagnose.py [--checkpoint=PATH] [--events=2 --fraction=1.0 --seed=99] \
        [--tune_events=1] [--hdbscan_max_hits=60000] [--json_out=PATH]
    python launch/diagnose.py [--checkpoint=PATH] --data=DIR [--events=N] [--json_out=PATH]

Runs the pipeline (``--checkpoint``, default the pretrained model shipped in the package) on
every event and prints, per event and on average (see :mod:`cgnn_jax.analysis.diagnose`):

* the embedding graph and the refined graph: edges per hit, purity, recall over consecutive hits
  and the oracle-completed connected-components ceiling;
* the GNN: ROC AUC of its learned edge weights ``a_ij`` (mean over layers, last layer),
  efficiency / purity at ``a_ij > 0.5``, the score of the components of those edges, and the
  particles' compactness in its output space (median, 90 %);
* the references the learned tree must beat, in the cluster space Split/Stop see: Stop's cut in
  use, the pipeline with Stop never stopping (``stop_off``), DBSCAN at the radius that scores
  best on ``--tune_events`` separate validation events (simulated with seed 98 at the same
  ``--fraction``; with ``--data``, full events; 0: no DBSCAN) and HDBSCAN (events of at most
  ``--hdbscan_max_hits`` hits: it takes ~50 s on a full event);
* the chain of ceilings ``perfect -> embedding graph -> refined graph -> oracle-Stop -> pipeline``
  and one line naming its largest drop: the stage to work on.

Without ``--data``, ``--events`` μ = 200 events are simulated with ``--seed`` (event ``i`` from
``(seed, i)``, as ``launch/eval.py`` does; seed 99 is never used in training), keeping
``--fraction`` of the tracks. With ``--data`` (a directory or .zip with truth), every event is
diagnosed, or the first ``--events`` if that flag is given. ``--json_out`` writes every figure
(atomically). Bad input ends with one ``error:`` line and exit status 1.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
import _cli
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Pipeline checkpoint (default: the pretrained model).")
flags.DEFINE_string("data", None, "Dataset with truth: directory or .zip (default: simulate).")
flags.DEFINE_integer("events", 2, "Simulated events (with --data: at most this many events).")
flags.DEFINE_float("fraction", 1.0, "Simulated events keep this fraction of the tracks, in (0, 1].")
flags.DEFINE_integer("seed", 99, "Simulation seed.")
flags.DEFINE_integer(
    "tune_events", 1, "Validation events (seed 98) choosing DBSCAN's eps in the cluster space."
)
flags.DEFINE_integer(
    "hdbscan_max_hits", 60_000, "HDBSCAN in the cluster space on events of at most this many hits."
)
flags.DEFINE_string("json_out", None, "Write every figure to this JSON file.")

TUNE_SEED = 98  # validation events: neither training's seeds nor the test seed 99


def _finite(obj: Any) -> Any:
    """``obj`` with NaN / inf floats as None (strict JSON) and numpy scalars as Python ones."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _check_flags() -> None:
    if FLAGS.events < 1:
        raise ValueError(f"--events must be >= 1, got {FLAGS.events}")
    if FLAGS.tune_events < 0:
        raise ValueError(f"--tune_events must be >= 0, got {FLAGS.tune_events}")
    if FLAGS.data is not None:
        if FLAGS["fraction"].present or FLAGS["seed"].present:
            raise ValueError("--fraction / --seed set how events are simulated: not with --data")
    elif not 0.0 < FLAGS.fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {FLAGS.fraction}")
    if FLAGS.json_out is not None and Path(FLAGS.json_out).is_dir():
        raise ValueError(f"--json_out is a folder, expected a file: {FLAGS.json_out}")


def _events() -> tuple[Any, int, dict[str, Any]]:
    """``(events, count, description)`` from ``--data`` or simulated."""
    if FLAGS.data is not None:
        from cgnn_jax.io import iter_events, list_event_ids

        ids = list_event_ids(FLAGS.data)
        if not ids:
            raise ValueError(f"--data={FLAGS.data}: holds no events")
        if FLAGS["events"].present:
            ids = ids[: FLAGS.events]
        events = iter_events(FLAGS.data, parts=("hits", "cells", "truth"), event_ids=ids)
        return events, len(ids), {"data": str(FLAGS.data), "event_ids": ids}
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    n, frac, seed = FLAGS.events, FLAGS.fraction, FLAGS.seed
    events = (
        simulate_event(event_seed(seed, i), 200.0, track_fraction=frac, event_id=1 + i)
        for i in range(n)
    )
    return events, n, {"simulated": {"events": n, "fraction": frac, "seed": seed, "mu": 200.0}}


def _tune_events() -> list[Any]:
    """The validation events choosing DBSCAN's eps: seed 98, the test events' density."""
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    frac = 1.0 if FLAGS.data is not None else FLAGS.fraction
    return [
        simulate_event(event_seed(TUNE_SEED, i), 200.0, track_fraction=frac, event_id=1 + i)
        for i in range(FLAGS.tune_events)
    ]


def run() -> int:
    _check_flags()
    events, total, source = _events()  # a bad --data fails here, before the model loads

    from cgnn_jax.analysis.diagnose import diagnose, format_report, tune_dbscan_eps
    from cgnn_jax.inference import Pipeline  # jax and flax: after the cheap checks
    from cgnn_jax.io import atomic_write

    pipe = Pipeline.restore(FLAGS.checkpoint)
    tuning = tune_dbscan_eps(pipe, _tune_events()) if FLAGS.tune_events > 0 else None
    if tuning is not None:
        grid = ", ".join(
            f"{e:g}: {v:.3f}" for e, v in zip(tuning["grid"], tuning["scores"], strict=True)
        )
        print(f"DBSCAN eps in the cluster space: {tuning['eps']:g} ({grid}; seed {TUNE_SEED})")
    report = diagnose(
        pipe,
        events,
        total=total,
        dbscan_eps=None if tuning is None else tuning["eps"],
        hdbscan_max_hits=FLAGS.hdbscan_max_hits,
    )
    print(format_report(report["events"], report["mean"]))
    if FLAGS.json_out:
        path = os.path.abspath(FLAGS.json_out)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        obj = {"checkpoint": FLAGS.checkpoint or "pretrained", **source, **report}
        obj["dbscan_tuning"] = None if tuning is None else {**tuning, "seed": TUNE_SEED}
        with atomic_write(path, "w") as f:
            json.dump(_finite(obj), f, indent=1, allow_nan=False)
            f.write("\n")
        print(f"wrote {FLAGS.json_out}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return run()


if __name__ == "__main__":
    _cli.run_report(main)  # user errors: one line, exit 1 (launch/_cli.py)
