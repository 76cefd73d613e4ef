"""Score the clustering GNN (and the other clusterers) on events, or score a submission.

Usage::

    # the model and every comparison method on simulated (or given) events: one table
    python launch/eval.py [--data=DIR] [--checkpoint=PATH] [--events=2] [--fraction=0.1] \
        [--real] [--vertex_sigma_z=50] [--methods=cgnn,gnn+dbscan,...] [--plots_dir=DIR] \
        [--json_out=PATH]
    # an existing submission
    python launch/eval.py --data=DIR --submission=FILE [--json_out=PATH]

Without ``--submission``: reconstructs every event with the pipeline (``--checkpoint``, default
the pretrained model) and the comparison methods of :mod:`cgnn_jax.analysis.evaluation` on the same GNN
space, prints the thesis's Table 3.2 (full events, and events with ``--fraction`` of the tracks),
and writes efficiency / fake-rate plots vs p_T and η to ``--plots_dir``. Without ``--data``,
``--events`` full μ = 200 events are simulated (seed 99; never seen in training).
``--vertex_sigma_z=50`` adds the same simulated events with a 50 mm luminous region.
``--real`` adds the real TrackML event shipped with the package (:mod:`cgnn_jax.data`) and, beside
it, ``--events`` simulated events of the same kind (same density, a 50 mm luminous region, the
half at φ >= 0: :func:`cgnn_jax.analysis.sim_vs_real.like_real_sample`).

With ``--submission``:
Prints one line per event (event_id, hits, tracks, score, efficiency over all
reconstructable particles, fake rate) and the mean over events; optionally writes the same
as JSON (atomically).  Exits non-zero with a clear message if the submission lacks an event
of the data, holds one that is not in it, or is otherwise invalid.
"""

from __future__ import annotations

import json
import os

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
import _cli
import pandas as pd
from absl import app, flags, logging

from cgnn_jax.io import atomic_write
from cgnn_jax.metrics.evaluate import evaluate_submission

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Dataset with truth: directory or .zip (default: simulate).")
flags.DEFINE_string("submission", None, "Submission CSV (event_id,hit_id,track_id) to score.")
flags.DEFINE_string("checkpoint", None, "Pipeline checkpoint (default: the pretrained model).")
flags.DEFINE_integer("events", 2, "Simulated events when --data is not given.")
flags.DEFINE_float(
    "fraction",
    0.1,
    "Also evaluate on events with this fraction of the tracks "
    "(simulated with the same seeds; 0 to skip; needs no --data).",
)
flags.DEFINE_bool(
    "real",
    False,
    "Also evaluate on the shipped real event and simulated events of the same kind.",
)
flags.DEFINE_list(
    "vertex_sigma_z",
    [],
    "Also evaluate simulated events (full, and at --fraction) whose collisions spread along the "
    "beam by these luminous regions (RMS, mm; the simulator's own: ~6 mm), same seeds.",
)
flags.DEFINE_list(
    "methods", None, "Methods to compare (default: all of cgnn_jax.analysis.evaluation)."
)
flags.DEFINE_string("plots_dir", None, "Where the efficiency / fake-rate PNGs go.")
flags.DEFINE_string("json_out", None, "Optional path of a JSON report.")
flags.DEFINE_integer("min_particle_hits", 4, "Reconstructable particle: at least this many hits.")
flags.DEFINE_integer("min_track_hits", 3, "Tracks entering the fake rate: at least this many hits.")


def format_table(results: pd.DataFrame) -> str:
    """The per-event table plus a mean line, as text."""
    header = f"{'event_id':>12} {'hits':>8} {'tracks':>8} {'score':>8} {'effic.':>8} {'fake':>8}"
    lines = [header, "-" * len(header)]
    for r in results.itertuples(index=False):
        lines.append(
            f"{r.event_id:>12d} {r.n_hits:>8d} {r.n_tracks:>8d} {r.score:>8.4f} "
            f"{r.efficiency:>8.4f} {r.fake_rate:>8.4f}"
        )
    lines.append("-" * len(header))
    m = results[["n_hits", "n_tracks", "score", "efficiency", "fake_rate"]].mean()
    lines.append(
        f"{'mean':>12} {m.n_hits:>8.0f} {m.n_tracks:>8.0f} {m.score:>8.4f} "
        f"{m.efficiency:>8.4f} {m.fake_rate:>8.4f}"
    )
    return "\n".join(lines)


def _json_default(o: object) -> object:
    return o.item() if hasattr(o, "item") else str(o)


def write_json_atomic(obj: object, path: str) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`cgnn_jax.io.atomic_write`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True, default=_json_default)
        f.write("\n")


