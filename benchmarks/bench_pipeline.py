r"""The whole clustering GNN on a full event, stage by stage: time (compile apart) and peak memory.

    python benchmarks/bench_pipeline.py [--checkpoint=PATH] [--mu=200] [--repeats=3] [--events=1]
    python benchmarks/bench_pipeline.py --mu=300 --full_event_only   # peak memory at μ = 300

``--checkpoint`` is a :class:`cgnn_jax.inference.Pipeline` checkpoint or training workdir (default:
the pretrained model shipped in ``cgnn_jax/pretrained/default``); ``--random_init`` uses untrained
parameters of ``configs/default.py``'s architecture instead (the times of the architecture, not of
the trained model: an untrained edge filter keeps another number of edges).

Stages, each on the output of the one before (the event is reconstructed from the CSV files it
was written to, as ``launch/reconstruct.py`` does): simulate the event, write its TrackML CSV files,
read them back, hit features (``prepare_event``), graph (stage 1: embedding, kd-tree kNN graph,
pair features and edge filter; ``GNNStage.graph``), GNN (stage 2; ``GNNStage.outputs``),
clustering (stage 3, Split/Stop: ``Stage3.outputs``, ``Stage3.tracks`` and the track
ids, as ``Pipeline.reconstruct`` does them), the TrackML score, and the DBSCAN baseline
(``reconstruct_baseline(hits, "dbscan")``) on the same event.

Time: per stage, the first call (on the first event: jit compilation + run for the JAX stages,
cache warm-up for the others) apart from the median (min, max) of the next ``--repeats`` calls on
every event (``--events`` events; the first call on each later event is an untimed warm-up, as a
new event may fall in another padding bucket). "compile" is first call - median.

Memory, per call, from Linux's per-process resident-set high-water mark (``VmHWM`` in
``/proc/self/status``), reset before each call (``echo 5 > /proc/self/clear_refs``, after
``malloc_trim`` hands freed heap back): "growth" is the peak resident memory during the call
minus the resident memory just before it (the stage's own transient + kept memory; the stage's
inputs, earlier results, Python, jax and the model are in the baseline, not the growth), "process
peak" the whole process's peak during the stage's calls. Where the reset is not possible the
growth is the rise of ``getrusage``'s all-time peak, a lower bound (the report says which).

The full-event line: the hits reconstructed in the sum of the median times of features, graph,
GNN and clustering, and the peak memory of a *fresh* Python process that reads the event's CSV
files, restores the model and runs ``Pipeline.reconstruct`` on it twice (the first call compiles):
the memory a user needs to reconstruct such an event (``ru_maxrss`` of that process, which
includes Python, jax, the model and XLA's compilation). The same process checks that its track ids
equal the stage-by-stage ones. ``--full_event_only`` (e.g. with ``--mu=300``) runs only that.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

REPO = Path(__file__).resolve().parent.parent
STAGES = (
    "simulate",
    "write CSV",
    "read CSV",
    "features",
    "graph (stage 1)",
    "GNN (stage 2)",
    "clustering (stage 3)",
    "score",
    "DBSCAN baseline",
)
RECONSTRUCT_STAGES = ("features", "graph (stage 1)", "GNN (stage 2)", "clustering (stage 3)")
GIB = 2**30


# --------------------------------------------------------------------------- memory


def _status_gib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status`` (GiB), None if absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Hand freed heap back to the OS (glibc), so the resident memory before a call is honest."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    """Reset this process's resident-set high-water mark (Linux >= 4.0); whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def measure_call(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``fn()`` once: its result and ``{"s", "growth_gib", "peak_gib", "method"}``.

    ``growth_gib`` is the peak resident memory during the call minus the resident memory just
    before it (``VmHWM`` reset before the call; fallback: the rise of ``ru_maxrss``);
    ``peak_gib`` the process's peak resident memory during the call (fallback: all-time peak).
    """
    gc.collect()
    _malloc_trim()
    rss0 = _status_gib("VmRSS")
    exact = rss0 is not None and _reset_peak()
    max0 = _ru_maxrss_gib()
    t = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t
    if exact:
        peak = _status_gib("VmHWM") or 0.0
        growth = max(peak - rss0, 0.0)
        method = "VmHWM"
    else:
        peak = _ru_maxrss_gib()
        growth = max(peak - max0, 0.0)
        method = "ru_maxrss"
    return out, {"s": s, "growth_gib": growth, "peak_gib": peak, "method": method}


def summarize(first: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the first call's and the timed calls' :func:`measure_call` figures."""
    ts = [r["s"] for r in runs]
    gs = [r["growth_gib"] for r in runs]
    med = statistics.median(ts)
    return {
        "first_s": first["s"],
        "compile_s": max(first["s"] - med, 0.0),
        "median_s": med,
        "min_s": min(ts),
        "max_s": max(ts),
        "n": len(ts),
        "growth_median_gib": statistics.median(gs),
        "growth_min_gib": min(gs),
        "growth_max_gib": max(gs),
        "growth_first_gib": first["growth_gib"],
        "peak_gib": max([first["peak_gib"], *(r["peak_gib"] for r in runs)]),
        "method": first["method"],
    }


