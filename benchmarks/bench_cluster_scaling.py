r"""Scaling of the learned clustering recursion (stage 3) with the number of points.

    python benchmarks/bench_cluster_scaling.py [--repeats=3] [--max_depth=32] [--checkpoint=PATH]

Times :func:`cgnn_jax.cluster.recursion.unrolled_clustering` (jit, Split and Stop
``ClusterStatsMLP`` networks at every level) for n = 1k ... 110k points in d = 12 dims, in two
regimes:

* ``many small``: ``n / 10`` Gaussian blobs of ~10 points each (like the tracks of an event);
* ``few large``: 10 blobs of ~``n / 10`` points each.

Split and Stop are randomly initialised (hidden ``(32, 32)``) unless ``--checkpoint`` names a
trained :class:`cgnn_jax.inference.Pipeline`, whose parameters and ``config.cluster`` are used.
Every level is a fixed-shape pass over all ``N`` (padded) points, whatever the networks decide
(the MLPs and a few ``segment_sum``\ s, ``O(N)``, plus the median rule's sort, ``O(N log N)``,
at the levels that need it), and the ``lax.scan`` runs all ``max_depth`` levels; so the time is
at most ``O(max_depth * N log N)``. The
depth needed is ``O(log n)`` when the splits are roughly balanced (a tree over ``k`` clusters
needs at least ``log2 k`` levels: 14 for the ~11k tracks of a mu = 200 event), so the default
``max_depth = 32`` leaves ample room. The median rule only rules out stalled (one-sided) splits,
not lopsided ones: random networks peel off small groups and may still split at level 32. The
"levels used" column counts the levels where any cluster was split.

Rows run with n outer and regime inner, so a change of load on the machine hits both regimes
alike; the table is printed at the end (progress goes to stderr).

Points are padded to :func:`cgnn_jax.utils.padding.bucket_size` with a mask. Per n: the jit
compile time apart (``lower().compile()`` after clearing jax's caches, so every row compiles),
then one untimed warm-up call and the median (min, max) of ``--repeats`` timed calls
(``block_until_ready``), and the mean CPU time of a call (``time.process_time``: all threads
of this process), which other jobs on a shared machine disturb much less than the wall time.
Last, per regime, the least-squares exponent ``b`` of ``time = a n^b`` in log-log over
n >= 5k (on the median wall time; also on the min and the CPU time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, repeat

SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 110_000)
REGIMES = ("many small", "few large")


def make_points(n: int, regime: str, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, dim]`` float32 Gaussian blobs: ``n / 10`` of ~10 points or 10 of ~``n / 10``.

    Blob centres are uniform in ``[-1, 1]^dim``, blob widths 0.01 (each point's blob is drawn
    uniformly, so the sizes vary around the mean).
    """
    k = max(n // 10, 1) if regime == "many small" else 10
    centres = rng.uniform(-1.0, 1.0, (k, dim))
    blob = rng.integers(0, k, n)
    return (centres[blob] + 0.01 * rng.normal(size=(n, dim))).astype(np.float32)


def _first_kernel_rows(params: Any) -> int | None:
    """Input width of the first Dense layer of a ClusterStatsMLP params tree (3 * D)."""
    try:
        return int(params["params"]["mlp"]["Dense_0"]["kernel"].shape[0])
    except (KeyError, TypeError, AttributeError):
        return None


def load_models(args: argparse.Namespace) -> dict[str, Any]:
    """Split/Stop modules, their parameters and the recursion settings."""
    import jax
    import jax.numpy as jnp

    from cgnn_jax.models.split_stop import Split, Stop

    if not args.checkpoint:
        split, stop = Split((32, 32)), Stop((32, 32))
        k1, k2 = jax.random.split(jax.random.key(args.seed))
        h0 = jnp.zeros((4, args.dim), jnp.float32)
        seg0, m0 = jnp.zeros(4, jnp.int32), jnp.ones(4, bool)
        return {
            "split": split,
            "stop": stop,
            "split_params": split.init(k1, h0, seg0, m0, 4),
            "stop_params": stop.init(k2, h0, seg0, m0, 4),
            "max_depth": args.max_depth,
            "min_size": args.min_size,
            "stop_threshold": args.stop_threshold,
            "dim": args.dim,
            "what": "randomly initialised Split/Stop, hidden (32, 32)",
        }
    try:
        from cgnn_jax.inference import Pipeline
    except ImportError as e:
        sys.exit(f"--checkpoint needs cgnn_jax.inference.Pipeline, which is not importable: {e}")
    pipe = Pipeline.restore(args.checkpoint)
    cc = getattr(pipe, "cluster_config", None) or pipe.config.cluster
    params = getattr(pipe, "params", {}) or {}
    sp = getattr(pipe, "split_params", None) or params.get("split")
    tp = getattr(pipe, "stop_params", None) or params.get("stop")
    if sp is None or tp is None:
        sys.exit(f"{args.checkpoint}: the pipeline carries no Split/Stop parameters")
    split = Split(tuple(cc.split_hidden))
    stop = Stop(tuple(cc.stop_hidden), cc.get("stop_aggregate", "mean"))
    rows = _first_kernel_rows(sp)
    dim = rows // 3 if rows else args.dim
    return {
        "split": split,
        "stop": stop,
        "split_params": sp,
        "stop_params": tp,
        "max_depth": int(cc.get("max_depth", args.max_depth)),
        "min_size": int(cc.get("min_size", args.min_size)),
        "stop_threshold": float(cc.get("stop_threshold", args.stop_threshold)),
        "dim": dim,
        "what": f"trained Split {tuple(cc.split_hidden)} / Stop {tuple(cc.stop_hidden)} "
        f"from {args.checkpoint}",
    }


def fitted_exponent(ns: list[int], times: list[float], n_min: int = 5_000) -> float:
    """Least-squares slope ``b`` of ``log t = log a + b log n`` over ``n >= n_min``."""
    x = np.log([n for n in ns if n >= n_min])
    y = np.log([t for n, t in zip(ns, times, strict=True) if n >= n_min])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max_depth", type=int, default=32, help="levels (O(log n) are needed)")
    ap.add_argument("--min_size", type=int, default=3)
    ap.add_argument("--stop_threshold", type=float, default=0.5)
    ap.add_argument("--dim", type=int, default=12)
    ap.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="a trained Pipeline (else random init)")
    args = ap.parse_args()
    import jax

    from cgnn_jax.cluster.recursion import unrolled_clustering
    from cgnn_jax.utils.padding import bucket_size, pad_rows

    m = load_models(args)
    split, stop, depth = m["split"], m["stop"], m["max_depth"]

    @jax.jit
    def cluster(p_split: Any, p_stop: Any, h: jax.Array, mask: jax.Array) -> dict:
        return unrolled_clustering(
            lambda *a: split.apply(p_split, *a),
            lambda *a: stop.apply(p_stop, *a),
            h,
            mask,
            depth,
            m["min_size"],
            m["stop_threshold"],
        )

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}; jax backend: {jax.default_backend()} ({jax.devices()[0]})")
    print(
        f"{m['what']}; d = {m['dim']}, max_depth = {depth}, min_size = {m['min_size']}, "
        f"stop_threshold = {m['stop_threshold']}; {args.repeats} timed runs per row"
    )
    rows: dict[str, list[str]] = {r: [] for r in REGIMES}
    medians: dict[str, list[float]] = {r: [] for r in REGIMES}
    minima: dict[str, list[float]] = {r: [] for r in REGIMES}
    cpus: dict[str, list[float]] = {r: [] for r in REGIMES}
    capped = False
    rng = np.random.default_rng(args.seed)
    # n outer, regime inner: a load change on the machine hits both regimes alike
    for n in sizes:
        size = bucket_size(n)
        mask = jax.device_put(np.arange(size) < n)
        for regime in REGIMES:
            h = jax.device_put(pad_rows(make_points(n, regime, m["dim"], rng), size))
            jax.clear_caches()  # every row compiles afresh (same bucket, other regime too)
            t = time.perf_counter()
            compiled = cluster.lower(m["split_params"], m["stop_params"], h, mask).compile()
            compile_s = time.perf_counter() - t

            def run(h: jax.Array = h, mask: jax.Array = mask, fn: Any = compiled) -> dict:
                return jax.block_until_ready(fn(m["split_params"], m["stop_params"], h, mask))

            out = run()  # warm-up, untimed
            c0 = time.process_time()
            st = repeat(run, args.repeats)
            cpu = (time.process_time() - c0) / args.repeats
            cpus[regime].append(cpu)
            medians[regime].append(st["median"])
            minima[regime].append(st["min"])
            levels = int(np.asarray(out["active"]).any(axis=1).sum())
            capped |= levels == depth
            clusters = len(np.unique(np.asarray(out["cluster"])[:n]))
            rows[regime].append(
                f"| {n:,} | {regime} | {size:,} | {compile_s:.2f} | {st['median']:.3f} | "
                f"{st['min']:.3f} | {st['max']:.3f} | {cpu:.3f} | {levels} | {clusters:,} |"
            )
            print(f"  done: n = {n:,}, {regime}", file=sys.stderr, flush=True)
    print()
    print(
        "| n | regime | padded | compile s | median s | min s | max s | CPU s | levels used "
        "| clusters |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for regime in REGIMES:
        print("\n".join(rows[regime]))
    print()
    for regime in REGIMES:
        if sum(n >= 5_000 for n in sizes) >= 2:
            b = fitted_exponent(sizes, medians[regime])
            b_min = fitted_exponent(sizes, minima[regime])
            b_cpu = fitted_exponent(sizes, cpus[regime])
            print(
                f"{regime}: fitted exponent (time ~ n^b): b = {b:.2f} "
                f"(median wall times, n >= 5k; {b_min:.2f} on the min, {b_cpu:.2f} on CPU time)"
            )
    if capped:
        print(
            f"note: 'levels used' = {depth} means the recursion still split at the last level "
            "(cut by --max_depth; all max_depth levels are computed in any case)"
        )


if __name__ == "__main__":
    main()
