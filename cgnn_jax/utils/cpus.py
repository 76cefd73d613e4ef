"""How many CPU cores this process may run on."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The cores this process may use: its CPU affinity where the OS has one (a process pinned
    to one core, as ``benchmarks/`` pins them, gets 1), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return max(1, os.cpu_count() or 1)
