r"""Fast proxy for stage 1's metric learning: train the embedding alone, print its kNN ceilings.

    python launch/embedding_proxy.py --workdir=workdirs/proxy_emb \
        [--config=configs/experiments/stage1.py] \
        [--config.data.train_events=2 --config.embedding.steps=1000 ...] \
        [--events=1 --seed=555 --k=16,32,64] [--json_out=PATH]

Trains only the embedding of ``config`` (plain, then hard-negative rounds; resumable from
``<workdir>/train``), no edge filter, then builds its kNN graph (``config.graph``'s mode, radius
and approximation) on ``--events`` unseen simulated full μ = 200 events for each ``--k`` and
prints edges per hit and the oracle-completed connected-components ceiling
(:func:`cgnn_jax.metrics.ceilings.oracle_components_ceiling`): the score no later stage can
beat on that graph. A few minutes per run at 2 events x 2000 steps on 2 cores; the runs of
``docs/experiments.md``'s stage-1 rows.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
import _cli
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/experiments/stage1.py", "Stage-1 config.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Where the embedding's checkpoints go.", required=True)
flags.DEFINE_integer("events", 1, "Unseen simulated full events to measure on.", lower_bound=1)
flags.DEFINE_integer("seed", 555, "Simulation seed of those events.")
flags.DEFINE_list("k", ["16", "32", "64"], "Neighbours per hit of the graphs measured.")
flags.DEFINE_string("json_out", None, "Write the table as JSON.")


def main(argv: list[str]) -> None:
    del argv
    from pathlib import Path

    import jax
    import pandas as pd

    from cgnn_jax.analysis.diagnose import event_truth
    from cgnn_jax.analysis.graph_quality import knn_ceilings
    from cgnn_jax.inference.events import evaluation_events, prepare_event
    from cgnn_jax.inference.stage1 import embed
    from cgnn_jax.models import create_model
    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.loop import make_mesh
    from cgnn_jax.train.stage1 import train_embedding

    ks = [int(k) for k in FLAGS.k]
    if any(k < 1 for k in ks):
        raise ValueError(f"--k must be positive integers, got {FLAGS.k}")
    c = FLAGS.config
    events = TrainingEvents(c)
    params = train_embedding(
        c, events.train, Path(FLAGS.workdir) / "train", jax.random.PRNGKey(c.seed), make_mesh()
    )
    model = create_model(c, "embedding")
    raw, _ = evaluation_events(None, FLAGS.events, FLAGS.seed)
    rows = []
    for event in raw:
        ev = prepare_event(event)
        _, weight, _ = event_truth(event)
        e = embed(model, params, ev.hf.x)
        g = c.graph
        for row in knn_ceilings(e, ev.pid, weight, ks, g.mode, g.radius, g.approx):
            rows.append({"event_id": ev.event_id, **row})
    _cli.print_means(pd.DataFrame(rows), "k", ["edges_per_hit", "ceiling"], FLAGS.json_out)


if __name__ == "__main__":
    _cli.run(main, inputs=("config",), folders=("workdir",), files=("json_out",))
