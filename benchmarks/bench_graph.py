r"""Stage-1 graph construction on a full μ = 200 event: per-step time, compile time apart.

    python benchmarks/bench_graph.py [--checkpoint=PATH] [--repeats=5]

Steps of ``Pipeline.graph`` (the shipped model's stage 1 by default; a stage-1 workdir or any
pipeline checkpoint with ``--checkpoint``): hit features, embedding MLP (jit), kd-tree neighbour
graph (the zone-map query when the model has one), pair features and edge filter (one jit
program). A stage 1 on module-map candidates (``graph.builder = "module_map"``): hit features,
the candidates' enumeration, the first pass over them when it has one
(``filter.prefilter_hidden``), the edge filter on what that keeps, each context-filter round
when it has them (:func:`~cgnn_jax.inference.stage1.stage1_context`: the edge context and the
network, on the edges left after the cut between rounds; the first pass then at its looser cut)
and the symmetric cut graph.
Each figure is the median (min, max) over repeats on the same event after a first, compiling
call.
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
    print(f"machine: {machine()}; jax backend: {jax.default_backend()}")
    if model.builder == "module_map":
        module_map_steps(model, raw, ev, args.repeats)
        return
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


def _report(name: str, st: dict) -> float:
    print(f"  {name:28s} median {st['median']:.3f} s (min {st['min']:.3f}, max {st['max']:.3f})")
    return st["median"]


def module_map_steps(model, raw, ev, repeats: int) -> None:
    """Time the steps of a module-map stage 1 (candidates, first pass, filter, context rounds,
    cut graph)."""
    from cgnn_jax.features import hit_features
    from cgnn_jax.graph.module_map import symmetric_edges
    from cgnn_jax.inference.stage1 import (
        context_probabilities,
        edge_probabilities_fused,
        stage1_context,
    )

    context = stage1_context(model)
    ctx = context is not None
    rounds = context.params if ctx else []
    cut = context.cut if ctx else model.threshold
    t = time.perf_counter()
    s, r = model.embedding_graph(ev)
    first_enum = time.perf_counter() - t
    t = time.perf_counter()
    fp = model.first_pass
    ks, kr = (s, r) if fp is None else fp.keep(ev, s, r, context=ctx)
    first_pass = time.perf_counter() - t
    t = time.perf_counter()
    p = edge_probabilities_fused(model.filter_model, model.filter_params, ev.hf, ks, kr)
    first_filter = time.perf_counter() - t
    # what each context round reads: its edges (pruned between rounds) and the scores before it
    reads, cs, cr, q = [], ks, kr, p
    prune = list(model.learned.get("context_prune_thresholds", []))
    t = time.perf_counter()
    for k, params in enumerate(rounds):
        if 0 < k <= len(prune):
            keep = q > prune[k - 1]
            cs, cr, q = cs[keep], cr[keep], q[keep]
        reads.append((cs, cr, q))
        q = context_probabilities(context.model, params, ev.hf, cs, cr, q)
    first_context = time.perf_counter() - t
    ss, _, _ = symmetric_edges(cs, cr, q, ev.n, cut)
    print(
        f"event: {ev.n:,} hits; {len(s):,} module-map candidates ({len(s) / ev.n:.1f} per hit, directed), "
        f"{len(ks):,} after the first pass ({len(ks) / max(len(s), 1):.3f}), "
        f"{len(ss) / ev.n:.2f} edges per hit at the cut {cut:.4f}"
        + (f" of the last of {len(rounds)} context rounds" if ctx else "")
    )
    steps = {
        "hit features": lambda: hit_features(raw),
        "module-map candidates": lambda: model.embedding_graph(ev),
    }
    total = 0.0
    for name, fn in steps.items():
        total += _report(name, repeat(fn, repeats))
    s, r = model.embedding_graph(ev)  # the arrays whose module-map rows the first pass reads
    if fp is not None:
        total += _report("first pass", repeat(lambda: fp.keep(ev, s, r, context=ctx), repeats))
    total += _report(
        "edge filter",
        repeat(
            lambda: edge_probabilities_fused(
                model.filter_model, model.filter_params, ev.hf, ks, kr
            ),
            repeats,
        ),
    )
    for k, params in enumerate(rounds):
        total += _report(
            f"context round {k} ({len(reads[k][0]) / 1e6:.1f} M edges)",
            repeat(
                lambda params=params, k=k: context_probabilities(
                    context.model, params, ev.hf, *reads[k]
                ),
                repeats,
            ),
        )
    total += _report(
        "symmetric cut graph",
        repeat(lambda: symmetric_edges(cs, cr, q, ev.n, cut), repeats),
    )
    print(
        f"  {'total':28s} {total:.3f} s; first calls (with compilation): candidates "
        f"{first_enum:.2f} s, first pass {first_pass:.2f} s, filter {first_filter:.2f} s, "
        f"context {first_context:.2f} s; peak memory {peak_rss_gib():.2f} GiB"
    )


if __name__ == "__main__":
    main()
