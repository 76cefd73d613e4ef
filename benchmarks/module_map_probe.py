r"""The module map as stage-1 candidates: coverage, size, edges per hit, ceiling, time.

    python benchmarks/module_map_probe.py [--train_events=20] [--test_events=2] [--real]
        [--train_seed=7] [--test_seed=99] [--margin=0.1] [--floor=1.0] [--json_out=PATH]
        [--map=simulate|shipped] [--pool_phase_bins=0] [--fill_only]

Builds a module map (:mod:`cgnn_jax.graph.module_map`) from ``--train_events`` simulated full
μ = 200 events (event ``i`` from ``event_seed(train_seed, i)``) and enumerates the candidates of
``--test_events`` unseen full events (``event_seed(test_seed, i)``, the events
``launch/diagnose.py`` simulates by default). For each candidate set: edges per hit (distinct
hit pairs, counted in both directions as ``diagnose`` counts them), the share of true
consecutive pairs kept (either direction), the oracle-completed connected-components ceiling
(:func:`cgnn_jax.metrics.ceilings.oracle_components_ceiling`, the graph ceiling of
``diagnose``) and the enumeration time. Candidate sets: every mapped module pair; inside the
exact min/max windows; inside the windows widened by ``--margin`` of their width plus
``--floor`` times the default floors (one set per value of the comma-separated list). Also the map's coverage of the test events' consecutive
pairs as it grows (module pairs only), and with ``--real`` the same figures on the shipped real
event (``cgnn_jax.data.real_sample()``). ``--map=shipped`` takes the shipped model's map instead
of simulating training events; ``--pool_phase_bins=B`` (B > 0) also measures that map pooled over
the detector's rotations in φ (:func:`cgnn_jax.graph.map_pooling.pooled_module_map`, with
``--fill_only`` keeping the windows of the pairs the map has seen), windowed candidate sets only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_gib


def _figures(ev, mmap, margin, floor) -> dict[str, float]:
    from cgnn_jax.graph.module_map import candidates, event_truth
    from cgnn_jax.metrics.ceilings import edge_truth, oracle_components_ceiling
    from cgnn_jax.metrics.edges import consecutive_recall

    pid, weight = event_truth(ev)
    pos = ev.hits[["x", "y", "z"]].to_numpy(np.float64)
    n = len(pid)
    t0 = time.perf_counter()
    s, r = candidates(ev.hits, mmap, window_margin=margin, floor=floor)
    dt = time.perf_counter() - t0
    lo, hi = np.minimum(s, r), np.maximum(s, r)
    distinct = len(np.unique(lo * np.int64(n) + hi))
    del lo, hi
    true = edge_truth(s, r, pid)  # the ceiling and the kept share depend on true edges only
    st, rt = s[true], r[true]
    del s, r
    ss, rr = np.concatenate([st, rt]), np.concatenate([rt, st])
    return {
        "n_hits": n,
        "edges_per_hit": 2 * distinct / n,
        "consecutive_kept": consecutive_recall(ss, rr, pos, pid),
        "ceiling": oracle_components_ceiling(ss, rr, pid, weight),
        "enumeration_s": dt,
    }


def _coverage(ev, mmap) -> float:
    """Share of an event's consecutive pairs (inner -> outer) whose module pair is mapped."""
    from cgnn_jax.graph.module_map import event_truth, map_coverage, module_keys

    pid, _ = event_truth(ev)
    return map_coverage(mmap, module_keys(ev.hits), ev.hits[["x", "y", "z"]].to_numpy(), pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    # (flag, type, default): training and test events, their seeds, the windows' widening
    numbers = (
        ("train_events", int, 20),
        ("test_events", int, 2),
        ("train_seed", int, 7),
        ("test_seed", int, 99),
        ("margin", float, 0.1),
    )
    for name, kind, default in numbers:
        ap.add_argument(f"--{name}", type=kind, default=default)
    ap.add_argument("--floor", default="1,3", help="comma-separated floor scales, one run each")
    ap.add_argument("--real", action="store_true", help="also the shipped real event")
    ap.add_argument("--json_out", default=None)
    ap.add_argument("--map", choices=("simulate", "shipped"), default="simulate")
    ap.add_argument("--pool_phase_bins", type=int, default=0)
    ap.add_argument("--fill_only", action="store_true")
    args = ap.parse_args()
    if args.pool_phase_bins < 0:
        raise SystemExit(f"--pool_phase_bins must be >= 0, got {args.pool_phase_bins}")
    if args.train_events < 1 or args.test_events < 1:
        raise SystemExit("--train_events and --test_events must be >= 1")
    try:
        floors = [float(v) for v in args.floor.split(",")]
    except ValueError:
        raise SystemExit(f"--floor must be comma-separated numbers, got {args.floor!r}") from None
    if args.train_seed == args.test_seed:
        raise SystemExit(f"--train_seed and --test_seed must differ, both {args.train_seed}")

    from cgnn_jax.graph.module_map import event_module_map
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    print(f"machine: {machine()}", flush=True)
    tests = [
        simulate_event(event_seed(args.test_seed, i), 200.0, event_id=1 + i)
        for i in range(args.test_events)
    ]
    real = None
    if args.real:
        from cgnn_jax.data import real_sample

        real = real_sample()
    t0 = time.perf_counter()
    build_s = 0.0
    mmap, curve = None, []
    marks = {args.train_events} | {
        k for k in (1, 2, 5, 10, 20, 50, 100, 200) if k < args.train_events
    }
    if args.map == "shipped":
        from cgnn_jax.inference.pipeline import Pipeline

        mmap = Pipeline.restore().stage1.module_map
        args.train_events = 0
    else:
        for i in range(args.train_events):
            ev = simulate_event(event_seed(args.train_seed, i), 200.0, event_id=1 + i)
            tb = time.perf_counter()
            m = event_module_map(ev)
            mmap = m if mmap is None else mmap.merge(m)
            build_s += time.perf_counter() - tb
            if i + 1 in marks:
                cov = [_coverage(t, mmap) for t in tests]
                row = {"train_events": i + 1, "module_pairs": mmap.n_pairs, "coverage": cov}
                if real is not None:
                    row["coverage_real"] = _coverage(real, mmap)
                curve.append(row)
                print(f"  {i + 1:>4} events: {mmap.n_pairs:,} module pairs, coverage "
                      + " ".join(f"{c:.4f}" for c in cov)
                      + (f", real {row['coverage_real']:.4f}" if real is not None else ""))  # fmt: skip
    size_mb = mmap.size_mb()
    print(f"map: {args.map}, {args.train_events} events, {mmap.n_pairs:,} module pairs, {size_mb:.1f} MB "
          f"(npz), built in {build_s:.1f} s (+ simulation: {time.perf_counter() - t0:.0f} s total); "
          f"pairs seen once: {(mmap.count == 1).mean():.2f}")  # fmt: skip

    configs = [
        ("every mapped pair", None, 0.0),
        ("inside min/max windows", 0.0, 0.0),
    ]
    for fl in floors:
        configs.append((f"windows +{args.margin:g} width + {fl:g} floor", args.margin, fl))
    sources = [(f"sim {i}", t) for i, t in enumerate(tests)]
    if real is not None:
        sources.append(("real", real))
    print(
        f"{'candidates':<40} {'event':<6} {'hits':>7} {'e/hit':>7} {'cons.kept':>9} "
        f"{'ceiling':>7} {'enum s':>6}"
    )
    maps = [("", mmap)]
    if args.pool_phase_bins:
        from cgnn_jax.graph.map_pooling import pooled_module_map

        tp = time.perf_counter()
        pooled = pooled_module_map(mmap, args.pool_phase_bins, fill_only=args.fill_only)
        print(f"pooled over phi ({args.pool_phase_bins} bins per pitch"
              f"{', fill only' if args.fill_only else ''}): {pooled.n_pairs:,} module pairs, "
              f"{pooled.size_mb():.1f} MB, {time.perf_counter() - tp:.0f} s; coverage "
              + " ".join(f"{_coverage(t, pooled):.4f}" for t in tests))  # fmt: skip
        maps.append(("pooled: ", pooled))
    rows = []
    for (prefix, m), (name, margin, floor) in itertools.product(maps, configs):
        if prefix and margin is None:
            continue  # every pair of the pooled map: too many to enumerate
        for src, ev in sources:
            r = {"candidates": prefix + name, "event": src, **_figures(ev, m, margin, floor)}
            rows.append(r)
            print(f"{r['candidates']:<40} {r['event']:<6} {r['n_hits']:>7} "
                  f"{r['edges_per_hit']:>7.1f} {r['consecutive_kept']:>9.4f} {r['ceiling']:>7.4f} "
                  f"{r['enumeration_s']:>6.2f}", flush=True)  # fmt: skip
    print(f"peak RSS {peak_rss_gib():.1f} GiB")
    if args.json_out:
        out = {"args": vars(args), "module_pairs": mmap.n_pairs, "size_mb": size_mb,
               "build_s": build_s, "curve": curve, "rows": rows}  # fmt: skip
        tmp = f"{args.json_out}.tmp"
        with open(tmp, "w") as fh:
            json.dump(out, fh, indent=1)
        os.replace(tmp, args.json_out)


if __name__ == "__main__":
    main()
