r"""Stage-1 graph construction on a full μ = 200 event: per-step time, compile time apart.

    python benchmarks/bench_graph.py --checkpoint=workdirs/stage1 [--repeats=5]

Steps: hit features, embedding MLP (jit), kd-tree neighbour graph, pair features, edge filter (jit).
Each figure is the median (min, max) over repeats on the same event after a first, compiling call.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_gib, repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()
    import jax
    import numpy as np

    from cgnn_jax.features import hit_features, pair_features
    from cgnn_jax.inference.events import prepare_event
    from cgnn_jax.inference.stage1 import Stage1, edge_probabilities
    from cgnn_jax.sim import simulate_event

    model = Stage1.restore(args.checkpoint)
    raw = simulate_event(args.seed)
    ev = prepare_event(raw)
    t = time.perf_counter()
    e = model.embed(ev)
    compile_embed = time.perf_counter() - t
    s, r = model.embedding_graph(ev)
    z = pair_features(ev.hf, s, r)
    t = time.perf_counter()
    edge_probabilities(model.filter_model, model.filter_params, ev.hf.x, z, s, r)
    compile_filter = time.perf_counter() - t

    from cgnn_jax.graph import neighbor_graph

    g = model.config.graph
    steps = {
        "hit features": lambda: hit_features(raw),
        "embedding MLP": lambda: model.embed(ev),
        "kd-tree graph": lambda: neighbor_graph(
            e, g.mode, k=g.k, radius=g.radius, approx=g.get("approx", 0.0)
        ),
        "pair features": lambda: pair_features(ev.hf, s, r),
        "edge filter": lambda: edge_probabilities(
            model.filter_model, model.filter_params, ev.hf.x, z, s, r
        ),
    }
    print(f"machine: {machine()}; jax backend: {jax.default_backend()}")
    print(f"event: {ev.n:,} hits; embedding graph {len(s):,} edges ({len(s) / ev.n:.1f} per hit)")
    total = 0.0
    for name, fn in steps.items():
        st = repeat(fn, args.repeats)
        total += st["median"]
        print(
            f"  {name:14s} median {st['median']:.3f} s (min {st['min']:.3f}, max {st['max']:.3f})"
        )
    print(
        f"  {'total':14s} {total:.3f} s; first-call compile overhead: embedding "
        f"{compile_embed:.2f} s, filter {compile_filter:.2f} s; peak memory {peak_rss_gib():.2f} GiB"
    )
    del np


if __name__ == "__main__":
    main()
