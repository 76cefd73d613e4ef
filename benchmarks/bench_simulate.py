r"""Speed and memory of the simulator on a full μ = 200 event, on one core.

    python benchmarks/bench_simulate.py [--repeats=5] [--mu=200] [--cluster_model=staircase]

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
    ap.add_argument(
        "--cluster_model", default=None, help="SimConfig.cluster_model (default: the simulator's)"
    )
    args = ap.parse_args()
    pinned = pin_one_core()
    import numpy as np

    from cgnn_jax.sim import load_geometry, simulate_event
    from cgnn_jax.sim.response import CLUSTER_MODELS
    from cgnn_jax.sim.simulate import SimConfig

    config = SimConfig()
    if args.cluster_model is not None:
        if args.cluster_model not in CLUSTER_MODELS:
            raise SystemExit(
                f"--cluster_model must be one of {', '.join(CLUSTER_MODELS)}, "
                f"got {args.cluster_model!r}"
            )
        config = SimConfig(cluster_model=args.cluster_model)

    base = peak_rss_gib()
    load_geometry()
    sizes = []
    seeds = iter(range(1000))

    def one():
        ev = simulate_event(np.random.default_rng(next(seeds)), args.mu, config=config)
        sizes.append(ev.n_hits)

    one()  # warm caches (geometry, real particle table)
    t = repeat(one, args.repeats)
    print(f"machine: {machine()}; pinned to one core: {pinned}")
    print(
        f"simulate mu={args.mu:g}, cluster_model={config.cluster_model}: {np.mean(sizes[1:]):.0f} hits/event; "
        f"time median {t['median']:.2f} s (min {t['min']:.2f}, max {t['max']:.2f}) over {t['n']} events; "
        f"peak memory {peak_rss_gib():.2f} GiB (after imports: {base:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
