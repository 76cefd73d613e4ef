"""Where the event files are: a directory, a ``.zip`` archive (at any depth) or a prefix path.

* a directory holding ``eventNNNNNNNNN-{hits,cells,particles,truth}.csv[.gz]`` files;
* a ``.zip`` archive holding such files, at any depth (the challenge's
  ``train_sample.zip`` keeps them in a ``train_100_events/`` folder);
* a prefix path ``dir/event000001000`` (the challenge library's style); a path to one
  of an event's files (``dir/event000001000-hits.csv``) works the same way.

:func:`resolve_source` lists the files behind a path; :func:`list_event_ids` their events.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cgnn_jax.io.errors import TrackMLFormatError
from cgnn_jax.io.schema import event_prefix
from cgnn_jax.io.tables import GARBLED_ERRORS

PathLike = str | os.PathLike[str]

_FILE_RE = re.compile(r"event(\d+)-(hits|cells|particles|truth)\.csv(\.gz)?")
_PREFIX_RE = re.compile(r"event(\d+)")


@dataclass(frozen=True)
class FileRef:
    """One event part file: where it is, how to open it, and its name for messages."""

    display: str
    compressed: bool
    fs_path: Path | None = None  # a plain file
    member: str | None = None  # or a zip member


class Source:
    """The event files visible under one user path (a directory, a zip, a prefix)."""

    def __init__(self, display: str, index: dict[int, dict[str, FileRef]]) -> None:
        self.display = display
        self.index = index

    def event_ids(self) -> list[int]:
        return sorted(self.index)

    def open(self, ref: FileRef) -> str | io.BytesIO:
        """A fresh readable for ``ref`` (a path, or the zip member's bytes)."""
        assert ref.fs_path is not None
        return str(ref.fs_path)

    def close(self) -> None:
        pass

    def expected_names(self, event_id: int, part: str) -> str:
        stem = f"{event_prefix(event_id)}-{part}"
        return f"{stem}.csv or {stem}.csv.gz"


class ZipSource(Source):
    def __init__(self, path: Path) -> None:
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise TrackMLFormatError(f"not a readable zip archive: {e}", file=path) from e
        index: dict[int, dict[str, FileRef]] = {}
        for name in self.zf.namelist():
            m = _FILE_RE.fullmatch(name.rsplit("/", 1)[-1])
            if m is None or name.startswith("__MACOSX/"):
                continue
            eid, part, gz = int(m.group(1)), m.group(2), bool(m.group(3))
            ref = FileRef(display=f"{path}:{name}", compressed=gz, member=name)
            _add(index, eid, part, ref, display=str(path))
        super().__init__(str(path), index)

    def open(self, ref: FileRef) -> io.BytesIO:
        assert ref.member is not None
        try:
            return io.BytesIO(self.zf.read(ref.member))
        except GARBLED_ERRORS as e:
            raise TrackMLFormatError(
                f"truncated or corrupt zip member ({type(e).__name__}: {e})", file=ref.display
            ) from e

    def close(self) -> None:
        self.zf.close()


def _add(
    index: dict[int, dict[str, FileRef]], eid: int, part: str, ref: FileRef, display: str
) -> None:
    """Index ``ref``; with both ``.csv`` and ``.csv.gz`` present prefer the plain csv."""
    parts = index.setdefault(eid, {})
    old = parts.get(part)
    if old is None or (old.compressed and not ref.compressed):
        parts[part] = ref
    elif old.compressed == ref.compressed:
        raise TrackMLFormatError(
            f"event {eid} part {part!r} is present twice: {old.display} and {ref.display}",
            file=display,
        )


def _dir_source(directory: Path, only: int | None = None) -> Source:
    index: dict[int, dict[str, FileRef]] = {}
    with os.scandir(directory) as it:
        for entry in it:
            m = _FILE_RE.fullmatch(entry.name)
            if m is None:
                continue
            eid, part, gz = int(m.group(1)), m.group(2), bool(m.group(3))
            if only is not None and eid != only:
                continue
            ref = FileRef(display=entry.path, compressed=gz, fs_path=Path(entry.path))
            _add(index, eid, part, ref, display=str(directory))
    return Source(str(directory), index)


def resolve_source(path: PathLike) -> tuple[Source, int | None]:
    """The source behind ``path`` and the event id the path itself names (prefix style)."""
    p = Path(path)
    if p.is_dir():
        return _dir_source(p), None
    if p.is_file() and zipfile.is_zipfile(p):
        return ZipSource(p), None
    if p.suffix == ".zip":
        if not p.exists():
            raise FileNotFoundError(f"no such zip archive: {p}")
        return ZipSource(p), None  # raises a TrackMLFormatError naming the file
    m = _PREFIX_RE.fullmatch(p.name) or _FILE_RE.fullmatch(p.name)
    if m is not None:
        if not p.parent.is_dir():
            raise FileNotFoundError(f"no such directory: {p.parent}")
        eid = int(m.group(1))
        source = _dir_source(p.parent, only=eid)
        source.index.setdefault(eid, {})
        return source, eid
    if not p.exists():
        raise FileNotFoundError(f"no such event directory, zip archive or prefix: {p}")
    raise TrackMLFormatError(
        "expected a directory, a .zip archive, or a prefix like 'dir/event000001000'", file=p
    )


def list_event_ids(path: PathLike) -> list[int]:
    """The sorted ids of the events under ``path`` (directory, zip, or prefix).

    An event counts if any of its part files is present.
    """
    source, fixed = resolve_source(path)
    try:
        if fixed is not None:
            return [fixed] if source.index.get(fixed) else []
        return source.event_ids()
    finally:
        source.close()
