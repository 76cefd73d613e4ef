r"""DBSCAN baselines on simulated events: eps tuned on some events, scored on others.

    python benchmarks/baselines_score.py [--tune_events=2] [--test_events=3]

For the full μ = 200 event and the 10 %-of-tracks setting: eps chosen by the TrackML score on
tuning events (seed 500), then the mean ± std score and time per event on test events (seed 600).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cgnn_jax.baselines import reconstruct_baseline
from cgnn_jax.baselines.tune import tune_eps
from cgnn_jax.metrics import score_event
from cgnn_jax.sim.dataset import simulated_events

GRIDS = {
    "dbscan": (0.004, 0.006, 0.008, 0.010, 0.012, 0.015, 0.02, 0.025),
    "helix_dbscan": (0.0025, 0.0035, 0.0045, 0.0055, 0.0065, 0.0075),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tune_events", type=int, default=2)
    ap.add_argument("--test_events", type=int, default=3)
    ap.add_argument("--methods", default="dbscan,helix_dbscan")
    args = ap.parse_args()
    rows = []
    for setting, frac in (("full event", 1.0), ("10% of tracks", 0.1)):
        tune = simulated_events(args.tune_events, 500, track_fraction=frac)
        test = simulated_events(args.test_events, 600, track_fraction=frac)
        for method in args.methods.split(","):
            eps, _table = tune_eps(tune, method, GRIDS[method])
            scores, times, default_scores = [], [], []
            for ev in test:
                t = time.perf_counter()
                ids = reconstruct_baseline(ev.hits, method, eps=eps)
                times.append(time.perf_counter() - t)
                sub = pd.DataFrame({"hit_id": ev.hits["hit_id"], "track_id": ids})
                scores.append(score_event(ev.truth, sub))
                ids = reconstruct_baseline(ev.hits, method)  # the full-event default eps
                sub = pd.DataFrame({"hit_id": ev.hits["hit_id"], "track_id": ids})
                default_scores.append(score_event(ev.truth, sub))
            rows.append(
                {
                    "setting": setting,
                    "method": method,
                    "tuned eps": eps,
                    "score (tuned eps)": f"{np.mean(scores):.3f} ± {np.std(scores):.3f}",
                    "score (default eps)": f"{np.mean(default_scores):.3f}",
                    "hits/event": f"{np.mean([e.n_hits for e in test]):,.0f}",
                    "time/event [s]": f"{np.median(times):.1f}",
                }
            )
            print(
                f"{setting:14s} {method:12s} eps={eps:<7g} score={np.mean(scores):.3f}", flush=True
            )
    df = pd.DataFrame(rows)
    print()
    print("| " + " | ".join(df.columns) + " |")
    print("|" + " --- |" * len(df.columns))
    for r in df.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
