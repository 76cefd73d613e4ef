"""Score a TrackML submission against a dataset with truth.

Usage::

    python launch/eval.py --data=DIR --submission=FILE [--json_out=PATH]

Prints one line per event (event_id, hits, tracks, score, efficiency over all
reconstructable particles, fake rate) and the mean over events; optionally writes the same
as JSON (atomically).  Exits non-zero with a clear message if the submission lacks an event
of the data, holds one that is not in it, or is otherwise invalid.
"""

from __future__ import annotations

import json
import os
import sys

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
import pandas as pd
from absl import app, flags

from cgnn_jax.io import atomic_write
from cgnn_jax.metrics.evaluate import evaluate_submission

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Dataset with truth: directory or .zip of event files.")
flags.DEFINE_string("submission", None, "Submission CSV (event_id,hit_id,track_id).")
flags.DEFINE_string("json_out", None, "Optional path of a JSON report.")
flags.DEFINE_integer("min_particle_hits", 4, "Reconstructable particle: at least this many hits.")
flags.DEFINE_integer("min_track_hits", 3, "Tracks entering the fake rate: at least this many hits.")
flags.mark_flags_as_required(["data", "submission"])


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


def write_json_atomic(obj: object, path: str) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`cgnn_jax.io.atomic_write`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True)
        f.write("\n")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from cgnn_jax.io.read import read_submission

    try:
        submission = read_submission(FLAGS.submission)
        results = evaluate_submission(
            FLAGS.data,
            submission,
            min_particle_hits=FLAGS.min_particle_hits,
            min_track_hits=FLAGS.min_track_hits,
        )
    except (ValueError, FileNotFoundError) as e:  # TrackMLFormatError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1

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


if __name__ == "__main__":
    app.run(main)
