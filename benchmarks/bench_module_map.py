r"""Module-map candidate enumeration on full μ = 200 events: time per event, before and after.

    python benchmarks/bench_module_map.py [--map_events=60] [--events=2] [--repeats=3]
        [--margin=0.1] [--floor=1.0] [--map=PATH] [--save_map=PATH] [--no_reference]
        [--json_out=PATH]

Builds a module map from ``--map_events`` simulated full events (event ``i`` from
``event_seed(7, i)``; 300 gives the shipped size, ~1.4 M module pairs) or reads one written by
``ModuleMap.to_bytes`` (``--map``), then enumerates the windowed candidates of ``--events``
unseen full events (``event_seed(99, i)``) with :func:`cgnn_jax.graph.module_map.candidate_pairs`
and with :func:`cross_product_candidates`, the plain numpy enumeration it replaces (every hit
pair of every mapped module pair, cut quantity by quantity). Both run in turn (reference, new,
reference, new, ...) so that a busy machine slows both alike; each figure is the median (min,
max) over ``--repeats`` after a first, compiling call. It also checks that both give the same
set of hit pairs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_gib


def cross_product_candidates(
    keys: np.ndarray,
    pos: np.ndarray,
    module_map,
    window_margin: float | None = 0.1,
    floor: float = 1.0,
    chunk: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference enumeration: every hit pair ``i != j`` of every mapped module pair
    ``(a, b)`` (``i`` on ``a``), in the map's pair order, ``i``-major over the hits in row order,
    cut by each widened window in turn (numpy float32, as ``doublet_quantities``)."""
    from cgnn_jax.graph.module_map import QUANTITIES, _position_arrays, _quantity, _windows

    mk = np.asarray(keys, np.int64)
    h = _position_arrays(pos)
    order = np.argsort(mk, kind="stable")
    umod, start, cnt = np.unique(mk[order], return_index=True, return_counts=True)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(umod) == 0 or module_map.n_pairs == 0:
        return empty
    ia = np.clip(np.searchsorted(umod, module_map.module_a), 0, len(umod) - 1)
    ib = np.clip(np.searchsorted(umod, module_map.module_b), 0, len(umod) - 1)
    on = np.flatnonzero((umod[ia] == module_map.module_a) & (umod[ib] == module_map.module_b))
    if len(on) == 0:
        return empty
    ia, ib = ia[on], ib[on]
    prod = cnt[ia] * cnt[ib]
    if window_margin is not None:
        wlo, whi = _windows(module_map, window_margin, floor)
        wlo, whi = wlo[on], whi[on]
    ends = np.cumsum(prod)  # chunks of module pairs holding about `chunk` hit pairs each
    bounds = np.searchsorted(ends, np.arange(chunk, ends[-1], chunk), side="right")
    bounds = np.unique(np.concatenate([[0], bounds, [len(on)]]))
    sa, sb, nb_all = start[ia], start[ib], cnt[ib]
    out_s, out_t = [], []
    for c0, c1 in itertools.pairwise(bounds.tolist()):
        p = prod[c0:c1]
        rep = np.repeat(np.arange(c0, c1), p)
        first = np.repeat(np.cumsum(p) - p, p)
        off = np.arange(len(rep), dtype=np.int64) - first
        nb = nb_all[rep]
        s = order[sa[rep] + off // nb]
        t = order[sb[rep] + off % nb]
        keep = s != t
        s, t, rep = s[keep], t[keep], rep[keep]
        if window_margin is not None:
            for q in range(len(QUANTITIES)):
                v = _quantity(h, q, s, t)
                keep = (v >= wlo[rep, q]) & (v <= whi[rep, q])
                s, t, rep = s[keep], t[keep], rep[keep]
        out_s.append(s)
        out_t.append(t)
    return np.concatenate(out_s), np.concatenate(out_t)


def pair_codes(s: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    """Sorted ``s * n + t``: equal for two enumerations with the same set of pairs."""
    return np.sort(np.asarray(s, np.int64) * n + np.asarray(t, np.int64))


def _stats(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def _fmt(st: dict[str, float]) -> str:
    return f"{st['median_s']:.2f} s ({st['min_s']:.2f}, {st['max_s']:.2f})"


def _write(path: str, data: bytes | str) -> None:
    from cgnn_jax.io.atomic import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--map_events", type=int, default=60, help="simulated events for the map")
    ap.add_argument("--events", type=int, default=2, help="unseen full events enumerated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--margin", type=float, default=0.1, help="window_margin")
    ap.add_argument("--floor", type=float, default=1.0, help="window floor scale")
    ap.add_argument("--map", default=None, help="a ModuleMap.to_bytes .npz instead of building")
    ap.add_argument("--save_map", default=None, help="write the built map here (.npz)")
    ap.add_argument("--no_reference", action="store_true", help="time the new enumeration only")
    ap.add_argument("--json_out", default=None)
    args = ap.parse_args()
    for flag in ("map_events", "events", "repeats"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.map is not None and not Path(args.map).is_file():
        ap.error(f"--map: no file {args.map}")

    from cgnn_jax.graph.module_map import ModuleMap, candidate_pairs, event_module_map, module_keys
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    t0 = time.perf_counter()
    if args.map is not None:
        try:
            mmap = ModuleMap.from_bytes(Path(args.map).read_bytes())
        except ValueError as e:
            sys.exit(f"--map {args.map}: {e}")
        source = args.map
    else:
        mmap = None
        for i in range(args.map_events):
            m = event_module_map(simulate_event(event_seed(7, i), 200.0))
            mmap = m if mmap is None else mmap.merge(m)
            if (i + 1) % 20 == 0:
                print(f"  map: {i + 1} events, {mmap.n_pairs:,} module pairs", flush=True)
        source = f"{args.map_events} simulated full events (event_seed(7, i))"
        if args.save_map:
            _write(args.save_map, mmap.to_bytes())
    print(f"machine: {machine()}")
    print(f"map: {source}: {mmap.n_pairs:,} module pairs ({time.perf_counter() - t0:.0f} s)")
    print(f"windows: margin {args.margin}, floor {args.floor}; repeats {args.repeats}")

    runs = []
    for e in range(args.events):
        ev = simulate_event(event_seed(99, e), 200.0)
        keys, pos = module_keys(ev.hits), ev.hits[["x", "y", "z"]].to_numpy(np.float64)
        methods = {"new": candidate_pairs}
        if not args.no_reference:
            methods = {"reference": cross_product_candidates, **methods}

        def call(name: str, keys=keys, pos=pos, methods=methods):
            t = time.perf_counter()
            out = methods[name](keys, pos, mmap, args.margin, args.floor)
            return out, time.perf_counter() - t

        (s, r), first_s = call("new")
        times: dict[str, list[float]] = {name: [] for name in methods}
        ref = None
        for _ in range(args.repeats):
            for name in methods:  # in turn: a busy machine slows both alike
                out, dt = call(name)
                times[name].append(dt)
                if name == "reference":
                    ref = out
        row = {
            "event": e,
            "hits": len(keys),
            "candidates": len(s),
            "first_call_s": first_s,
            **{name: _stats(ts) for name, ts in times.items()},
        }
        line = f"event {e}: {len(keys):,} hits, {len(s):,} candidates; new {_fmt(row['new'])}"
        line += f" (first call {first_s:.2f} s)"
        if ref is not None:
            same = np.array_equal(pair_codes(s, r, len(keys)), pair_codes(*ref, len(keys)))
            row["same_set"] = bool(same)
            row["speedup"] = row["reference"]["median_s"] / row["new"]["median_s"]
            line += f"; reference {_fmt(row['reference'])}; x{row['speedup']:.1f}"
            line += f"; same set: {same}"
        print(line, flush=True)
        runs.append(row)
    print(f"peak memory {peak_rss_gib():.1f} GiB")
    if args.json_out:
        out = {"map": source, "module_pairs": mmap.n_pairs, "runs": runs}
        _write(args.json_out, json.dumps(out, indent=1))
    if any(r.get("same_set") is False for r in runs):
        sys.exit("the new enumeration's set differs from the reference's")


if __name__ == "__main__":
    main()
