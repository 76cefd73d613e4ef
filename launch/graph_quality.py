r"""Stage-1 graph quality in the form of the thesis's Table 3.1.

    python launch/graph_quality.py [--checkpoint=PATH] [--data=DIR | --events=2 --seed=99] \
        [--json_out=PATH]

For each event: the set of all pairs, the embedding graph (the module map's candidates for a
module-map stage 1) and the refined (filtered) graph, with edges per event, edges per hit, purity,
recall (over all ordered pairs of distinct hits of the same particle, and over consecutive hits)
and the oracle-completed connected-components ceiling, each graph taken as undirected. Without ``--data``, full μ = 200 events are simulated with ``--seed``.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
import _cli
from absl import flags

from cgnn_jax.analysis.graph_quality import graph_quality_table

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "checkpoint", None, "Stage-1 workdir or any pipeline checkpoint (default: the shipped model)."
)
flags.DEFINE_string("data", None, "TrackML dataset (directory or .zip); default: simulate.")
flags.DEFINE_integer("events", 2, "Simulated events when --data is not given.")
flags.DEFINE_integer("seed", 99, "Simulation seed when --data is not given.")
flags.DEFINE_string("json_out", None, "Write the table as JSON.")
flags.DEFINE_integer(
    "graph_k", None, "Override the checkpoint's config.graph.k (neighbours per hit)."
)


def main(argv: list[str]) -> None:
    del argv
    df = graph_quality_table(
        FLAGS.checkpoint, FLAGS.data, FLAGS.events, FLAGS.seed, graph_k=FLAGS.graph_k
    )
    cols = [
        "edges",
        "edges_per_hit",
        "purity",
        "recall",
        "recall_consecutive",
        "ceiling",
        "seconds",
    ]
    _cli.print_means(df, "graph", cols, FLAGS.json_out)


if __name__ == "__main__":
    _cli.run_report(main)
