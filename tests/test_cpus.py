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
