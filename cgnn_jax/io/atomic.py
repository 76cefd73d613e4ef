"""Atomic file replacement: write to a temporary sibling, then ``os.replace``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# temporary files of the atomic writes now in progress (see remove_temporaries)
_PENDING: set[str] = set()


def remove_temporaries() -> None:
    """Remove the temporary files of the atomic writes in progress in this process.

    For a process that ends at once (``os._exit``) on Ctrl-C, where the ``with`` blocks of
    :func:`atomic_write` do not get to clean up: their targets keep their old content (or stay
    absent), and no half-written temporary file is left beside them.
    """
    for name in list(_PENDING):
        with contextlib.suppress(OSError):
            os.unlink(name)
        _PENDING.discard(name)


def _current_umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-global and racy).
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: str | os.PathLike[str], directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str | None = None,
    *,
    encoding: str | None = None,
    fsync: bool = True,
) -> Iterator[Any]:
    """Write ``path`` atomically: readers see the old file or the complete new one.

    A temporary file is created in the same directory as ``path`` (so ``os.replace``
    is a rename on one file system); on a clean exit of the ``with`` block it replaces
    ``path``. On any exception (including ``KeyboardInterrupt``) the temporary file is
    removed and an existing ``path`` is left untouched.

    The temporary name keeps the last suffixes of ``path`` (``.csv.gz`` stays
    ``.csv.gz``), so libraries that infer compression from the name still do so.

    Args:
      path: the final file. Its directory must exist.
      mode: ``None`` to be handed the temporary *path* (a ``Path``; write it yourself,
        e.g. ``df.to_csv(tmp)``), or a write mode such as ``"w"``/``"wb"`` to be handed
        an open file object, which is closed before the replace.
      encoding: passed to ``open`` in text mode.
      fsync: flush the data (and the directory entry) to disk before/after replacing.

    Yields:
      the temporary ``Path`` (``mode=None``) or the open file object.

    Example::

        with atomic_write(out / "x.csv") as tmp:
            df.to_csv(tmp, index=False)
        with atomic_write(out / "notes.txt", "w") as f:
            f.write("hello")
    """
    path = Path(path)
    if mode is not None and ("+" in mode or not set(mode) & {"w", "x"}):
        raise ValueError(f"atomic_write: mode must be a write mode like 'w' or 'wb', got {mode!r}")
    suffix = ".tmp" + "".join(path.suffixes[-2:])
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    _PENDING.add(tmp_name)
    tmp = Path(tmp_name)
    try:
        if mode is None:
            os.close(fd)
            yield tmp
            if fsync:
                _fsync_path(tmp)
        else:
            fmode = mode.replace("x", "w")
            with os.fdopen(fd, fmode, encoding=encoding) as f:
                yield f
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
        # mkstemp creates 0600; give the result the permissions a plain open() would.
        try:
            perm = os.stat(path).st_mode & 0o7777
        except OSError:
            perm = 0o666 & ~_current_umask()
        os.chmod(tmp, perm)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        _PENDING.discard(tmp_name)
    if fsync:
        _fsync_path(path.parent, directory=True)
