r"""Speed and memory of the simulator on a full μ = 200 event, on one core.

    python benchmarks/bench_simulate.py [--repeats=5] [--mu=200]

Prints the median (min, max) wall time per event and the process's peak memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_gib, pin_one_core, repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mu", type=float, default=200.0)
    args = ap.parse_args()
    pinned = pin_one_core()
    import numpy as np

    from cgnn_jax.sim import load_geometry, simulate_event

    base = peak_rss_gib()
    load_geometry()
    sizes = []
    seeds = iter(range(1000))

    def one():
        ev = simulate_event(np.random.default_rng(next(seeds)), args.mu)
        sizes.append(ev.n_hits)

    one()  # warm caches (geometry, real particle table)
    t = repeat(one, args.repeats)
    print(f"machine: {machine()}; pinned to one core: {pinned}")
    print(
        f"simulate mu={args.mu:g}: {np.mean(sizes[1:]):.0f} hits/event; "
        f"time median {t['median']:.2f} s (min {t['min']:.2f}, max {t['max']:.2f}) over {t['n']} events; "
        f"peak memory {peak_rss_gib():.2f} GiB (after imports: {base:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
