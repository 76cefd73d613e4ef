r"""Stage-1 graph quality in the form of the thesis's Table 3.1.

    python launch/graph_quality.py [--checkpoint=PATH] [--data=DIR | --events=2 --seed=99] \
        [--json_out=PATH]

For each event: the set of all pairs, the embedding graph and the refined (filtered) graph, with
edges per event, edges per hit, purity and recall (recall over all ordered pairs of distinct hits of
the same particle). Without ``--data``, full μ = 200 events are simulated with ``--seed``.
"""

from __future__ import annotations

import json

import _bootstrap  # noqa: F401
import _cli
import pandas as pd
from absl import flags, logging

from cgnn_jax.graph.quality import graph_quality_table
from cgnn_jax.io import atomic_write

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
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    df = graph_quality_table(
        FLAGS.checkpoint, FLAGS.data, FLAGS.events, FLAGS.seed, graph_k=FLAGS.graph_k
    )
    mean = df.groupby("graph", sort=False)[
        ["edges", "edges_per_hit", "purity", "recall", "recall_consecutive", "seconds"]
    ].mean()
    with pd.option_context("display.float_format", "{:,.4g}".format):
        print(mean.to_string())
    if FLAGS.json_out:
        with atomic_write(FLAGS.json_out, "w") as f:
            json.dump(
                {
                    "per_event": df.to_dict(orient="records"),
                    "mean": mean.reset_index().to_dict(orient="records"),
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    _cli.run(main)