# --------------------------------------------------------------------------- stages


def random_pipeline(config: Any = None, seed: int = 0) -> Any:
    """A :class:`Pipeline` with untrained (freshly initialised) parameters of ``config``'s
    architecture (default: ``configs/default.py``)."""
    import jax
    import jax.numpy as jnp

    from cgnn_jax.features import n_pair_features
    from cgnn_jax.features.hits import n_features
    from cgnn_jax.graph.batch import padded_graph
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.models.factory import (
        create_embedding,
        create_filter,
        create_gnn,
        create_split_stop,
    )

    if config is None:
        sys.path.insert(0, str(REPO))
        from configs.default import get_config

        config = get_config()
    cc = config.cluster  # configs/ hold every default
    f, d = n_features(), config.embedding.dim
    ks = jax.random.split(jax.random.PRNGKey(seed), 5)
    # one jit per init (eager init would compile every small op apart: slow)
    emb = jax.jit(create_embedding(config).init)(ks[0], jnp.zeros((1, f)))
    i0, i1 = jnp.zeros(1, jnp.int32), jnp.ones(1, jnp.int32)
    z = jnp.zeros((1, n_pair_features()))
    filt = jax.jit(create_filter(config).init)(ks[1], jnp.zeros((2, f)), z, i0, i1)
    g = padded_graph(np.zeros((4, f + d), np.float32), np.array([0, 1]), np.array([1, 0]))
    gnn = jax.jit(create_gnn(config.gnn).init)(ks[2], g.graph, g.edge_mask, g.node_mask)
    h_dim = config.gnn.out_dim + (f if cc.inputs == "gnn+features" else 0)
    split, stop = create_split_stop(cc)
    h, seg, mask = jnp.zeros((8, h_dim)), jnp.zeros(8, jnp.int32), jnp.ones(8, bool)
    params = {
        "embedding": emb,
        "filter": filt,
        "input_embedding": emb,
        "gnn": gnn,
        "split": jax.jit(split.init, static_argnums=4)(ks[3], h, seg, mask, 8),
        "stop": jax.jit(stop.init, static_argnums=4)(ks[4], h, seg, mask, 8),
    }
    return Pipeline(config, config, params, {"note": "untrained (random init)"})


def clustering_stage(pipe: Any, ev: Any, gnn: tuple, graph: dict) -> np.ndarray:
    """Stage 3 as :meth:`Pipeline.reconstruct` runs it: the atoms (``gnn = (out, edge_score)``
    from :meth:`GNNStage.outputs`), ``h``, Split/Stop, any iterative re-clustering and the
    track extension (:meth:`Stage3.tracks`), track ids ``[n]``."""
    stage3 = pipe.for_hits(ev.n).stage3  # its dense variant on a dense event
    iterative = stage3.cluster_config.get("iterative_rounds", 0) > 0
    st3 = stage3.outputs(
        ev, *gnn, graph["senders"], graph["receivers"], votes=iterative
    )  # Stop's votes only where read, as reconstruct asks
    return stage3.tracks(ev, st3)


