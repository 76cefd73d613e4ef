"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

A reconstruction allocates and frees buffers of tens to hundreds of MB many times (XLA's
temporaries for 1.6 M edges × 32 features). glibc serves every allocation above 32 MB with a
fresh ``mmap`` and returns it with ``munmap`` on free, and XLA's worker threads allocate in
their own arenas, so each such buffer is faulted in page by page again: about 1.1 M page faults
and 3–4 s of system time for one full μ = 200 event on 2 cores. :func:`keep_freed_memory`
makes the short-lived launch processes serve large blocks from one heap that is never trimmed,
so a freed buffer is reused without new faults (measured on one full event, whole process:
1.1 M → 0.57 M page faults, system time 3.3 → 1.8 s; see ``docs/experiments.md``, "Speed").

The cost is a peak resident size that can sit above the largest working set (freed blocks are
kept for reuse). Set ``CGNN_JAX_MALLOC=system`` to keep glibc's defaults. ``train.py`` keeps them
unless ``CGNN_JAX_MALLOC=keep``: on 150 GNN training steps the setting cut the step time by 19 %
(system time 76 → 23 s) but doubled the peak (2.0 → 4.2 GB), and a whole training run with it
has not been measured.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory(default: bool = True) -> bool:
    """Tune glibc's allocator for a short-lived, allocation-heavy process.

    No ``mmap`` for large blocks, no trimming of the heap's top, one arena for all threads.
    Call it early (the launch scripts do, before their work). ``CGNN_JAX_MALLOC`` decides over
    ``default``: ``system`` leaves the allocator alone, ``keep`` tunes it; unset, ``default``
    does (``train.py`` passes False). Returns True when the settings took effect; False where
    they were not asked for or the C library is not glibc.
    """
    choice = os.environ.get("CGNN_JAX_MALLOC", "").lower()
    if choice == "system" or (choice != "keep" and not default):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_ARENA_MAX, 1) == 1
    ok &= mallopt(_M_MMAP_MAX, 0) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return bool(ok)