def evaluate_model() -> int:
    """The comparison table of the pipeline and the other methods (no ``--submission``)."""
    from cgnn_jax.analysis.evaluation import (
        METHODS,
        compare_methods,
        markdown_table,
        summary_table,
        tune_space_cuts,
    )
    from cgnn_jax.analysis.sim_vs_real import like_real_sample
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    sigmas = []
    for v in FLAGS.vertex_sigma_z:
        try:
            sigmas.append(float(v))
        except ValueError:
            raise ValueError(f"--vertex_sigma_z={v!r}: need a length in mm") from None
        if not 0 < sigmas[-1] < 1e4:
            raise ValueError(f"--vertex_sigma_z={v}: need a luminous region 0 < sigma_z < 10000 mm")
    if sigmas and FLAGS.data:
        raise ValueError("--vertex_sigma_z simulates events: not with --data")
    pipe = Pipeline.restore(FLAGS.checkpoint)
    methods = FLAGS.methods or list(METHODS)
    settings = []
    if FLAGS.data:
        from cgnn_jax.io import iter_events

        events = list(iter_events(FLAGS.data))
        settings.append(("full events", events, 1.0, None))
    else:
        for sigma in [None, *sigmas]:
            where = "" if sigma is None else f", {sigma:g} mm luminous region"
            fracs = [1.0] + ([FLAGS.fraction] if FLAGS.fraction > 0 else [])
            for frac in fracs:
                name = ("full events" if frac == 1.0 else f"{frac:.0%} of tracks") + where
                evs = [
                    simulate_event(
                        event_seed(99, i),
                        200.0,
                        track_fraction=frac,
                        event_id=1 + i,
                        vertex_sigma_z=sigma,
                    )
                    for i in range(FLAGS.events)
                ]
                settings.append((name, evs, frac, sigma))
    if FLAGS.real:
        from cgnn_jax.data import real_sample

        settings.append(("real event (2.5 % of tracks)", [real_sample()], None, None))
        like = [like_real_sample(event_seed(99, i), event_id=1 + i) for i in range(FLAGS.events)]
        settings.append(("simulated like it", like, None, None))
    report, tables = {"checkpoint": FLAGS.checkpoint or "pretrained", "settings": {}}, []
    for name, events, frac, sigma in settings:
        cuts = None
        if {"gnn+dbscan", "gnn+components"} & set(methods):
            if frac is None:  # the real event and those like it
                tune = like_real_sample(event_seed(98, 0))
            else:
                tune = simulate_event(
                    event_seed(98, 0), 200.0, track_fraction=frac, vertex_sigma_z=sigma
                )
            cuts = tune_space_cuts(pipe, tune)
            print(f"{name}: cuts tuned on a separate simulated event: {cuts}")
        per_event, plots = compare_methods(events, pipe, methods, cuts)
        summary = summary_table(per_event)
        tables.append(markdown_table(summary, name))
        report["settings"][name] = {
            "cuts": cuts,
            "summary": summary.to_dict(orient="records"),
            "events": per_event.to_dict(orient="records"),
        }
        if FLAGS.plots_dir:
            from cgnn_jax.viz import plot_efficiency

            slug = name.replace(" ", "_").replace("%", "pct")
            path = os.path.join(FLAGS.plots_dir, f"efficiency_{slug}.png")
            plot_efficiency(plots, path, title=f"{name}: efficiency and fake rate")
            print(f"wrote {path}")
    print("\n".join([tables[0]] + [t.split("\n", 2)[2] for t in tables[1:]]))
    if FLAGS.json_out:
        write_json_atomic(report, FLAGS.json_out)
        print(f"wrote {FLAGS.json_out}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    if FLAGS.submission is None:
        return evaluate_model()
    if FLAGS.data is None:
        raise app.UsageError("--submission needs --data (the events with truth)")
    from cgnn_jax.io import read_submission

    # bad files raise TrackMLFormatError (a ValueError) or OSError: one line (launch/_cli.py)
    submission = read_submission(FLAGS.submission)
    results = evaluate_submission(
        FLAGS.data,
        submission,
        min_particle_hits=FLAGS.min_particle_hits,
        min_track_hits=FLAGS.min_track_hits,
    )

    print(format_table(results))
    if FLAGS.json_out:
        mean = results[["score", "efficiency", "fake_rate"]].mean()
        report = {
            "data": FLAGS.data,
            "submission": FLAGS.submission,
            "events": [
                {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in results.to_dict(orient="records")
            ],
            "mean": {k: float(v) for k, v in mean.items()},
        }
        write_json_atomic(report, FLAGS.json_out)
        print(f"wrote {FLAGS.json_out}")
    return 0


#: the flags naming inputs and outputs, checked before any work (launch/_cli.py)
PATHS = {
    "inputs": ("data", "submission", "checkpoint"),
    "files": ("json_out",),
    "folders": ("plots_dir",),
    "data": ("data",),
}

if __name__ == "__main__":
    _cli.run(main, fast_exit=True, **PATHS)
