r"""The shipped pipeline with another stage 1 (and GNNs trained on it) swapped in: TrackML scores.

    python benchmarks/stage_swap.py --stage1=W1 [--dense=W2] [--sparse=W3] \
        [--events=full,fullw,n10,w10,real,like] [--sparse_cut=0.005] [--calibrate_events=2] \
        [--save=DIR] [--json_out=PATH]

A probe for a new stage 1 before the whole recipe is retrained: the shipped model
(``cgnn_jax/pretrained/default``) with the stage 1 of the training workdir ``--stage1``
(embedding, filter, what its training learned: cut, zone or module map) in place of its own, its
GNNs and Split/Stop kept (``map``); with ``--dense`` (``--sparse``), also the dense (sparse)
variant's GNN from that stage-2 workdir, with the new stage 1's embedding as its input
(``+dense``, ``+both``). The GNN input graph: the new stage 1's learned cut for the dense
variant, ``--sparse_cut`` for the sparse one (events below the model's ``dense_min_hits``).
With ``--calibrate_events=N`` the last of these pipelines also gets its layer merge and track
extension chosen again per variant (:func:`cgnn_jax.train.stage3.calibrate_merge`) on ``N``
validation events (full, and 10 % of the tracks, in the luminous region of the new stage 1's
training events; seeds apart from the test events): ``+cal``. ``--save``: write that last
pipeline as a checkpoint (for ``launch/diagnose.py --checkpoint``).

Events (comma-separated): ``full`` 2 simulated full μ = 200 events (seed 99, as
``launch/diagnose.py``), ``fullw`` the same seeds with a 50 mm luminous region, ``n10`` / ``w10``
10 % of the tracks at the default / 50 mm region, ``real`` the shipped real sample, ``like`` 3
simulated events like it (:func:`cgnn_jax.analysis.sim_vs_real.like_real_sample`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

EVENT_SETS = ("full", "fullw", "n10", "w10", "real", "like")


def _events(which: str) -> list:
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    if which == "real":
        from cgnn_jax.data import real_sample

        return [real_sample()]
    if which == "like":
        from cgnn_jax.analysis.sim_vs_real import like_real_sample

        return [like_real_sample(event_seed(99, i), 1 + i) for i in range(3)]
    fraction = 0.1 if which in ("n10", "w10") else 1.0
    sigma_z = 50.0 if which in ("fullw", "w10") else None
    return [
        simulate_event(
            event_seed(99, i),
            200.0,
            track_fraction=fraction,
            vertex_sigma_z=sigma_z,
            event_id=1 + i,
        )
        for i in range(2)
    ]


def _swap_stage1(pipe, stage1, input_threshold: float):
    """``pipe`` (without its dense variant) on ``stage1``
    (:func:`cgnn_jax.inference.variants.with_stage1`); the GNN's input cut ``input_threshold``
    (< 0: the stage's learned cut)."""
    from cgnn_jax.inference.variants import with_stage1

    swapped = with_stage1(dataclasses.replace(pipe, dense=None, dense_min_hits=0), stage1)
    config = pipe.config.copy_and_resolve_references()
    with config.unlocked():
        config.gnn.input_threshold = float(input_threshold)
    return dataclasses.replace(
        swapped, config=config, dense=pipe.dense, dense_min_hits=pipe.dense_min_hits
    )


def pipelines(stage1_dir: str, dense_dir: str | None, sparse_dir: str | None, sparse_cut: float):
    """``{name: Pipeline}``: the shipped model and its variants with the new stages."""
    from cgnn_jax.inference import Pipeline, Stage2
    from cgnn_jax.inference.stage1 import Stage1

    base = Pipeline.restore()
    s1 = Stage1.restore(stage1_dir)
    new = _swap_stage1(base, s1, sparse_cut)
    if base.dense is not None:
        new = dataclasses.replace(new, dense=_swap_stage1(base.dense, s1, -1.0))
    out = {"shipped": base, "map": new}
    emb = {"input_embedding": s1.emb_params}
    if dense_dir and new.dense is not None:
        gnn = Stage2.restore(dense_dir).params
        dense = dataclasses.replace(new.dense, params={**new.dense.params, "gnn": gnn, **emb})
        out["+dense"] = new = dataclasses.replace(new, dense=dense)
    if sparse_dir:
        gnn = Stage2.restore(sparse_dir).params
        out["+both"] = dataclasses.replace(new, params={**new.params, "gnn": gnn, **emb})
    return out


def calibrated(pipe, stage1_config, n_events: int, log=print):
    """``pipe`` with each variant's layer merge and extension calibrated on ``n_events``
    validation events (full ones for the dense variant, 10 % of the tracks for the other)."""
    from cgnn_jax.sim.dataset import simulated_events
    from cgnn_jax.train.stage3 import calibrate_merge

    d = stage1_config.data
    sz = d.get("vertex_sigma_z", None)
    sz = tuple(sz) if isinstance(sz, (list, tuple)) else sz
    seed = int(d.seed) + 7919  # the training recipe's validation seed

    def events(fraction):
        return simulated_events(n_events, seed, d.mu, fraction, 1000, vertex_sigma_z=sz)

    main = dataclasses.replace(pipe, dense=None, dense_min_hits=0)
    main = calibrate_merge(main, events(0.1), log=log)
    if pipe.dense is None:
        return main
    return main.with_dense(calibrate_merge(pipe.dense, events(1.0), log=log), pipe.dense_min_hits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stage1", required=True, help="stage-1 training workdir")
    ap.add_argument("--dense", default=None, help="stage-2 workdir: the dense variant's GNN")
    ap.add_argument("--sparse", default=None, help="stage-2 workdir: the sparse variant's GNN")
    ap.add_argument("--events", default="full,real", help=f"comma-separated of {EVENT_SETS}")
    ap.add_argument("--sparse_cut", type=float, default=0.005)
    ap.add_argument("--calibrate_events", type=int, default=0)
    ap.add_argument("--save", default=None, help="write the last pipeline here (a folder)")
    ap.add_argument("--json_out", default=None)
    args = ap.parse_args()
    sets = args.events.split(",")
    bad = [s for s in sets if s not in EVENT_SETS]
    if bad:
        raise SystemExit(f"--events: unknown set {bad[0]!r}; valid: {', '.join(EVENT_SETS)}")
    import pandas as pd

    from cgnn_jax.metrics import score_event

    print(f"machine: {machine()}", flush=True)
    pipes = pipelines(args.stage1, args.dense, args.sparse, args.sparse_cut)
    last = list(pipes.values())[-1]
    if args.calibrate_events > 0:
        from cgnn_jax.inference.stage1 import Stage1

        s1c = Stage1.restore(args.stage1).config
        pipes["+cal"] = last = calibrated(last, s1c, args.calibrate_events)
    if args.save:
        last.save(Path(args.save) / "checkpoints")
        print(f"saved the last pipeline to {args.save}", flush=True)
    rows = []
    for which in sets:
        events = _events(which)
        for name, pipe in pipes.items():
            t = time.perf_counter()
            scores = []
            for ev in events:
                tid = np.asarray(pipe.reconstruct(ev))
                sub = pd.DataFrame({"hit_id": ev.hits["hit_id"].to_numpy(), "track_id": tid + 1})
                scores.append(float(score_event(ev.truth, sub)))
            row = {"events": which, "pipeline": name, "scores": scores,
                   "score": float(np.mean(scores)), "seconds": time.perf_counter() - t}  # fmt: skip
            rows.append(row)
            print(f"{which:>6} | {name:>8} | score {row['score']:.3f} ("
                  + ", ".join(f"{s:.3f}" for s in scores) + f") | {row['seconds']:.1f} s",
                  flush=True)  # fmt: skip
    if args.json_out:
        tmp = f"{args.json_out}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
        os.replace(tmp, args.json_out)


if __name__ == "__main__":
    main()
