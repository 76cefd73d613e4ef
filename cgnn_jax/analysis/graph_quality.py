"""Graph quality (thesis Table 3.1): edges, edges per hit, purity, recall and the
oracle-completed connected-components ceiling of each graph, taken as undirected.

``recall`` is over all ordered pairs of distinct hits of the same particle (the project's
definition, :func:`cgnn_jax.metrics.edge_purity_recall`); ``recall_consecutive`` is over pairs of
hits adjacent along the track only (the "truth graph" efficiency most tracking papers quote).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cgnn_jax.graph.neighbors import neighbor_graph
from cgnn_jax.metrics.ceilings import oracle_components_ceiling
from cgnn_jax.metrics.edges import consecutive_recall, edge_purity_recall


def graph_figures(
    senders: np.ndarray,
    receivers: np.ndarray,
    pid: np.ndarray,
    weight: np.ndarray,
    pos: np.ndarray,
) -> dict[str, float]:
    """Edges per hit, purity, recall (all same-particle pairs and consecutive hits) and the
    oracle-completed connected-components ceiling of one graph ``senders/receivers [E]``, taken
    as undirected: its distinct hit pairs, each in both directions."""
    n = len(pid)
    # as an undirected graph, each distinct pair in both directions (a directed candidate graph,
    # e.g. the module map's inner -> outer pairs, counts as its undirected pairs)
    s, r = np.asarray(senders, np.int64), np.asarray(receivers, np.int64)
    off = s != r
    key = np.unique(np.minimum(s, r)[off] * n + np.maximum(s, r)[off])
    lo, hi = key // max(n, 1), key % max(n, 1)
    senders, receivers = np.concatenate([lo, hi]), np.concatenate([hi, lo])
    q = edge_purity_recall(senders, receivers, pid)
    return {
        "edges_per_hit": len(senders) / n if n else float("nan"),
        "purity": float(q["purity"]),
        "recall": float(q["recall"]),
        "recall_consecutive": consecutive_recall(senders, receivers, pos, pid),
        "ceiling": oracle_components_ceiling(senders, receivers, pid, weight),
    }


def _graph_row(ev, name: str, s: np.ndarray, r: np.ndarray, seconds: float, weight) -> dict:
    q = graph_figures(s, r, ev.pid, weight, ev.hf.pos)
    return {
        "event_id": ev.event_id,
        "graph": name,
        "edges": q["edges_per_hit"] * ev.n,
        **q,
        "seconds": seconds,
    }


def knn_ceilings(
    embedding: np.ndarray,
    pid: np.ndarray,
    weight: np.ndarray,
    ks: list[int],
    mode: str = "knn_radius",
    radius: float = 1.0,
    approx: float = 0.0,
) -> list[dict]:
    """For each ``k``: edges per hit and the oracle-completed connected-components ceiling of the
    neighbour graph of ``embedding [n, d]`` (``pid [n]``, TrackML ``weight [n]``)."""
    out = []
    for k in ks:
        s, r = neighbor_graph(embedding, mode, k=k, radius=radius, approx=approx)
        out.append(
            {
                "k": int(k),
                "edges_per_hit": len(s) / max(len(pid), 1),
                "ceiling": oracle_components_ceiling(s, r, pid, weight),
            }
        )
    return out


def _weights(event) -> np.ndarray:
    """The TrackML weight of every hit (in hit row order; zeros without a truth table)."""
    if event.truth is None:
        return np.zeros(event.n_hits)
    tr = event.truth.set_index("hit_id").reindex(event.hits["hit_id"].to_numpy())
    return tr["weight"].fillna(0.0).to_numpy(np.float64)


def graph_quality_table(
    checkpoint: str | Path | None,
    data: str | None = None,
    n_events: int = 2,
    seed: int = 99,
    graph_k: int | None = None,
) -> pd.DataFrame:
    """One row per (event, graph) for ``graph`` in all pairs / embedding (``candidates`` with a
    module map) / refined.

    ``checkpoint``: see :func:`restore_stage1` (``None``: the shipped model). ``graph_k``
    overrides the checkpoint's neighbours per hit (``config.graph.k``).
    """
    from cgnn_jax.inference import evaluation_events, prepare_event, restore_stage1

    model = restore_stage1(checkpoint)
    if graph_k is not None:
        model.config.graph.k = int(graph_k)
    events, total = evaluation_events(data, n_events, seed)
    rows = []
    for raw in tqdm(events, total=total, desc="graph quality", unit="event"):
        ev = prepare_event(raw)
        pid = ev.pid
        _, cnt = np.unique(pid[pid != 0], return_counts=True)
        n = ev.n
        w = _weights(raw)
        rows.append(
            {
                "event_id": ev.event_id,
                "graph": "all pairs",
                "edges": float(n) * (n - 1),
                "edges_per_hit": n - 1.0,
                "purity": float((cnt * (cnt - 1)).sum()) / (n * (n - 1.0)),
                "recall": 1.0,
                "recall_consecutive": 1.0,
                "ceiling": float(w[pid != 0].sum()),  # every particle one component
                "seconds": 0.0,
            }
        )
        t = time.perf_counter()
        s, r = model.embedding_graph(ev)
        dt = time.perf_counter() - t
        name = "candidates" if model.builder == "module_map" else "embedding"
        rows.append(_graph_row(ev, name, s, r, dt, w))
        t = time.perf_counter()
        s2, r2, _ = model.refined_graph(ev, s, r)
        rows.append(_graph_row(ev, "refined", s2, r2, dt + time.perf_counter() - t, w))
    return pd.DataFrame(rows)
