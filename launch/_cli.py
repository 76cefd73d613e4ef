"""How every launch script starts and how it ends on a user error.

``run(main)`` replaces ``absl.app.run(main)``:

* A user error — bad data (:class:`~cgnn_jax.io.TrackMLFormatError`), a bad flag value
  (``ValueError``; ``app.UsageError`` too, without absl's page of help), a missing, unreadable or
  unwritable path (``OSError``),
  a damaged or foreign checkpoint (``CheckpointError``) — ends the process with one line
  ``error: <message>`` on stderr and exit status 1 (usage errors: absl's own message, status 1),
  never a traceback. Set ``CGNN_DEBUG=1`` to get the traceback instead.
* Ctrl-C ends with ``interrupted`` and status 130 (outputs are written atomically, so nothing
  is left half-written).
* Library log noise (orbax's INFO lines, absl warnings) is turned down to errors.
* ``keep_memory=True`` (all but ``train.py``; ``CGNN_JAX_MALLOC=keep`` turns it on there too)
  keeps freed memory in the process (:func:`cgnn_jax.utils.memory.keep_freed_memory`): fewer
  page faults, ~1 s less per full event.
* ``uses_jax=True`` turns on JAX's persistent compilation cache
  (:func:`cgnn_jax.inference.jax_cache.enable_compilation_cache`), so the second run of a script
  skips compilation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from absl import app, logging


def _is_user_error(e: BaseException) -> bool:
    if isinstance(e, (ValueError, OSError)):
        return True
    return any(c.__name__ == "CheckpointError" for c in type(e).__mro__)


def _message(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
        msg = f"{msg}: {e.filename}"
    return " ".join(msg.split())  # always one line


def guarded(
    main: Callable[[list[str]], Any], uses_jax: bool = True, keep_memory: bool = True
) -> Callable[[list[str]], Any]:
    """``main`` with the user-error handling described in the module docstring."""

    def wrapped(argv: list[str]) -> Any:
        from cgnn_jax.utils.memory import keep_freed_memory

        keep_freed_memory(default=keep_memory)  # CGNN_JAX_MALLOC=keep / system overrides
        logging.set_verbosity(logging.ERROR)
        import logging as std_logging

        for name in ("absl", "orbax", "jax", "jax._src.xla_bridge"):
            std_logging.getLogger(name).setLevel(std_logging.ERROR)
        if uses_jax:
            from cgnn_jax.inference.jax_cache import enable_compilation_cache

            enable_compilation_cache()
        try:
            return main(argv)
        except app.UsageError as e:  # absl would print the whole help text above it
            print(f"error: {e} (--helpshort lists the flags)", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as e:  # user errors become one line, the rest keeps its traceback
            if os.environ.get("CGNN_DEBUG") or not _is_user_error(e):
                raise
            print(f"error: {_message(e)}", file=sys.stderr)
            sys.exit(1)

    return wrapped


def run(
    main: Callable[[list[str]], Any],
    uses_jax: bool = True,
    keep_memory: bool = True,
    fast_exit: bool = False,
) -> None:
    """``absl.app.run(main)`` with one-line user errors (see the module docstring).

    ``fast_exit``: once ``main`` has returned successfully, flush the standard streams and the
    log handlers and end the process at once (``os._exit(0)``), skipping the interpreter's
    teardown of JAX's backends and of the pandas, scipy and XLA modules: 0.15 s in a process
    with pandas and scipy, ~0.6 s with JAX (``docs/experiments.md``, "Speed"), none of it work
    a finished command needs. Only for scripts whose outputs are complete when ``main``
    returns (written and closed atomically; no background checkpoint writes): not
    ``train.py`` or ``export_model.py``. Errors and ``sys.exit`` keep the normal exit.
    """
    wrapped = guarded(main, uses_jax, keep_memory)

    def main_then_exit(argv: list[str]) -> Any:
        result = wrapped(argv)
        if fast_exit and not result:
            _exit_now()
        return result

    app.run(main_then_exit)


def _exit_now() -> None:
    """End a finished command's process without the interpreter's teardown (see :func:`run`)."""
    import logging as std_logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to flush
            pass
    std_logging.shutdown()
    os._exit(0)


def print_means(df: Any, by: str, cols: list[str], json_out: str | None) -> None:
    """Print the per-``by`` means of ``cols`` of a per-event table; with ``json_out`` also write
    ``{"per_event": [...], "mean": [...]}`` there atomically (the quality scripts' report)."""
    import json

    import pandas as pd

    from cgnn_jax.io import atomic_write

    mean = df.groupby(by, sort=False)[cols].mean()
    with pd.option_context("display.float_format", "{:,.4g}".format):
        print(mean.to_string())
    if json_out:
        report = {
            "per_event": df.to_dict(orient="records"),
            "mean": mean.reset_index().to_dict(orient="records"),
        }
        with atomic_write(json_out, "w") as f:
            json.dump(report, f, indent=1)
