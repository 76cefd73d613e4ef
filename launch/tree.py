"""Draw the learned cluster tree of one event in an η–φ region, level by level, as a PNG.

Usage::

    python launch/tree.py --data=DIR --event=ID --region=eta_lo,eta_hi,phi_lo,phi_hi \
        [--tree_dir=DIR | --checkpoint=PATH] [--levels=1,2,4,8,20] --out=PNG

With ``--tree_dir`` the tree is read from ``DIR/event<ID, 9 digits>-tree.npz`` (written by
:func:`cgnn_jax.cluster.tree.write_tree`); without it the model computes it:
``Pipeline.restore(--checkpoint or the pretrained default).reconstruct(event, return_tree=True)``.
The PNG (see :func:`cgnn_jax.viz.tree_view.plot_tree_region`) is written atomically. Exits
non-zero with a clear message on an unknown event, a missing or damaged tree file, or a tree of
another event.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import _bootstrap  # noqa: F401  (see launch/_bootstrap.py)
import _cli
from absl import app, flags, logging

from cgnn_jax.io import Event, event_prefix, read_event

if TYPE_CHECKING:
    from cgnn_jax.cluster.tree import ClusterTree

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Dataset: directory, .zip or event prefix.")
flags.DEFINE_integer("event", None, "Event id (may be omitted if the dataset holds one event).")
flags.DEFINE_string("region", None, "Region 'eta_lo,eta_hi,phi_lo,phi_hi' (φ in radians).")
flags.DEFINE_string("tree_dir", None, "Folder of event<ID>-tree.npz files (else: run the model).")
flags.DEFINE_string("checkpoint", None, "Pipeline checkpoint (default: the pretrained model).")
flags.DEFINE_list("levels", None, "Levels to draw, e.g. 1,2,4,8,20 (default 1,2,4,8,L).")
flags.DEFINE_integer("min_cluster_hits", 3, "Clusters with fewer hits are drawn as grey dots.")
flags.DEFINE_string("out", None, "Output PNG.")
flags.mark_flags_as_required(["data", "region", "out"])


def parse_region(text: str) -> tuple[float, float, float, float]:
    """``"eta_lo,eta_hi,phi_lo,phi_hi"`` -> four floats (``ValueError`` otherwise)."""
    from cgnn_jax.viz import parse_range

    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"--region must be eta_lo,eta_hi,phi_lo,phi_hi (4 numbers), got {text!r}")
    eta = parse_range(",".join(parts[:2]), "eta")
    phi = parse_range(",".join(parts[2:]), "phi")
    assert eta is not None and phi is not None
    return (*eta, *phi)


def tree_path(tree_dir: str | Path, event_id: int) -> Path:
    """``tree_dir/event<ID 9 digits>-tree.npz``."""
    return Path(tree_dir) / f"{event_prefix(event_id)}-tree.npz"


def model_tree(event: Event, checkpoint: str | None) -> ClusterTree:
    """The event's cluster tree computed by the model of ``checkpoint`` (``None``: the
    pretrained default); a checkpoint that cannot be restored raises ``ValueError``."""
    from cgnn_jax.inference import Pipeline  # imports orbax: only when the model is needed
    from cgnn_jax.inference.checkpoint import CheckpointError

    try:
        pipe = Pipeline.restore(checkpoint or None)
    except CheckpointError as e:
        raise ValueError(f"cannot restore the model ({e}); or pass --tree_dir") from e
    _, tree = pipe.reconstruct(event, return_tree=True)
    return tree


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    try:
        region = parse_region(FLAGS.region)
        levels = [int(v) for v in FLAGS.levels] if FLAGS.levels else None
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    if FLAGS.tree_dir and FLAGS.checkpoint:
        raise app.UsageError(
            "give --tree_dir (read the tree) or --checkpoint (compute it), not both"
        )

    from cgnn_jax.viz.tree_view import plot_tree_region

    try:
        if FLAGS.tree_dir:
            event = read_event(FLAGS.data, FLAGS.event, parts=("hits",))
            from cgnn_jax.cluster.tree import read_tree  # imports jax: after the cheap checks

            tree = read_tree(tree_path(FLAGS.tree_dir, event.event_id))
            if tree.event_id >= 0 and tree.event_id != event.event_id:
                raise ValueError(
                    f"{tree_path(FLAGS.tree_dir, event.event_id)} holds the tree of event "
                    f"{tree.event_id}, not of event {event.event_id}"
                )
        else:
            event = read_event(FLAGS.data, FLAGS.event, parts=("hits", "cells"))
            tree = model_tree(event, FLAGS.checkpoint)
        plot_tree_region(
            tree,
            event.hits,
            region,
            levels,
            FLAGS.out,
            min_cluster_hits=FLAGS.min_cluster_hits,
        )
    except (ValueError, FileNotFoundError) as e:  # TreeFormatError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.out}")
    return 0


if __name__ == "__main__":
    _cli.run(
        main,
        fast_exit=True,
        inputs=("data", "checkpoint", "tree_dir"),
        files=("out",),
        data=("data",),
    )
