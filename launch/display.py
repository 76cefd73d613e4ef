"""Draw one event (x–y and r–z) with its reconstructed or true tracks coloured, as a PNG.

Usage::

    python launch/display.py --data=DIR --event=ID [--submission=FILE | --checkpoint=PATH] \
        [--color_by=track|truth] [--eta=lo,hi] [--phi=lo,hi] --out=PNG

``--color_by=track`` colours the tracks of ``--submission``, or, without one, the tracks the
model reconstructs (``--checkpoint``: any pipeline checkpoint or training workdir; default the
shipped pretrained model). ``--color_by`` defaults to ``track`` with a submission or a checkpoint
and ``truth`` otherwise (truth needs the event's truth file). ``--eta``/``--phi`` cut a region (η of the hit position; φ in radians,
``lo > hi`` wraps at ±π): a full μ = 200 event is readable only in a region. The PNG is
written atomically. Exits non-zero with a clear message on an unknown event, a submission of
another event or one that misses hits of the event.
"""

from __future__ import annotations

import sys

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
import _cli
from absl import app, flags

from cgnn_jax.io import read_event, read_submission
from cgnn_jax.viz import parse_range, plot_event, submission_track_ids

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Dataset: directory, .zip or event prefix.")
flags.DEFINE_integer("event", None, "Event id (may be omitted if the dataset holds one event).")
flags.DEFINE_string("submission", None, "Submission CSV (event_id,hit_id,track_id), optional.")
flags.DEFINE_string(
    "checkpoint", None, "Reconstruct with this pipeline checkpoint (default: the shipped model)."
)
flags.DEFINE_enum(
    "color_by", None, ["track", "truth"], "Colour by reconstructed track or true particle."
)
flags.DEFINE_string("eta", None, "η range 'lo,hi' of the hits shown.")
flags.DEFINE_string("phi", None, "φ range 'lo,hi' in radians (lo > hi wraps at ±π).")
flags.DEFINE_integer("min_track_hits", 3, "Tracks with fewer hits are drawn as grey dots.")
flags.DEFINE_string("out", None, "Output PNG.")
flags.mark_flags_as_required(["data", "out"])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        eta = parse_range(FLAGS.eta, "eta")
        phi = parse_range(FLAGS.phi, "phi")
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    if FLAGS.submission and FLAGS.checkpoint:
        raise app.UsageError("--submission and --checkpoint exclude each other")
    color_by = FLAGS.color_by or ("track" if FLAGS.submission or FLAGS.checkpoint else "truth")

    try:
        model = color_by == "track" and not FLAGS.submission
        parts = ("hits", "truth") if color_by == "truth" else ("hits",)
        event = read_event(FLAGS.data, FLAGS.event, parts=parts + (("cells",) if model else ()))
        track_id = None
        if FLAGS.submission:
            sub = read_submission(FLAGS.submission)
            track_id = submission_track_ids(sub, event.hits, event.event_id)
        elif model:
            from cgnn_jax import Pipeline

            track_id = Pipeline.restore(FLAGS.checkpoint).reconstruct(event)
        plot_event(
            event.hits,
            track_id,
            FLAGS.out,
            truth=event.truth,
            color_by=color_by,
            eta_range=eta,
            phi_range=phi,
            min_track_hits=FLAGS.min_track_hits,
            event_id=event.event_id,
        )
    except (ValueError, FileNotFoundError) as e:  # TrackMLFormatError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.out}")
    return 0


if __name__ == "__main__":
    _cli.run(main, fast_exit=True, inputs=("data", "submission"), files=("out",), data=("data",))
