r"""Stage-2 GNN inference on a full μ = 200 event: time (compile apart) and peak memory.

    python benchmarks/bench_gnn.py --checkpoint=workdirs/stage2 [--repeats=5]

Steps (each the median (min, max) over repeats on the same event after a first, compiling call):
the stage-1 input (embedding + input graph), building and padding the whole-event graph, and the
GNN forward pass (jit, one padded graph). Peak memory is the process's peak RSS
(``resource.getrusage``), which includes simulating the event.
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
    ap.add_argument("--checkpoint", required=True, help="stage-2 workdir or checkpoint folder")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()
    import jax

    from cgnn_jax.graph.batch import padded_graph
    from cgnn_jax.inference.events import prepare_event
    from cgnn_jax.inference.stage2 import Stage2, gnn_inputs, input_graph, input_threshold
    from cgnn_jax.sim import simulate_event

    model = Stage2.restore(args.checkpoint)
    s1 = model.stage1
    ev = prepare_event(simulate_event(args.seed))
    rss_before = peak_rss_gib()
    kind = model.config.gnn.input_graph

    def stage1_inputs():
        return gnn_inputs(ev, s1), input_graph(
            ev, s1, kind, threshold=input_threshold(model.config.gnn)
        )

    x, (s, r) = stage1_inputs()
    g = padded_graph(x, s, r)

    def forward():
        return jax.block_until_ready(model.apply_padded(g))

    t = time.perf_counter()
    forward()
    compile_s = time.perf_counter() - t
    steps = {
        "stage-1 inputs": stage1_inputs,
        "pad graph": lambda: padded_graph(x, s, r),
        "GNN forward": forward,
        "embed (all)": lambda: model.embed(ev),
    }
    c = model.config.gnn
    print(f"machine: {machine()}; jax backend: {jax.default_backend()}")
    print(
        f"event: {ev.n:,} hits; {kind} input graph {len(s):,} edges ({len(s) / ev.n:.1f} per hit); "
        f"padded to {g.graph.nodes.shape[0]:,} nodes / {len(g.graph.senders):,} edges; GNN "
        f"{c.num_layers} x {c.hidden} (kernel {c.kernel_hidden}) -> R^{c.out_dim}"
    )
    for name, fn in steps.items():
        st = repeat(fn, args.repeats)
        print(
            f"  {name:15s} median {st['median']:.3f} s (min {st['min']:.3f}, max {st['max']:.3f})"
        )
    print(
        f"  first GNN call (compile + run): {compile_s:.2f} s; peak memory {peak_rss_gib():.2f} GiB "
        f"({rss_before:.2f} GiB before the GNN)"
    )


if __name__ == "__main__":
    main()
