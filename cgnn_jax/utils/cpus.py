"""How many CPU cores this process may use, and an in-order map over them on threads."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """The cores this process may use: its CPU affinity where the OS has one (a process pinned
    to one core, as ``benchmarks/`` pins them, gets 1), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, ahead: int | None = None
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads (default :func:`usable_cpus`), results in the
    items' order, so a caller gets what the serial loop gives. For numpy work that frees the GIL
    (array loops, kd-tree queries). At most ``ahead`` items (default ``2 * workers``) are in
    flight or waiting to be read: memory stays bounded while the caller consumes the results.
    One worker (or one item) runs in the calling thread."""
    items = list(items)
    workers = min(usable_cpus() if workers is None else max(int(workers), 1), len(items))
    if workers <= 1:
        yield from map(fn, items)
        return
    ahead = max(1, 2 * workers if ahead is None else int(ahead))
    with ThreadPoolExecutor(workers) as pool:
        queue: deque[Future] = deque(pool.submit(fn, x) for x in items[:ahead])
        following = len(queue)
        while queue:
            result = queue.popleft().result()
            if following < len(items):
                queue.append(pool.submit(fn, items[following]))
                following += 1
            yield result
