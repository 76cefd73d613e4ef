r"""The real TrackML sample against simulated events of its kind, input by input, worst first.

    python benchmarks/sim_vs_real.py [--events=4] [--seed=2025] [--vertex_sigma_z=50] \
        [--track_fraction=0.05] [--cluster_model=staircase] [--data=cgnn_jax/data/real] \
        [--no_scores] [--top=40] [--json_out=out/sim_vs_real.json] [--md_out=out/sim_vs_real.md]

Real: the events under ``--data`` (default: the shipped real sample, ``cgnn_jax/data/real``).
Simulated: ``--events`` μ = 200 events at ``--track_fraction`` of the tracks and a luminous region
of ``--vertex_sigma_z`` mm (``native`` for the simulator's own) and the cells of
``--cluster_model`` (:data:`cgnn_jax.sim.response.CLUSTER_MODELS`; default: the simulator's), reduced as the real sample was
(:func:`cgnn_jax.analysis.sim_vs_real.half_phi`: the particles whose momentum points to φ >= 0 and the
noise hits at φ >= 0, so 5 % of the tracks become 2.5 % of the event at the 5 % density). For every
input of :func:`cgnn_jax.analysis.sim_vs_real.event_samples` (hit features per volume, the cell-derived
direction against the true one, noise-hit positions, pair features on true consecutive pairs and on
false pairs, per-particle x–y and r–z residuals, z0, vertices, p_T, η) and, unless ``--no_scores``,
the shipped model's edge-filter and GNN scores on true and false edges of its input graph: the
two-sample Kolmogorov–Smirnov distance, with the distance that samples of these sizes from one
distribution exceed 5 % of the time (``KS 95 %``; the real sample is small, so only rows well
above it are differences). Prints the table worst first (``--top`` rows; all by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cgnn_jax.analysis.sim_vs_real import Samples, event_samples, half_phi, ks_table, markdown, pool
from cgnn_jax.data import REAL_SAMPLE_DIR
from cgnn_jax.io import atomic_write, iter_events
from cgnn_jax.sim.dataset import simulated_events
from cgnn_jax.sim.response import CLUSTER_MODELS
from cgnn_jax.sim.simulate import SimConfig


def score_samples(events: list, pipe) -> Samples:
    """The shipped model's edge-filter probability and GNN edge score on the true and false
    edges of its input graph (``Pipeline.stage_outputs``), pooled over ``events``."""
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for ev in events:
        o = pipe.stage_outputs(ev, cluster=False)
        pid = np.asarray(o["pid"])
        s, r = np.asarray(o["senders"]), np.asarray(o["receivers"])
        true = (pid[s] == pid[r]) & (pid[s] != 0)
        for kind, m in (("true", true), ("false", ~true)):
            for name, key in (("filter", "edge_prob"), ("gnn", "edge_score")):
                out.setdefault((f"scores {kind} edges", name), []).append(
                    np.asarray(o[key], np.float64)[m]
                )
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(REAL_SAMPLE_DIR), help="the real events")
    ap.add_argument("--events", type=int, default=4, help="simulated events")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--track_fraction", type=float, default=0.05)
    ap.add_argument(
        "--vertex_sigma_z", default="50", help="luminous region (mm) or 'native' (about 6 mm)"
    )
    ap.add_argument(
        "--cluster_model",
        default=SimConfig().cluster_model,
        help=f"how simulated hits fire cells: one of {', '.join(CLUSTER_MODELS)}",
    )
    ap.add_argument("--no_scores", action="store_true", help="leave out the model's scores")
    ap.add_argument("--top", type=int, default=None, help="print only the worst rows")
    ap.add_argument("--json_out", default=None)
    ap.add_argument("--md_out", default=None)
    args = ap.parse_args()
    if args.events < 1:
        raise SystemExit(f"--events must be >= 1, got {args.events}")
    if not 0 < args.track_fraction <= 1:
        raise SystemExit(f"--track_fraction must be in (0, 1], got {args.track_fraction}")
    sigma: float | None
    if args.vertex_sigma_z == "native":
        sigma = None
    else:
        try:
            sigma = float(args.vertex_sigma_z)
        except ValueError:
            sigma = -1.0
        if not 0 <= sigma < float("inf"):
            raise SystemExit(
                f"--vertex_sigma_z must be a length >= 0 (mm) or 'native', got "
                f"{args.vertex_sigma_z!r}"
            )
    if args.cluster_model not in CLUSTER_MODELS:
        raise SystemExit(
            f"--cluster_model must be one of {', '.join(CLUSTER_MODELS)}, got {args.cluster_model!r}"
        )
    if not Path(args.data).exists():
        raise SystemExit(f"--data={args.data}: no such file or directory")

    t0 = time.perf_counter()
    real_events = list(iter_events(args.data))
    if not real_events:
        raise SystemExit(f"--data={args.data}: no events")
    sim_events = [
        half_phi(e)
        for e in simulated_events(
            args.events,
            args.seed,
            track_fraction=args.track_fraction,
            vertex_sigma_z=sigma,
            config=SimConfig(cluster_model=args.cluster_model),
        )
    ]
    real = pool(event_samples(e) for e in real_events)
    sim = pool(event_samples(e) for e in sim_events)
    scores_note = "left out (--no_scores)"
    if not args.no_scores:
        try:
            from cgnn_jax.inference import Pipeline

            pipe = Pipeline.restore()
            real.update(score_samples(real_events, pipe))
            sim.update(score_samples(sim_events, pipe))
            scores_note = "the shipped model (Pipeline.restore())"
        except Exception as e:  # the model is optional here: say why and go on
            scores_note = f"left out: {type(e).__name__}: {e}"
            print(f"model scores {scores_note}", file=sys.stderr)
    table = ks_table(real, sim)
    seconds = time.perf_counter() - t0

    region = "native" if sigma is None else f"{sigma:g} mm"
    head = (
        f"Real: {len(real_events)} event(s) from {args.data} "
        f"({sum(e.n_hits for e in real_events):,} hits). Simulated: {args.events} events "
        f"(seed {args.seed}, track_fraction={args.track_fraction}, vertex_sigma_z={region}, "
        f"cluster_model={args.cluster_model}, "
        f"φ >= 0 half: {sum(e.n_hits for e in sim_events):,} hits). Scores: {scores_note}. "
        f"{len(table)} rows, {int((table.ks > table.ks_95).sum())} above KS 95 %; {seconds:.0f} s."
    )
    md = head + "\n\n" + markdown(table, args.top)
    print(md)
    for out in (args.md_out, args.json_out):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    if args.md_out:
        with atomic_write(args.md_out, "w") as f:
            f.write(head + "\n\n" + markdown(table) + "\n")
    if args.json_out:
        with atomic_write(args.json_out, "w") as f:
            json.dump(
                {
                    "real": args.data,
                    "simulated": {
                        "events": args.events,
                        "seed": args.seed,
                        "track_fraction": args.track_fraction,
                        "vertex_sigma_z": sigma,
                        "cluster_model": args.cluster_model,
                        "half_phi": True,
                    },
                    "scores": scores_note,
                    "rows": table.to_dict(orient="records"),
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
