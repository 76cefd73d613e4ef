r"""Stage-1 graph construction on a full μ = 200 event: per-step time, compile time apart.

    python benchmarks/bench_graph.py [--checkpoint=PATH] [--repeats=5]

Steps of ``Pipeline.graph`` (the shipped model's stage 1 by default; a stage-1 workdir or any
pipeline checkpoint with ``--checkpoint``): hit features, embedding MLP (jit), kd-tree neighbour
graph (the zone-map query when the model has one), pair features and edge filter (one jit
program). Each figure is the median (min, max) over repeats on the same event after a first,
compiling call.
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
    ap.add_argument("--checkpoint", default=None, help="stage 1 or pipeline (default: shipped)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()
    import jax
    import numpy as np

    from cgnn_jax.features import hit_features
    from cgnn_jax.inference import Pipeline, restore_stage1
    from cgnn_jax.inference.events import prepare_event
    from cgnn_jax.inference.stage1 import edge_probabilities_fused
    from cgnn_jax.sim import simulate_event

    model = restore_stage1(args.checkpoint) if args.checkpoint else Pipeline.restore().stage1
    raw = simulate_event(args.seed)
    ev = prepare_event(raw)
    t = time.perf_counter()
    e = model.embed(ev)
    compile_embed = time.perf_counter() - t
    s, r = model.embedding_graph(ev, e)
    t = time.perf_counter()
    edge_probabilities_fused(model.filter_model, model.filter_params, ev.hf, s, r)
    compile_filter = time.perf_counter() - t

    # the steps of Pipeline.graph (the shipped model's zone-map query when it has one)
    steps = {
        "hit features": lambda: hit_features(raw),
        "embedding MLP": lambda: model.embed(ev),
        "kd-tree graph": lambda: model.embedding_graph(ev, e),
        "pair features + edge filter": lambda: edge_probabilities_fused(
            model.filter_model, model.filter_params, ev.hf, s, r
        ),
    }
    print(f"machine: {machine()}; jax backend: {jax.default_backend()}")
    print(f"event: {ev.n:,} hits; embedding graph {len(s):,} edges ({len(s) / ev.n:.1f} per hit)")
    total = 0.0
    for name, fn in steps.items():
        st = repeat(fn, args.repeats)
        total += st["median"]
        print(
            f"  {name:28s} median {st['median']:.3f} s (min {st['min']:.3f}, max {st['max']:.3f})"
        )
    print(
        f"  {'total':28s} {total:.3f} s; first-call compile overhead: embedding "
        f"{compile_embed:.2f} s, filter {compile_filter:.2f} s; peak memory {peak_rss_gib():.2f} GiB"
    )
    del np


if __name__ == "__main__":
    main()
