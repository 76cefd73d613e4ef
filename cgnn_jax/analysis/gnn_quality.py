"""Stage-2 quality: the GNN space against the stage-1 embedding space, per event.

For each space (``"stage1"``: the embedding, ``"gnn"``: the GNN output):

* ``hinge_loss``: the hinge embedding loss on a balanced sample of evaluation edges (the stage-1
  embedding graph ∪ random same-particle pairs ∪ random pairs, as in training), margin ``config.gnn.margin`` for
  the GNN and ``config.embedding.margin`` for stage 1;
* ``auc``: ROC AUC of "same particle" against ``-distance`` on those evaluation edges;
* ``purity`` / ``recall`` / ``edges_per_hit`` of a ``knn_radius`` graph in the space, with the same
  ``k`` (``config.graph.k``) in both spaces and radius ``config.graph.radius`` (stage 1) or
  ``config.gnn.radius`` (GNN).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from cgnn_jax.graph.batch import balanced_sample, eval_edge_pool
from cgnn_jax.graph.neighbors import neighbor_graph
from cgnn_jax.metrics.edges import edge_purity_recall


def _hinge(d2: np.ndarray, y: np.ndarray, margin: float) -> float:
    pos = d2[y].mean() if y.any() else 0.0
    neg = np.maximum(margin - d2[~y], 0.0).mean() if (~y).any() else 0.0
    return float(pos + neg)


def gnn_quality_event(stage2, ev, seed: int = 0) -> list[dict]:
    """Two rows (``space`` = ``"stage1"``, ``"gnn"``) of quality figures for one event.

    Args:
      stage2: a :class:`cgnn_jax.train.stage2.Stage2` with its stage 1 bundled.
      ev: a :class:`cgnn_jax.train.data.PreparedEvent` with truth.
    """
    c = stage2.config
    s1 = stage2.stage1
    rng = np.random.default_rng([seed, ev.event_id])
    t = time.perf_counter()
    e1 = s1.embed(ev)
    es, er = s1.embedding_graph(ev)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    e2 = stage2.embed(ev)
    t2 = time.perf_counter() - t + t1
    pool = eval_edge_pool(
        es,
        er,
        ev.pid,
        int(c.gnn.get("true_pairs_per_hit", 1.0) * ev.n),
        rng,
        int(c.gnn.get("random_pairs_per_hit", 0.0) * ev.n),
    )
    s, r, y = balanced_sample(*pool, int(c.gnn.eval_edges_per_event), rng)
    g = s1.config.graph
    rows = []
    for space, emb, margin, radius, sec in (
        ("stage1", e1, c.embedding.margin, g.radius, t1),
        ("gnn", e2, c.gnn.margin, c.gnn.get("radius", g.radius), t2),
    ):
        d2 = np.sum((emb[s] - emb[r]) ** 2, axis=1)
        auc = roc_auc_score(y, -d2) if 0 < y.sum() < len(y) else float("nan")
        gs, gr = neighbor_graph(emb, "knn_radius", k=g.k, radius=radius)
        q = edge_purity_recall(gs, gr, ev.pid)
        rows.append(
            {
                "event_id": ev.event_id,
                "space": space,
                "hinge_loss": _hinge(d2, y, margin),
                "auc": float(auc),
                "edges_per_hit": len(gs) / ev.n,
                "purity": q["purity"],
                "recall": q["recall"],
                "seconds": sec,
            }
        )
    return rows


class PipelineGNN:
    """A pipeline seen as a stage 2 for :func:`gnn_quality_event`: its stage 1 and its GNN on its
    own input graph and (end-to-end tuned) input embedding, as :meth:`Pipeline.reconstruct` runs it."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.config = pipe.config
        self.stage1 = pipe.stage1

    def embed(self, ev) -> np.ndarray:
        stage2 = self.pipe.for_hits(ev.n).stage2  # its dense variant on a dense event
        g = stage2.graph(ev)
        return stage2.outputs(ev, g["senders"], g["receivers"])[0]


def restore_stage2(checkpoint: str | Path | None):
    """A stage-2 workdir or checkpoint, or any pipeline checkpoint (``None``: the shipped model)."""
    from cgnn_jax.inference import CheckpointError, Pipeline, Stage2

    if checkpoint is None:
        return PipelineGNN(Pipeline.restore())
    try:
        return Stage2.restore(checkpoint)
    except CheckpointError as as_stage2:
        try:
            return PipelineGNN(Pipeline.restore(checkpoint))
        except CheckpointError:
            raise as_stage2 from None


def gnn_quality_table(
    checkpoint: str | Path | None, data: str | None = None, n_events: int = 2, seed: int = 99
) -> pd.DataFrame:
    """One row per (event, space) for a stage-2 or pipeline checkpoint (``None``: the shipped
    model) on ``data`` or simulated μ = 200 events."""
    from cgnn_jax.inference import evaluation_events, prepare_event

    model = restore_stage2(checkpoint)
    if model.stage1 is None:
        raise ValueError(f"{checkpoint}: stage-2 checkpoint without its stage 1")
    events, total = evaluation_events(data, n_events, seed)
    rows = []
    for raw in tqdm(events, total=total, desc="gnn quality", unit="event"):
        rows += gnn_quality_event(model, prepare_event(raw), seed)
    return pd.DataFrame(rows)
