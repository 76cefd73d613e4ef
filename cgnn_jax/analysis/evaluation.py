"""Compare the clustering GNN with other clusterers on the same events (the thesis's Table 3.2).

:func:`compare_methods` runs, on every event, the learned pipeline once (stage-by-stage timings)
and then every other clusterer on the *same* GNN cluster space, plus the raw-hit baselines:

=====================  ======================================================================
method                 what it is
=====================  ======================================================================
``cgnn``               the clustering GNN: Split/Stop on the GNN space (stage 3), then the
                       model's track extension if it has one (:mod:`~cgnn_jax.cluster.extend`)
``cgnn+iterative``     the same, low-confidence clusters re-clustered (:mod:`~cgnn_jax.cluster.iterative`)
``gnn+dbscan``         DBSCAN in the GNN space (eps tuned on a separate event)
``gnn+hdbscan``        HDBSCAN in the GNN space (scikit-learn, ``min_cluster_size=3``)
``gnn+components``     connected components of the GNN input graph's edges shorter than a cut
``dbscan``             DBSCAN on hit coordinates (the TrackML starter baseline)
``helix_dbscan``       DBSCAN on helix-unrolled coordinates
=====================  ======================================================================

Scores are the exact TrackML score; times are wall seconds per event on this machine, with the
shared stages (features, graph, GNN) reported apart from each clusterer's own time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cgnn_jax.baselines import reconstruct_baseline
from cgnn_jax.baselines.space import dbscan_space, edge_components, hdbscan_space
from cgnn_jax.cluster.iterative import iterative_recluster
from cgnn_jax.inference import Pipeline
from cgnn_jax.inference.events import as_prepared
from cgnn_jax.io.event import Event
from cgnn_jax.metrics import score_event
from cgnn_jax.metrics.efficiency import track_efficiency

METHODS = (
    "cgnn",
    "cgnn+iterative",
    "gnn+dbscan",
    "gnn+hdbscan",
    "gnn+components",
    "dbscan",
    "helix_dbscan",
)
EPS_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.45)


def _sub(event: Event, track_id: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"hit_id": event.hits["hit_id"].to_numpy(), "track_id": track_id})


def tune_space_cuts(
    pipe: Pipeline, event: Event, grid: Sequence[float] = EPS_GRID
) -> dict[str, float]:
    """The DBSCAN eps and the edge cut in the GNN space that maximise the score on ``event``."""
    parts = pipe.stage_outputs(event, cluster=False)  # the GNN space and graph: no tree
    best: dict[str, float] = {}
    for name, fn in (
        ("gnn+dbscan", lambda c: dbscan_space(parts["gnn"], c)),
        (
            "gnn+components",
            lambda c: edge_components(parts["gnn"], parts["senders"], parts["receivers"], c),
        ),
    ):
        scores = [score_event(event.truth, _sub(event, fn(c) + 1)) for c in grid]
        best[name] = float(grid[int(np.argmax(scores))])
    return best


def compare_methods(
    events: Sequence[Event],
    pipe: Pipeline,
    methods: Sequence[str] = METHODS,
    cuts: dict[str, float] | None = None,
    log: Callable[[str], None] = lambda _: None,
    iterative_rounds: int = 2,
) -> tuple[pd.DataFrame, dict[str, list[tuple]]]:
    """Score every method on every event.

    Args:
      events: events with ``hits``, ``cells``, ``truth`` and ``particles``.
      pipe: the trained pipeline.
      methods: a subset of :data:`METHODS`.
      cuts: ``{"gnn+dbscan": eps, "gnn+components": cut}`` (default: 0.15 and 0.2).
    Returns:
      ``(per_event, for_plots)``: one row per (method, event) with ``score, efficiency,
      fake_rate, n_tracks, seconds`` (the method's own time) and ``shared_seconds`` (features,
      graph and GNN, for the methods that use the GNN space); and method -> list of
      ``(truth, particles, submission)`` for :func:`cgnn_jax.viz.plot_efficiency`.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {', '.join(METHODS)}")
    cuts = {"gnn+dbscan": 0.15, "gnn+components": 0.2, **(cuts or {})}
    rows, plots = [], {m: [] for m in methods}
    for event in tqdm(events, desc="events", unit="event"):
        t0 = time.perf_counter()
        ev = as_prepared(event)
        run = pipe.for_hits(ev.n)  # its dense variant on a dense event
        stage2, stage3 = run.stage2, run.stage3
        g = stage2.graph(ev)
        t1 = time.perf_counter()
        gnn, edge_score = stage2.outputs(ev, g["senders"], g["receivers"])
        t2 = time.perf_counter()
        shared = {"features+graph": t1 - t0, "gnn": t2 - t1}
        for m in methods:
            t = time.perf_counter()
            if m in ("cgnn", "cgnn+iterative"):
                st3 = stage3.outputs(
                    ev, gnn, edge_score, g["senders"], g["receivers"],
                    votes=m == "cgnn+iterative",  # only the re-clustering reads Stop's votes
                )  # fmt: skip
                tid = st3["track_id"]
                if m == "cgnn+iterative":
                    tid = iterative_recluster(
                        stage3, st3["h"], st3["clustering"], tid, rounds=iterative_rounds,
                        groups=st3["groups"],
                    )  # fmt: skip
                tid = stage3.extend(ev, tid)
            elif m == "gnn+dbscan":
                tid = dbscan_space(gnn, cuts[m]) + 1
            elif m == "gnn+hdbscan":
                tid = hdbscan_space(gnn, min_cluster_size=3) + 1
            elif m == "gnn+components":
                tid = edge_components(gnn, g["senders"], g["receivers"], cuts[m]) + 1
            else:
                tid = reconstruct_baseline(event.hits, m)
            dt = time.perf_counter() - t
            sub = _sub(event, tid)
            score = score_event(event.truth, sub)
            eff = track_efficiency(event.truth, event.particles, sub)
            rows.append(
                {
                    "method": m,
                    "event_id": int(event.event_id),
                    "n_hits": len(event.hits),
                    "score": score,
                    "efficiency": eff.efficiency,
                    "fake_rate": eff.fake_rate,
                    "n_tracks": len(np.unique(tid)),
                    "seconds": dt,
                    "shared_seconds": sum(shared.values())
                    if m.startswith(("cgnn", "gnn"))
                    else 0.0,
                }
            )
            plots[m].append((event.truth, event.particles, sub))
            log(f"event {event.event_id} {m}: score {score:.4f} ({dt:.1f} s)")
    return pd.DataFrame(rows), plots


def summary_table(per_event: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over events per method (``per_event`` from :func:`compare_methods`)."""
    g = per_event.groupby("method", sort=False)
    out = g[
        ["score", "efficiency", "fake_rate", "n_tracks", "seconds", "shared_seconds", "n_hits"]
    ].mean()
    out["score_std"] = g["score"].std().fillna(0.0)
    out["events"] = g.size()
    return out.reset_index()


def markdown_table(summary: pd.DataFrame, setting: str = "") -> str:
    """The summary as a markdown table (one line per method)."""
    head = (
        "| setting | method | TrackML score | efficiency | fake rate | tracks/event | "
        "time/event [s] (+ shared GNN stages) |\n|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in summary.itertuples(index=False):
        shared = f" (+ {r.shared_seconds:.1f})" if r.shared_seconds > 0 else ""
        lines.append(
            f"| {setting} | {r.method} | {r.score:.3f} ± {r.score_std:.3f} | {r.efficiency:.3f} | "
            f"{r.fake_rate:.3f} | {r.n_tracks:,.0f} | {r.seconds:.2f}{shared} |"
        )
    return "\n".join(lines)
