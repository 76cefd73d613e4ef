"""Ctrl-C at evenly spaced moments of a 2-event reconstruction: one line, status 130, parts kept.

    python benchmarks/sigint_check.py [--moments=20] [--method=cgnn] [--workers=1] [--pid_only]

Simulates two small events, runs ``launch/reconstruct.py`` on them once uninterrupted (which
also fills the compilation cache and measures the run's length T), then starts the same command
``--moments`` times more and sends SIGINT at ``T * k / (moments + 2)``, k = 1 .. moments: to the
whole process group, as a terminal's Ctrl-C does (``--pid_only``: to the main process alone). A
run that ends before its moment (the machine was less busy than for the measured run) is tried
again, twice at most.
For each moment it prints the exit status, the number of message lines on stderr (progress-bar
updates not counted) and whether the event parts left in ``<out>.parts/`` are intact: each one
equal to that event's rows of the uninterrupted run, no temporary file beside them or beside
``--out``, and ``--out`` absent (an interrupted run never writes it). A moment passes with status
130, one line ``interrupted`` and intact parts; the last line sums them up.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar update


def message_lines(stderr: str) -> list[str]:
    """stderr's lines without the progress bar's updates."""
    lines = stderr.replace("\r", "\n").splitlines()
    return [ln for ln in lines if ln.strip() and not PROGRESS.search(ln)]


def parts_intact(out: Path, reference: pd.DataFrame) -> tuple[bool, int, str]:
    """``(intact, number of parts, why not)`` for the parts an interrupted run left."""
    parts_dir = Path(f"{out}.parts")
    if out.exists():
        return False, 0, f"{out} written by an interrupted run"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    if parts_dir.exists():
        leftovers += [p.name for p in parts_dir.rglob(".*")]
    if leftovers:
        return False, 0, f"temporary files left: {leftovers}"
    parts = sorted(parts_dir.rglob("event*.csv.gz")) if parts_dir.exists() else []
    for p in parts:
        try:
            got = pd.read_csv(p)
        except Exception as e:  # any unreadable part is a failure
            return False, len(parts), f"{p.name}: unreadable ({e})"
        eid = int(got["event_id"].iloc[0])
        want = reference[reference["event_id"] == eid].reset_index(drop=True)
        if not got.equals(want):
            return False, len(parts), f"{p.name}: differs from the uninterrupted run"
    return True, len(parts), ""


def interrupt_at(
    cmd: list[str], env: dict[str, str], at: float, pid_only: bool
) -> tuple[int, list[str]]:
    """Run ``cmd``, send SIGINT ``at`` seconds after its start; ``(exit status, stderr lines)``."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # its own process group, for os.killpg
    )
    time.sleep(at)
    try:
        if pid_only:
            proc.send_signal(signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return proc.returncode, message_lines(err)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moments", type=int, default=20)
    ap.add_argument("--method", default="cgnn")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--mu", type=float, default=30.0)
    ap.add_argument("--pid_only", action="store_true", help="signal the main process only")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sigint_check."))
    env = dict(os.environ)
    env.setdefault("CGNN_JAX_CACHE_DIR", str(tmp / "cache"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CGNN_DEBUG", None)
    py = sys.executable
    data = tmp / "data"
    subprocess.run(
        [py, str(ROOT / "launch/simulate.py"), f"--out={data}", "--events=2", f"--mu={args.mu}"],
        env=env,
        check=True,
        capture_output=True,
    )

    def command(out: Path) -> list[str]:
        return [
            py,
            str(ROOT / "launch/reconstruct.py"),
            f"--data={data}",
            f"--out={out}",
            f"--method={args.method}",
            f"--workers={args.workers}",
        ]

    ref_out = tmp / "reference.csv"
    subprocess.run(command(ref_out), env=env, check=True, capture_output=True)  # warms caches
    t0 = time.perf_counter()
    subprocess.run(command(ref_out), env=env, check=True, capture_output=True)
    length = time.perf_counter() - t0
    reference = pd.read_csv(ref_out)
    print(
        f"uninterrupted run: {length:.2f} s; SIGINT to the {'process' if args.pid_only else 'process group'}"
    )
    print(f"{'moment':>7} {'at (s)':>7} {'exit':>5} {'lines':>5} {'parts':>5}  verdict")
    passed = 0
    for k in range(1, args.moments + 1):
        at = length * k / (args.moments + 2)
        for attempt in range(3):  # a run faster than the measured one may end before `at`
            run_dir = tmp / f"run{k}-{attempt}"
            run_dir.mkdir()
            out = run_dir / "sub.csv"
            code, lines = interrupt_at(command(out), env, at, args.pid_only)
            if code != 0:
                break
        intact, n_parts, why = parts_intact(out, reference)
        if code == 0:
            verdict = "finished before the signal (3 tries)"
        elif code != 130 or lines != ["interrupted"]:
            verdict = "FAIL: " + " | ".join(lines)[-300:]
        elif not intact:
            verdict = f"FAIL: {why}"
        else:
            verdict = "ok" + (f" (try {attempt + 1}: the earlier ended first)" if attempt else "")
            passed += 1
        print(f"{k:>7} {at:>7.2f} {code:>5} {len(lines):>5} {n_parts:>5}  {verdict}")
    print(f"summary: {passed}/{args.moments} ended with status 130, one line and intact parts")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if passed == args.moments else 1


if __name__ == "__main__":
    sys.exit(main())
