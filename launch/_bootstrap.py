"""Imported first by every launch script.

* Installs the Ctrl-C handler before anything heavy is imported: SIGINT, at any moment (imports,
  compilation, between events), ends the process with one line ``interrupted`` on stderr and exit
  status 130 (:func:`exit_interrupted`). It leaves at once (``os._exit``), never through the
  interpreter's teardown, where JAX's backends crash on a half-finished run. Temporary files of
  unfinished atomic writes are removed first; finished outputs (each event's part in
  ``<out>.parts/``) stay. In a worker process (``--workers=N``) the same signal ends the worker
  quietly (its parent prints the one line), and the parent stops its workers before it leaves.
* Makes ``import cgnn_jax`` work from a checkout that was not pip-installed, and puts the
  checkout on the path so that config files can import each other (``from configs import default``).
"""

import os
import signal
import sys
from pathlib import Path

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT (128 + 2)
_WORKER_GRACE_S = 5.0  # how long a parent waits for its interrupted workers to clean up


def _is_worker() -> bool:
    """Whether this process is a ``multiprocessing`` worker (re-running a launch script as
    ``__mp_main__`` while it starts, or started)."""
    # (in a parent, multiprocessing aliases __mp_main__ to its own __main__)
    if getattr(sys.modules.get("__mp_main__"), "__name__", "") == "__mp_main__":
        return True
    mp = sys.modules.get("multiprocessing.process")
    return mp is not None and getattr(mp, "_parent_process", None) is not None


def _stop_workers() -> None:
    """Interrupt this process's worker processes, wait for them briefly, kill the rest."""
    mp = sys.modules.get("multiprocessing.process")
    if mp is None:
        return
    import time

    try:
        children = list(mp.active_children())
    except Exception:  # a half-torn-down pool: nothing more to do
        return
    for p in children:
        try:
            os.kill(p.pid, signal.SIGINT)
        except (OSError, TypeError):
            pass
    deadline = time.monotonic() + _WORKER_GRACE_S
    for p in children:
        try:
            p.join(max(deadline - time.monotonic(), 0.0))
            if p.is_alive():
                p.kill()
                p.join(1.0)
        except Exception:
            pass
    _release_semaphores()


def _release_semaphores() -> None:
    """Unlink the worker pool's named semaphores and tell the resource tracker, as the pool's
    shutdown would: else the tracker prints a warning about them after the one line."""
    util = sys.modules.get("multiprocessing.util")
    sync = sys.modules.get("multiprocessing.synchronize")
    if util is None or sync is None:
        return
    cleanup = getattr(sync.SemLock, "_cleanup", None)
    for fin in list(getattr(util, "_finalizer_registry", {}).values()):
        if cleanup is not None and getattr(fin, "_callback", None) is cleanup:
            try:
                fin()
            except Exception:
                pass


def exit_interrupted() -> None:
    """End the process after Ctrl-C: workers quietly, the main process with ``interrupted``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot cut the clean-up short
    worker = _is_worker()
    if not worker:
        _stop_workers()
    atomic = sys.modules.get("cgnn_jax.io.atomic")
    if atomic is not None:
        try:
            atomic.remove_temporaries()
        except Exception:
            pass
    if not worker:
        try:
            sys.stdout.flush()
        except Exception:  # closed, a broken pipe, or interrupted inside a write
            pass
        line = b"interrupted\n"
        tqdm = sys.modules.get("tqdm.std")
        bars = getattr(getattr(tqdm, "tqdm", None), "_instances", ())
        if any(not getattr(b, "disable", True) for b in list(bars)):
            line = b"\n" + line  # below the progress bar, not glued to it
        try:
            os.write(2, line)
        except OSError:
            pass
    os._exit(INTERRUPTED)


def _on_sigint(signum: int, frame: object) -> None:
    exit_interrupted()


signal.signal(signal.SIGINT, _on_sigint)
# worker processes start with SIGINT blocked (cgnn_jax.inference.dataset): now that the
# handler is in place it may come (a Ctrl-C that arrived meanwhile is delivered now)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

_root = Path(__file__).resolve().parent.parent
sys.path.append(str(_root))