def measure_stages(
    pipe: Any,
    mu: float,
    repeats: int = 3,
    events: int = 1,
    seed: int = 4242,
    workdir: str | Path | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Time and memory of every stage of :data:`STAGES` on ``events`` simulated events.

    Returns ``{"rows": {stage: summarize(...)}, "n_hits": [per event], "scores": {"cgnn",
    "dbscan"}: [per event], "track_id": the last event's track ids, "event_dir": its CSV folder,
    "event_id": its id, "edges": [per event]}``.
    """
    if repeats < 1 or events < 1:
        raise ValueError(f"repeats ({repeats}) and events ({events}) must be >= 1")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bench_pipeline_"))
    gc.collect()
    gc.freeze()  # what exists now (modules, the model) is left out of the per-call collections
    try:
        return _measure_stages(pipe, mu, repeats, events, seed, workdir, log)
    finally:
        gc.unfreeze()


def _measure_stages(
    pipe: Any,
    mu: float,
    repeats: int,
    events: int,
    seed: int,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    import pandas as pd

    from cgnn_jax.baselines import reconstruct_baseline
    from cgnn_jax.inference import as_prepared
    from cgnn_jax.io import read_event, write_event
    from cgnn_jax.metrics import score_event
    from cgnn_jax.sim import simulate_event

    first: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {s: [] for s in STAGES}
    res: dict[str, Any] = {"n_hits": [], "edges": [], "scores": {"cgnn": [], "dbscan": []}}

    for k in range(events):
        ev_seed = seed + k
        ev_dir = workdir / f"event{ev_seed}"
        state: dict[str, Any] = {}

        def submission(tid: np.ndarray, st: dict = state) -> pd.DataFrame:
            return pd.DataFrame({"hit_id": st["event"].hits["hit_id"].to_numpy(), "track_id": tid})

        steps: dict[str, tuple[Callable[[], Any], str | None]] = {
            "simulate": (lambda s=ev_seed: simulate_event(s, mu, event_id=s), "sim"),
            "write CSV": (lambda st=state, d=ev_dir: write_event(st["sim"], d), None),
            "read CSV": (lambda d=ev_dir, s=ev_seed: read_event(d, s), "event"),
            "features": (lambda st=state: as_prepared(st["event"]), "ev"),
            "graph (stage 1)": (
                lambda st=state: pipe.for_hits(st["ev"].n).stage2.graph(st["ev"]),
                "graph",
            ),
            "GNN (stage 2)": (
                lambda st=state: pipe.for_hits(st["ev"].n).stage2.outputs(
                    st["ev"], st["graph"]["senders"], st["graph"]["receivers"]
                ),
                "gnn",
            ),
            "clustering (stage 3)": (
                lambda st=state: clustering_stage(pipe, st["ev"], st["gnn"], st["graph"]),
                "tid",
            ),
            "score": (
                lambda st=state: score_event(st["event"].truth, submission(st["tid"])),
                "score",
            ),
            "DBSCAN baseline": (
                lambda st=state: reconstruct_baseline(st["event"].hits, "dbscan"),
                "dbscan",
            ),
        }
        for name in STAGES:
            fn, key = steps[name]
            if key is not None:
                state.pop(key, None)  # the stage's previous output is not held during its calls
            out, m = measure_call(fn)
            if k == 0:
                first[name] = m
            for _ in range(repeats):
                out = None
                out, m = measure_call(fn)
                runs[name].append(m)
            if key is not None:
                state[key] = out
            log(f"event {k + 1}/{events}: {name} done")
        res["n_hits"].append(int(state["ev"].n))
        res["edges"].append(len(state["graph"]["senders"]))
        res["scores"]["cgnn"].append(float(state["score"]))
        res["scores"]["dbscan"].append(
            float(score_event(state["event"].truth, submission(state["dbscan"])))
        )
        res["track_id"], res["event_dir"], res["event_id"] = state["tid"], ev_dir, ev_seed
    res["rows"] = {name: summarize(first[name], runs[name]) for name in STAGES}
    return res


def stage_table(rows: dict[str, dict[str, Any]]) -> str:
    """The markdown table of :func:`measure_stages`'s rows."""
    lines = [
        "| stage | first call s | compile s | median s | min s | max s | growth GiB median "
        "(min, max) | growth GiB first call | process peak GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['first_s']:.3f} | {r['compile_s']:.3f} | {r['median_s']:.3f} | "
            f"{r['min_s']:.3f} | {r['max_s']:.3f} | {r['growth_median_gib']:.3f} "
            f"({r['growth_min_gib']:.3f}, {r['growth_max_gib']:.3f}) | "
            f"{r['growth_first_gib']:.3f} | {r['peak_gib']:.2f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- fresh process


def _child(args: argparse.Namespace) -> None:
    """In a fresh process: read the event, restore the model, reconstruct twice; print JSON."""
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.io import read_event

    t0 = time.perf_counter()
    pipe = Pipeline.restore(args.checkpoint)
    before = _ru_maxrss_gib()
    event = read_event(args.child_event_dir, args.child_event_id, parts=("hits", "cells"))
    t1 = time.perf_counter()
    pipe.reconstruct(event)
    t2 = time.perf_counter()
    tid = pipe.reconstruct(event)
    t3 = time.perf_counter()
    ref = Path(args.child_event_dir) / "stages_track_id.npy"
    same = bool(np.array_equal(np.load(ref), tid)) if ref.exists() else None
    out = {
        "n_hits": int(event.n_hits),
        "restore_read_s": t1 - t0,
        "first_s": t2 - t1,
        "run_s": t3 - t2,
        "peak_gib": _ru_maxrss_gib(),
        "before_event_gib": before,
        "same_track_ids": same,
    }
    print("CHILD_RESULT " + json.dumps(out))


def fresh_process_reconstruct(
    checkpoint: str | Path | None, event_dir: Path, event_id: int
) -> dict[str, Any]:
    """Run :func:`_child` in a new Python process; its result dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--child_event_dir={event_dir}"]
    cmd += [f"--child_event_id={event_id}"]
    if checkpoint is not None:
        cmd.append(f"--checkpoint={checkpoint}")
    p = subprocess.run(cmd, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("CHILD_RESULT "):
            return json.loads(line[len("CHILD_RESULT ") :])
    raise RuntimeError(f"fresh-process reconstruct failed ({p.returncode}): {p.stderr[-2000:]}")


# --------------------------------------------------------------------------- main


def _header(jax: Any, pipe: Any, what: str) -> list[str]:
    c, cc = pipe.config, pipe.config.cluster
    s1 = pipe.stage1_config
    return [
        f"machine: {machine()}; jax {jax.__version__}, backend {jax.default_backend()} "
        f"({jax.devices()[0]})",
        f"model: {what}; embedding {tuple(s1.embedding.hidden)} -> R^{s1.embedding.dim}, "
        f"graph k = {s1.graph.k}, filter {tuple(s1.filter.hidden)}; GNN {c.gnn.num_layers} x "
        f"{c.gnn.hidden} -> R^{c.gnn.out_dim}; Split {tuple(cc.split_hidden)} / Stop "
        f"{tuple(cc.stop_hidden)}, max_depth {cc.max_depth}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=None, help="Pipeline checkpoint (default: pretrained)")
    ap.add_argument("--random_init", action="store_true", help="untrained default architecture")
    ap.add_argument("--mu", type=float, default=200.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--events", type=int, default=1)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--full_event_only", action="store_true", help="only the fresh-process run")
    ap.add_argument("--no_fresh_process", action="store_true", help="skip the fresh-process run")
    ap.add_argument("--child_event_dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child_event_id", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_event_dir:
        _child(args)
        return
    import jax

    from cgnn_jax.inference import Pipeline
    from cgnn_jax.inference.checkpoint import CheckpointError

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        checkpoint = args.checkpoint
        if args.random_init:
            pipe = random_pipeline(seed=args.seed)
            checkpoint = str(Path(tmp) / "random_pipeline")
            pipe.save(Path(checkpoint) / "checkpoints")
            what = "untrained, configs/default.py architecture (random init)"
        else:
            try:
                pipe = Pipeline.restore(checkpoint)
            except CheckpointError as e:
                sys.exit(f"bench_pipeline: {e}; pass --checkpoint=PATH or --random_init")
            what = f"checkpoint {checkpoint or 'pretrained default'}"
        print("\n".join(_header(jax, pipe, what)))

        if args.full_event_only:
            from cgnn_jax.io import write_event
            from cgnn_jax.sim import simulate_event

            ev_dir = Path(tmp) / "event"
            write_event(simulate_event(args.seed, args.mu, event_id=args.seed), ev_dir)
            log("reconstructing in a fresh process ...")
            r = fresh_process_reconstruct(checkpoint, ev_dir, args.seed)
            print(_full_event_line(args.mu, r["n_hits"], r["run_s"], "one reconstruct call", r))
            return

        log(f"measuring stages (mu = {args.mu:g}, {args.events} event(s), {args.repeats} repeats)")
        res = measure_stages(
            pipe, args.mu, args.repeats, args.events, args.seed, Path(tmp) / "events", log
        )
        rows = res["rows"]
        n_hits, edges = np.mean(res["n_hits"]), np.mean(res["edges"])
        print(
            f"event(s): mu = {args.mu:g}, {len(res['n_hits'])} event(s), {n_hits:,.0f} hits, "
            f"{edges:,.0f} GNN input edges ({edges / n_hits:.1f} per hit); first call on event 1 "
            f"apart, then {args.repeats} timed call(s) per event"
        )
        print(
            f"score: cgnn {np.mean(res['scores']['cgnn']):.3f}, DBSCAN "
            f"{np.mean(res['scores']['dbscan']):.3f} (mean over events)"
        )
        print()
        print(stage_table(rows))
        print()
        method = rows["features"]["method"]
        print(
            "memory: growth = peak resident memory during a call minus the resident memory just "
            "before it (inputs, Python, jax and the model are in that baseline); process peak = "
            "the whole process's peak resident memory during the stage's calls; "
            + (
                "per call from /proc/self/status VmHWM, reset before each call."
                if method == "VmHWM"
                else "the high-water mark could not be reset: growth is the rise of getrusage's "
                "all-time peak, a lower bound."
            )
        )
        total = sum(rows[s]["median_s"] for s in RECONSTRUCT_STAGES)
        fresh = None
        if not args.no_fresh_process:
            np.save(res["event_dir"] / "stages_track_id.npy", res["track_id"])
            log("reconstructing in a fresh process ...")
            fresh = fresh_process_reconstruct(checkpoint, res["event_dir"], res["event_id"])
        print(
            _full_event_line(
                args.mu, int(n_hits), total, "sum of stages features..clustering", fresh
            )
        )
        if fresh is None:
            peak = max(rows[s]["peak_gib"] for s in RECONSTRUCT_STAGES)
            print(
                f"(no fresh-process run: the peak memory of this benchmark process during those "
                f"stages is {peak:.2f} GiB)"
            )


def _full_event_line(
    mu: float, n_hits: int, seconds: float, what: str, fresh: dict[str, Any] | None
) -> str:
    s = (
        f"full event (mu = {mu:g}): {n_hits:,} hits reconstructed in {seconds:.2f} s after "
        f"compilation ({what})"
    )
    if fresh is None:
        return s
    same = fresh["same_track_ids"]
    check = "" if same is None else f"; same track ids as stage by stage: {'yes' if same else 'NO'}"
    return (
        f"{s}, peak memory {fresh['peak_gib']:.2f} GiB\n"
        f"(peak memory: ru_maxrss of a fresh process that imports jax, restores the model "
        f"(peak {fresh['before_event_gib']:.2f} GiB so far), reads the event's CSV files and calls "
        f"Pipeline.reconstruct twice: first call {fresh['first_s']:.2f} s (compile + run), then "
        f"{fresh['run_s']:.2f} s{check})"
    )


if __name__ == "__main__":
    main()
