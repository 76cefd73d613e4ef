"""Thread counts follow the cores a process may use, not the machine's count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cgnn_jax.utils.cpus import usable_cpus


def test_usable_cpus_follows_the_affinity():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from cgnn_jax.utils.cpus import usable_cpus; print(usable_cpus())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"  # pinned to one core (as benchmarks/ pin): one thread


def test_ordered_map_keeps_the_order_and_bounds_the_work_ahead():
    import threading
    import time

    from cgnn_jax.utils.cpus import ordered_map

    started: list[int] = []
    lock = threading.Lock()

    def slow_first(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.02 if i % 3 == 0 else 0.0)  # later items finish first
        return i * i

    want = [i * i for i in range(20)]
    for workers in (1, 2, 3):
        started.clear()
        results = ordered_map(slow_first, range(20), workers, ahead=4)
        assert next(results) == 0
        assert len(started) <= 4 + 1  # no more than `ahead` submitted before the first read
        assert [0, *results] == want
    assert list(ordered_map(slow_first, [], 2)) == []
