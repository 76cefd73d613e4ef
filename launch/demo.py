r"""The main job on built-in simulated data: simulate -> reconstruct -> score, one short table.

    python launch/demo.py [--out=out/demo] [--events=2] [--seed=2026]

Simulates full μ = 200 events and the same events cut to 10 % of tracks with the built-in
simulator, writes them in the TrackML format under ``--out``, reconstructs every event with the
clustering GNN (the pretrained default model shipped in the package, or ``--checkpoint``) and the
DBSCAN baselines, and
prints the TrackML score, track efficiency, fake rate and time per event. Submissions are written
next to the data so ``launch/eval.py`` can re-score them.
"""

from __future__ import annotations

import time
from pathlib import Path

import _bootstrap  # noqa: F401
import _cli
import numpy as np
import pandas as pd
from absl import flags, logging
from tqdm import tqdm

from cgnn_jax.baselines import reconstruct_baseline
from cgnn_jax.io import write_submission
from cgnn_jax.metrics import score_event, track_efficiency
from cgnn_jax.sim.dataset import simulate_dataset

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "out/demo", "Output directory for the data and submissions.")
flags.DEFINE_integer("events", 2, "Events per setting.", lower_bound=1)
flags.DEFINE_integer("seed", 2026, "Simulation seed.")
flags.DEFINE_list("methods", ["cgnn", "dbscan", "helix_dbscan"], "Track finders to run.")
flags.DEFINE_string("checkpoint", None, "Pipeline checkpoint for 'cgnn' (default: pretrained).")

SETTINGS = (("full event", 1.0), ("10% of tracks", 0.1))


def run_demo(
    out: str, n_events: int, seed: int, methods: list[str], checkpoint: str | None = None
) -> pd.DataFrame:
    """Simulate, reconstruct and score; one row per (setting, method, event)."""
    rows = []
    pipe = None
    if "cgnn" in methods:
        from cgnn_jax.inference import Pipeline

        pipe = Pipeline.restore(checkpoint)
    for name, frac in SETTINGS:
        data_dir = Path(out) / ("data_full" if frac == 1.0 else "data_10pct")
        events = [
            ev
            for _, ev in tqdm(
                simulate_dataset(data_dir, n_events, seed=seed, track_fraction=frac),
                total=n_events,
                desc=f"simulate ({name})",
                unit="event",
            )
        ]
        for method in methods:
            subs = []
            for ev in tqdm(events, desc=f"{method} ({name})", unit="event"):
                t = time.perf_counter()
                if method == "cgnn":
                    tracks = pipe.reconstruct(ev)
                else:
                    tracks = reconstruct_baseline(ev.hits, method)
                dt = time.perf_counter() - t
                sub = pd.DataFrame(
                    {
                        "event_id": ev.event_id,
                        "hit_id": ev.hits["hit_id"].to_numpy(),
                        "track_id": tracks,
                    }
                )
                subs.append(sub)
                eff = track_efficiency(ev.truth, ev.particles, sub)
                rows.append(
                    {
                        "setting": name,
                        "method": method,
                        "event_id": ev.event_id,
                        "hits": ev.n_hits,
                        "score": score_event(ev.truth, sub),
                        "efficiency": eff.efficiency,
                        "fake_rate": eff.fake_rate,
                        "time_s": dt,
                    }
                )
            write_submission(
                pd.concat(subs), data_dir.parent / f"submission_{method}_{data_dir.name}.csv"
            )
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    df = run_demo(FLAGS.out, FLAGS.events, FLAGS.seed, FLAGS.methods, FLAGS.checkpoint)
    table = (
        df.groupby(["setting", "method"], sort=False)
        .agg(
            events=("event_id", "size"),
            hits=("hits", "mean"),
            score=("score", "mean"),
            efficiency=("efficiency", "mean"),
            fake_rate=("fake_rate", "mean"),
            time_s=("time_s", "mean"),
        )
        .reset_index()
    )
    print()
    print("TrackML score on simulated mu=200 events (mean over events; time per event):")
    print(
        table.to_string(
            index=False,
            formatters={
                "hits": "{:,.0f}".format,
                "score": "{:.3f}".format,
                "efficiency": "{:.3f}".format,
                "fake_rate": "{:.3f}".format,
                "time_s": "{:.1f}".format,
            },
        )
    )
    print(
        f"\ndata and submissions in {FLAGS.out}/ ; re-score with "
        f"python launch/eval.py --data={FLAGS.out}/data_full "
        f"--submission={FLAGS.out}/submission_dbscan_data_full.csv"
    )
    assert np.isfinite(df["score"]).all()


if __name__ == "__main__":
    _cli.run(main, inputs=("checkpoint",), folders=("out",))
