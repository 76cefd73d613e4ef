"""Shared helpers for the benchmark scripts: timing statistics and a machine description."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable


def pin_one_core() -> bool:
    """Pin this process to one CPU core (Linux); returns whether it worked."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return True
    except (AttributeError, OSError):
        return False


def repeat(fn: Callable[[], object], n: int) -> dict[str, float]:
    """Run ``fn`` ``n`` times; median, min and max wall seconds."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": n}


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def machine() -> str:
    """Cores, memory and platform of this machine, in one line."""
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
        mem_s = f"{mem:.0f} GiB"
    except OSError:
        mem_s = "? GiB"
    return f"{os.cpu_count()} cores, {mem_s}, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
