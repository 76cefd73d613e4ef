r"""Stage-2 quality: the GNN space against the stage-1 embedding space.

    python launch/gnn_quality.py [--checkpoint=PATH] [--data=DIR | --events=2 --seed=99] \
        [--json_out=PATH]

``PATH``: a stage-2 workdir (or its ``stage2`` / ``checkpoints`` folder; the stage 1 is bundled in
the checkpoint) or any pipeline checkpoint (default: the shipped model, its GNN run on its own
input graph and end-to-end tuned input embedding). Per space: the hinge loss and the ROC AUC (same particle vs other, from the distance)
on a balanced sample of evaluation edges, and the purity / recall of a ``knn_radius`` graph with the
same ``k`` in both spaces. Without ``--data``, full μ = 200 events are simulated with ``--seed``.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
import _cli
from absl import flags

from cgnn_jax.analysis.gnn_quality import gnn_quality_table

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "checkpoint", None, "Stage-2 workdir or any pipeline checkpoint (default: the shipped model)."
)
flags.DEFINE_string("data", None, "TrackML dataset (directory or .zip); default: simulate.")
flags.DEFINE_integer("events", 2, "Simulated events when --data is not given.")
flags.DEFINE_integer("seed", 99, "Simulation seed when --data is not given.")
flags.DEFINE_string("json_out", None, "Write the table as JSON.")


def main(argv: list[str]) -> None:
    del argv
    df = gnn_quality_table(FLAGS.checkpoint, FLAGS.data, FLAGS.events, FLAGS.seed)
    cols = ["hinge_loss", "auc", "edges_per_hit", "purity", "recall", "seconds"]
    _cli.print_means(df, "space", cols, FLAGS.json_out)


if __name__ == "__main__":
    _cli.run_report(main)
