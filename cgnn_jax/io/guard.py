"""Output paths that can never destroy an input: checked before a command does any work.

:func:`check_outputs` refuses, with one :class:`OutputPathError` line naming both flags:

* an output (file or folder) that is, or lies inside, an input: a data folder, a ``.zip``
  archive, the files of an event prefix (``dir/event000001000`` stands for
  ``dir/event000001000-*``), a checkpoint folder, the pretrained model;
* an output file whose path ends with a slash or names an existing folder, and an output
  folder that names an existing file.

Paths are compared after resolving symbolic links (``os.path.realpath``), so a link to the data
folder, or a path through one, is the data folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

PathLike = str | os.PathLike[str]

_EVENT_NAME = re.compile(r"(event\d+)(?:-.*)?")


class OutputPathError(ValueError):
    """An output path that would overwrite an input, or that is of the wrong kind."""


def pretrained_dir() -> Path:
    """The shipped model's folder (``cgnn_jax/pretrained/default``), without importing JAX."""
    return Path(__file__).resolve().parent.parent / "pretrained" / "default"


def _real(path: PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def input_paths(path: PathLike) -> list[Path]:
    """The resolved paths an input stands for: itself if it exists (a folder, a file, a zip),
    else the files of the event prefix it names (``dir/event000001000`` ->
    ``dir/event000001000-*``), else itself (a missing input is reported by its reader)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.exists():
        return [_real(p)]
    m = _EVENT_NAME.fullmatch(p.name)
    if m is not None and p.parent.is_dir():
        files = sorted(p.parent.glob(f"{m.group(1)}-*"))
        if files:
            return [_real(f) for f in files]
    return [_real(p)]


def _clash(out: Path, inp: Path) -> bool:
    return out == inp or inp in out.parents


def check_outputs(
    inputs: Mapping[str, PathLike | None],
    files: Mapping[str, PathLike | None] | None = None,
    folders: Mapping[str, PathLike | None] | None = None,
    replaced: Mapping[str, PathLike | None] | None = None,
) -> None:
    """Refuse output paths that would overwrite an input or are of the wrong kind.

    Args:
      inputs: ``{name: path}`` of what the command reads (``None``: not given); ``name`` (a flag
        such as ``--data``) is how messages refer to it.
      files: ``{name: path}`` of the output files.
      folders: ``{name: path}`` of the output folders.
      replaced: ``{name: path}`` of output folders replaced as a whole: no input may lie inside
        them either.

    Raises:
      OutputPathError: one line naming the output and, for a clash, the input.
    """
    given_inputs = [(n, p) for n, p in inputs.items() if p is not None and os.fspath(p) != ""]
    resolved = [(n, p, r) for n, p in given_inputs for r in input_paths(p)]
    outputs: list[tuple[str, str, bool]] = [
        (n, os.fspath(p), True) for n, p in (files or {}).items() if p is not None
    ]
    outputs += [(n, os.fspath(p), False) for n, p in (folders or {}).items() if p is not None]
    whole = {n for n, p in (replaced or {}).items() if p is not None}
    outputs += [(n, os.fspath(p), False) for n, p in (replaced or {}).items() if p is not None]
    for name, raw, is_file in outputs:
        if raw == "":
            raise OutputPathError(f"{name} is empty")
        if is_file and raw.endswith(("/", os.sep)):
            raise OutputPathError(f"{name}={raw} ends with a slash; expected a file name")
        if is_file and os.path.isdir(raw):
            raise OutputPathError(f"{name}={raw} is a folder; expected a file name")
        if not is_file and os.path.exists(raw) and not os.path.isdir(raw):
            raise OutputPathError(f"{name}={raw} is a file; expected a folder")
        out = _real(raw)
        for in_name, in_raw, inp in resolved:
            inside = name in whole and out in inp.parents
            if _clash(out, inp) or inside:
                where = "is" if out == inp else "holds" if inside else "lies inside"
                label = (
                    f"the input {in_name}={os.fspath(in_raw)}"
                    if in_name.startswith("-")
                    else f"{in_name} ({os.fspath(in_raw)})"
                )
                if inp != _real(in_raw):  # one file of an event prefix
                    label += f" (its file {inp.name})"
                raise OutputPathError(
                    f"{name}={raw} {where} {label}; choose an output outside the inputs"
                )
