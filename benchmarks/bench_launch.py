r"""Whole-process speed of the commands a user runs: fixed cost and per-event cost apart.

    python benchmarks/bench_launch.py [--repeats=3] [--checkpoint=PATH]

Every figure is the wall time of a fresh ``python launch/<script>.py`` process, as a user
starts it (imports, checkpoint restore, compilation or its cache, the work, the output file),
median (min, max) of ``--repeats`` runs:

* ``simulate.py --events=1`` (a full μ = 200 event written as TrackML CSV files);
* ``reconstruct.py`` (the shipped model) on one full μ = 200 event and on one μ = 50 event,
  each after one earlier run on the machine (JAX's persistent compilation cache is warm, as it
  is for a user's second run; see ``cgnn_jax.inference.jax_cache``), and the first and second
  runs from an empty cache (the second must be as fast as the later ones);
* the split into fixed cost and per-event cost: ``reconstruct.py`` on 1 and on 3 full events
  (warm cache); per event = (t3 - t1) / 2, fixed = t1 - per event (imports, restore, cache
  loads, writing the submission).

The benchmark uses its own temporary cache folder (``CGNN_JAX_CACHE_DIR``), never the user's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return dt


def summary(ts: list[float]) -> str:
    return f"{statistics.median(ts):.2f} s ({min(ts):.2f}, {max(ts):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint", default=None, help="pipeline checkpoint (default: shipped)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_launch_"))
    env = dict(os.environ, CGNN_JAX_CACHE_DIR=str(tmp / "jax_cache"))
    ck = [f"--checkpoint={args.checkpoint}"] if args.checkpoint else []
    rows: list[tuple[str, str]] = []

    sim = [
        timed(["launch/simulate.py", f"--out={tmp / f'sim{i}'}", "--events=1"], env)
        for i in range(args.repeats)
    ]
    rows.append(("simulate.py --events=1 (μ = 200)", summary(sim)))

    data = {}
    for name, mu, n in (("full", 200, 1), ("mu50", 50, 1), ("full3", 200, 3)):
        d = tmp / name
        timed(["launch/simulate.py", f"--out={d}", f"--events={n}", f"--mu={mu}", "--seed=11"], env)
        data[name] = d

    def reconstruct(name: str) -> float:
        return timed(
            ["launch/reconstruct.py", f"--data={data[name]}", f"--out={tmp / 'sub.csv'}", *ck], env
        )

    cold = reconstruct("full")  # empty cache: compiles, fills the cache
    rows.append(("reconstruct.py, 1 full event, first run (empty cache)", f"{cold:.2f} s"))
    second = reconstruct("full")  # a user's second run: all it needs is in the cache
    rows.append(("reconstruct.py, 1 full event, second run", f"{second:.2f} s"))
    for name, label in (("full", "1 full μ = 200 event"), ("mu50", "1 μ = 50 event")):
        if name != "full":
            reconstruct(name)  # the earlier run on the machine for this size
        ts = [reconstruct(name) for _ in range(args.repeats)]
        rows.append((f"reconstruct.py, {label} (warm cache)", summary(ts)))
    reconstruct("full3")
    t3 = statistics.median(reconstruct("full3") for _ in range(args.repeats))
    t1 = statistics.median(reconstruct("full") for _ in range(args.repeats))
    per_event = (t3 - t1) / 2
    rows.append(("reconstruct.py per full event (from 1 vs 3 events)", f"{per_event:.2f} s"))
    rows.append(("reconstruct.py fixed cost per process", f"{t1 - per_event:.2f} s"))

    print(f"machine: {machine()}\n")
    print("| command (whole process) | wall time, median (min, max) |")
    print("| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
