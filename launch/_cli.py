"""How every launch script starts and how it ends on a user error.

``run(main)`` replaces ``absl.app.run(main)``:

* A user error — bad data (:class:`~cgnn_jax.io.TrackMLFormatError`), a bad flag value
  (``ValueError``; ``app.UsageError`` too, without absl's page of help), a missing, unreadable or
  unwritable path (``OSError``),
  a damaged or foreign checkpoint (``CheckpointError``) — ends the process with one line
  ``error: <message>`` on stderr and exit status 1 (usage errors: absl's own message, status 1),
  never a traceback. Set ``CGNN_DEBUG=1`` to get the traceback instead.
* Ctrl-C ends with ``interrupted`` and status 130 at any moment (``launch/_bootstrap.py``;
  outputs are written atomically, so nothing is left half-written).
* Output paths are checked before any work (:func:`cgnn_jax.io.guard.check_outputs`): ``run``
  names the script's input flags (``inputs``; the pretrained model always counts as one, but
  for ``export_model.py``), its output-file flags (``files``) and output-folder flags
  (``folders``); an output that is or lies inside an input, a file path ending with a slash or
  naming a folder is one line, before anything is read or written. The ``data`` flags must
  also name a dataset holding events.
* A flag value that the flag parser cannot apply (an unknown ``--config.<key>``) is one line.
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
from collections.abc import Callable, Sequence
from typing import Any

import _bootstrap
from absl import app, logging


def _is_user_error(e: BaseException) -> bool:
    if isinstance(e, (ValueError, OSError)):
        return True
    return any(c.__name__ == "CheckpointError" for c in type(e).__mro__)


def _message(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
        msg = f"{msg}: {e.filename}"
    msg = " ".join(msg.split())  # always one line
    return msg if len(msg) <= _MAX_MESSAGE else msg[: _MAX_MESSAGE - 3] + "..."


_MAX_MESSAGE = 400  # a library's error text (orbax, tensorstore) can run to kilobytes


def _flag_path(name: str) -> str | None:
    """The path a flag holds (a config flag: its file), or ``None`` when not given."""
    from absl import flags

    flag = flags.FLAGS[name]
    if hasattr(flag, "config_filename"):  # ml_collections' config flags
        return getattr(flag, "config_filename", None) or None
    value = flag.value
    return None if value is None or value == "" else str(value)


def check_paths(
    inputs: Sequence[str] = (),
    files: Sequence[str] = (),
    folders: Sequence[str] = (),
    data: Sequence[str] = (),
    pretrained_is_input: bool = True,
    replaced: Sequence[str] = (),
) -> None:
    """The checks of the module docstring on the parsed flags (flag names without ``--``)."""
    from cgnn_jax.io.guard import check_outputs, pretrained_dir

    ins: dict[str, str | os.PathLike[str] | None] = {f"--{n}": _flag_path(n) for n in inputs}
    if pretrained_is_input:
        ins["the pretrained model"] = pretrained_dir()
    check_outputs(
        ins,
        files={f"--{n}": _flag_path(n) for n in files},
        folders={f"--{n}": _flag_path(n) for n in folders},
        replaced={f"--{n}": _flag_path(n) for n in replaced},
    )
    for n in data:
        path = _flag_path(n)
        if path is None:
            continue
        from cgnn_jax.io import list_event_ids

        if not list_event_ids(path):
            raise ValueError(
                f"--{n}: no events under {path} (expected eventNNNNNNNNN-hits.csv[.gz] files)"
            )


def guarded(
    main: Callable[[list[str]], Any],
    uses_jax: bool = True,
    keep_memory: bool = True,
    paths: dict[str, Any] | None = None,
) -> Callable[[list[str]], Any]:
    """``main`` with the user-error handling described in the module docstring; ``paths``:
    the keyword arguments of :func:`check_paths`, checked before ``main`` runs."""

    def wrapped(argv: list[str]) -> Any:
        try:
            if paths is not None:
                check_paths(**paths)
        except Exception as e:
            if os.environ.get("CGNN_DEBUG") or not _is_user_error(e):
                raise
            _exit_now(f"error: {_message(e)}", 1)
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
            _exit_now(f"error: {_message(e)} (--helpshort lists the flags)", 1)
        except KeyboardInterrupt:  # raised by library code; SIGINT itself ends in _bootstrap
            _bootstrap.exit_interrupted()
        except Exception as e:  # user errors become one line, the rest keeps its traceback
            if os.environ.get("CGNN_DEBUG") or not _is_user_error(e):
                raise
            # left at once, as a finished run: the interpreter's teardown after a failed restore
            # prints pages of asyncio / JAX clean-up tracebacks
            _exit_now(f"error: {_message(e)}", 1)

    return wrapped


def run(
    main: Callable[[list[str]], Any],
    uses_jax: bool = True,
    keep_memory: bool = True,
    fast_exit: bool = False,
    **paths: Any,
) -> None:
    """``absl.app.run(main)`` with one-line user errors (see the module docstring).

    ``paths``: the keyword arguments of :func:`check_paths`, checked before ``main`` runs:
    ``inputs``, ``files``, ``folders``, ``data``: flag names (without ``--``) of the script's
    inputs, output files, output folders and datasets; ``replaced``: output folders replaced as a
    whole (no input may lie inside them either); ``pretrained_is_input=False`` for the script that
    writes the model.

    ``fast_exit``: once ``main`` has returned successfully, flush the standard streams and the
    log handlers and end the process at once (``os._exit(0)``), skipping the interpreter's
    teardown of JAX's backends and of the pandas, scipy and XLA modules: 0.15 s in a process
    with pandas and scipy, ~0.6 s with JAX (``docs/experiments.md``, "Speed"), none of it work
    a finished command needs. Only for scripts whose outputs are complete when ``main``
    returns (written and closed atomically; no background checkpoint writes): not
    ``train.py`` or ``export_model.py``. Errors and ``sys.exit`` keep the normal exit.
    """
    wrapped = guarded(main, uses_jax, keep_memory, paths)

    def main_then_exit(argv: list[str]) -> Any:
        result = wrapped(argv)
        if fast_exit and not result:
            _exit_now()
        return result

    app.run(main_then_exit, flags_parser=_parse_flags)


def run_report(main: Callable[[list[str]], Any]) -> None:
    """:func:`run` for a report script that reads a model (``--checkpoint``) on a dataset
    (``--data``) and writes its report to ``--json_out``."""
    run(main, fast_exit=True, inputs=("checkpoint", "data"), files=("json_out",), data=("data",))


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a value it cannot apply (``--config.nokey=1`` raises
    ``AttributeError`` / ``KeyError`` / ``TypeError`` from ml_collections) as one line."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        if os.environ.get("CGNN_DEBUG"):
            raise
        msg = _message(e).strip("'\"")
        bad = " ".join(a for a in argv[1:] if a.startswith("--config.")) or "a flag"
        if isinstance(e, (AttributeError, KeyError)):
            msg = f"no such key in the config ({msg})"
        _exit_now(f"FATAL Flags parsing error: {bad}: {msg}", 1)


def _exit_now(message: str | None = None, status: int = 0) -> None:
    """End the process without the interpreter's teardown (see :func:`run`), after writing
    ``message`` (one line) to stderr."""
    import logging as std_logging

    if message is not None:
        print(message, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to flush
            pass
    std_logging.shutdown()
    os._exit(status)


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
