"""Time ``score_event`` (and ``compute_weights``) on a full-size synthetic TrackML event.

Usage::

    python benchmarks/bench_score.py [--n_particles=10000] [--n_hits=110000] [--repeats=5]

The event has ``n_particles`` particles with 1..20 hits each (about 10 on average), topped
up with noise hits to ``n_hits``; the submission is the perfect one with 10 % of the hits
moved to random tracks, rows shuffled.  Prints the median, min and max of ``repeats`` runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from cgnn_jax.metrics import compute_weights, score_event


def make_event(
    n_particles: int, n_hits: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(truth, particles, submission)`` of a synthetic event of ``n_hits`` hits."""
    rng = np.random.default_rng(seed)
    pids = np.arange(1, n_particles + 1, dtype=np.int64) * 4_503_599_627  # TrackML-like size
    nh = rng.integers(1, 21, n_particles)
    pid = np.repeat(pids, nh)
    n_noise = max(n_hits - len(pid), 0)
    pid = np.r_[pid, np.zeros(n_noise, dtype=np.int64)][:n_hits]
    n = len(pid)
    pt = rng.uniform(0.1, 10.0, n_particles)
    phi = rng.uniform(-np.pi, np.pi, n_particles)
    particles = pd.DataFrame(
        {
            "particle_id": pids,
            "vx": np.zeros(n_particles, np.float32),
            "vy": np.zeros(n_particles, np.float32),
            "vz": rng.normal(0, 5.0, n_particles).astype(np.float32),
            "px": (pt * np.cos(phi)).astype(np.float32),
            "py": (pt * np.sin(phi)).astype(np.float32),
            "pz": rng.normal(0, 3.0, n_particles).astype(np.float32),
        }
    )
    truth = pd.DataFrame(
        {
            "hit_id": rng.permutation(np.arange(1, n + 1)).astype(np.int32),
            "particle_id": pid,
            "tx": rng.uniform(-1000, 1000, n).astype(np.float32),
            "ty": rng.uniform(-1000, 1000, n).astype(np.float32),
            "tz": rng.uniform(-3000, 3000, n).astype(np.float32),
        }
    )
    truth["weight"] = compute_weights(truth, particles)
    track = np.where(pid != 0, pid, -np.arange(1, n + 1))
    move = rng.random(n) < 0.1
    track[move] = rng.choice(np.unique(track), move.sum())
    submission = pd.DataFrame({"hit_id": truth["hit_id"].to_numpy(), "track_id": track})
    submission = submission.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return truth, particles, submission


def timeit(fn: Callable[[], object], repeats: int) -> np.ndarray:
    """Wall times (s) of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n_particles", type=int, default=10_000)
    parser.add_argument("--n_hits", type=int, default=110_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    truth, particles, submission = make_event(args.n_particles, args.n_hits)
    n_tracks = submission["track_id"].nunique()
    print(
        f"event: {len(truth)} hits, {args.n_particles} particles, "
        f"{int((truth.particle_id == 0).sum())} noise hits, {n_tracks} submitted tracks"
    )
    score = score_event(truth, submission)
    print(f"score = {score:.6f}")
    for name, fn in (
        ("score_event", lambda: score_event(truth, submission)),
        ("compute_weights", lambda: compute_weights(truth, particles)),
    ):
        t = timeit(fn, args.repeats)
        print(
            f"{name:>16}: median {np.median(t) * 1e3:7.1f} ms "
            f"(min {t.min() * 1e3:.1f}, max {t.max() * 1e3:.1f}, {args.repeats} runs)"
        )


if __name__ == "__main__":
    main()
