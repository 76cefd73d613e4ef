"""Graph quality (thesis Table 3.1): edges, edges per hit, purity and recall of each graph."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cgnn_jax.metrics.edges import edge_purity_recall


def graph_quality_table(
    checkpoint: str | Path, data: str | None = None, n_events: int = 2, seed: int = 99
) -> pd.DataFrame:
    """One row per (event, graph) for ``graph`` in all pairs / embedding / refined."""
    from cgnn_jax.io import iter_events, list_event_ids
    from cgnn_jax.train.data import prepare_event, simulated_events
    from cgnn_jax.train.stage1 import Stage1

    model = Stage1.restore(checkpoint)
    if data is None:
        events, total = iter(simulated_events(n_events, seed, first_event=1)), n_events
    else:
        events, total = (
            iter_events(data, parts=("hits", "cells", "truth")),
            len(list_event_ids(data)),
        )
    rows = []
    for raw in tqdm(events, total=total, desc="graph quality", unit="event"):
        ev = prepare_event(raw)
        pid = ev.pid
        _, cnt = np.unique(pid[pid != 0], return_counts=True)
        n = ev.n
        rows.append(
            {
                "event_id": ev.event_id,
                "graph": "all pairs",
                "edges": float(n) * (n - 1),
                "edges_per_hit": n - 1.0,
                "purity": float((cnt * (cnt - 1)).sum()) / (n * (n - 1.0)),
                "recall": 1.0,
                "seconds": 0.0,
            }
        )
        t = time.perf_counter()
        s, r = model.embedding_graph(ev)
        dt = time.perf_counter() - t
        q = edge_purity_recall(s, r, pid)
        rows.append(
            {
                "event_id": ev.event_id,
                "graph": "embedding",
                "edges": float(len(s)),
                "edges_per_hit": len(s) / n,
                "purity": q["purity"],
                "recall": q["recall"],
                "seconds": dt,
            }
        )
        t = time.perf_counter()
        s2, r2, _ = model.refined_graph(ev, s, r)
        dt2 = time.perf_counter() - t
        q = edge_purity_recall(s2, r2, pid)
        rows.append(
            {
                "event_id": ev.event_id,
                "graph": "refined",
                "edges": float(len(s2)),
                "edges_per_hit": len(s2) / n,
                "purity": q["purity"],
                "recall": q["recall"],
                "seconds": dt + dt2,
            }
        )
    return pd.DataFrame(rows)
