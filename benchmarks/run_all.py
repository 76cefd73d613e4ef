r"""Run the benchmark scripts and collect their output into one markdown report.

    python benchmarks/run_all.py --out=benchmarks/REPORT.md [--checkpoint=workdirs/stage1]
        [--pipeline=workdirs/default]

Each script prints its own figures (medians of repeated runs with min and max); this harness
records the machine, the command and the output of each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

HERE = Path(__file__).resolve().parent


def as_markdown(text: str) -> list[str]:
    """A script's output as report lines: markdown tables (runs of lines starting with ``|``)
    as they are, so they render; everything else in code blocks, verbatim."""
    out: list[str] = []
    block: list[str] = []
    table = False
    for line in [*text.splitlines(), None]:
        is_table = line is not None and line.lstrip().startswith("|")
        if line is None or (is_table != table and block):
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            if block:
                out += [*block, ""] if table else ["```", *block, "```", ""]
            block = []
        if line is not None:
            block.append(line)
            table = is_table
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(HERE / "REPORT.md"))
    ap.add_argument(
        "--checkpoint", default=None, help="stage 1 for bench_graph.py (default: shipped)"
    )
    ap.add_argument(
        "--pipeline", default=None, help="Pipeline for bench_pipeline.py (default: pretrained)"
    )
    args = ap.parse_args()
    runs = [
        ["bench_simulate.py"],
        ["bench_launch.py"],
        ["bench_score.py"],
        ["baselines_score.py", "--test_events=2"],
    ]
    runs.append(["bench_cluster_scaling.py", "--repeats=3"])
    pipe_flag = [f"--checkpoint={args.pipeline}"] if args.pipeline else []
    runs.append(["bench_pipeline.py", "--mu=200", "--repeats=3", *pipe_flag])
    runs.append(["bench_pipeline.py", "--mu=300", "--full_event_only", *pipe_flag])
    graph_flag = [f"--checkpoint={args.checkpoint}"] if args.checkpoint else []
    runs.append(["bench_graph.py", *graph_flag])
    import jax

    lines = [
        "# cgnn_jax benchmark report",
        "",
        f"- machine: {machine()}",
        f"- jax backend: {jax.default_backend()}",
        f"- jax version: {jax.__version__}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        "",
    ]
    for cmd in runs:
        print(f"running {' '.join(cmd)} ...", flush=True)
        t = time.perf_counter()
        p = subprocess.run(
            [sys.executable, str(HERE / cmd[0]), *cmd[1:]], capture_output=True, text=True
        )
        lines += [
            f"## `python benchmarks/{' '.join(cmd)}` ({time.perf_counter() - t:.0f} s)",
            "",
            *as_markdown(p.stdout.strip() or "(no output)"),
        ]
        if p.returncode:
            lines += [f"exit code {p.returncode}:", "```", p.stderr.strip()[-2000:], "```", ""]
    from cgnn_jax.io import atomic_write

    with atomic_write(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"report written to {args.out}")


if __name__ == "__main__":
    main()
