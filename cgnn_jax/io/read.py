"""Reading TrackML events and submissions from csv / csv.gz files, directories and zips.

Three ways to point at events:

* a directory holding ``eventNNNNNNNNN-{hits,cells,particles,truth}.csv[.gz]`` files;
* a ``.zip`` archive holding such files, at any depth (the challenge's
  ``train_sample.zip`` keeps them in a ``train_100_events/`` folder);
* a prefix path ``dir/event000001000`` (the challenge library's style); a path to one
  of an event's files (``dir/event000001000-hits.csv``) works the same way.

Reading is one ``pandas.read_csv`` call per file with the schema dtypes (C parser, no
NA detection). Only when that fast parse fails is the file parsed again as text, to find
and name the first bad value. All consistency checks are vectorised numpy.

Structural problems (a missing file or column, a value that cannot be parsed, a
truncated or garbled file) always raise :class:`TrackMLFormatError`; the data checks
(non-finite values, duplicate ids, hits/truth/cells cross references, empty event, hits far
outside the detector) run when ``validate=True``.

A plain csv must end with a line end: a file cut off inside its last line (a truncated copy
or download) would otherwise parse, with a shortened last value. Compressed files carry their
own length and checksum.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cgnn_jax.io.errors import TrackMLFormatError
from cgnn_jax.io.event import Event
from cgnn_jax.io.schema import (
    DETECTOR_R_MAX_MM,
    DETECTOR_Z_MAX_MM,
    DTYPES,
    FAR_OUTSIDE_FACTOR,
    OPTIONAL_COLUMNS,
    PARTS,
    SUBMISSION_DTYPES,
    event_prefix,
)

PathLike = str | os.PathLike[str]

_FILE_RE = re.compile(r"event(\d+)-(hits|cells|particles|truth)\.csv(\.gz)?")
_PREFIX_RE = re.compile(r"event(\d+)")

# Errors a truncated / corrupt compressed stream or archive member can raise.
_GARBLED_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    OSError,
)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _FileRef:
    """One event part file: where it is, how to open it, and its name for messages."""

    display: str
    compressed: bool
    fs_path: Path | None = None  # a plain file
    member: str | None = None  # or a zip member


class _Source:
    """The event files visible under one user path (a directory, a zip, a prefix)."""

    def __init__(self, display: str, index: dict[int, dict[str, _FileRef]]) -> None:
        self.display = display
        self.index = index

    def event_ids(self) -> list[int]:
        return sorted(self.index)

    def open(self, ref: _FileRef) -> str | io.BytesIO:
        """A fresh readable for ``ref`` (a path, or the zip member's bytes)."""
        assert ref.fs_path is not None
        return str(ref.fs_path)

    def close(self) -> None:
        pass

    def expected_names(self, event_id: int, part: str) -> str:
        stem = f"{event_prefix(event_id)}-{part}"
        return f"{stem}.csv or {stem}.csv.gz"


class _ZipSource(_Source):
    def __init__(self, path: Path) -> None:
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise TrackMLFormatError(f"not a readable zip archive: {e}", file=path) from e
        index: dict[int, dict[str, _FileRef]] = {}
        for name in self.zf.namelist():
            m = _FILE_RE.fullmatch(name.rsplit("/", 1)[-1])
            if m is None or name.startswith("__MACOSX/"):
                continue
            eid, part, gz = int(m.group(1)), m.group(2), bool(m.group(3))
            ref = _FileRef(display=f"{path}:{name}", compressed=gz, member=name)
            _add(index, eid, part, ref, display=str(path))
        super().__init__(str(path), index)

    def open(self, ref: _FileRef) -> io.BytesIO:
        assert ref.member is not None
        try:
            return io.BytesIO(self.zf.read(ref.member))
        except _GARBLED_ERRORS as e:
            raise TrackMLFormatError(
                f"truncated or corrupt zip member ({type(e).__name__}: {e})", file=ref.display
            ) from e

    def close(self) -> None:
        self.zf.close()


def _add(
    index: dict[int, dict[str, _FileRef]], eid: int, part: str, ref: _FileRef, display: str
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


def _dir_source(directory: Path, only: int | None = None) -> _Source:
    index: dict[int, dict[str, _FileRef]] = {}
    with os.scandir(directory) as it:
        for entry in it:
            m = _FILE_RE.fullmatch(entry.name)
            if m is None:
                continue
            eid, part, gz = int(m.group(1)), m.group(2), bool(m.group(3))
            if only is not None and eid != only:
                continue
            ref = _FileRef(display=entry.path, compressed=gz, fs_path=Path(entry.path))
            _add(index, eid, part, ref, display=str(directory))
    return _Source(str(directory), index)


def _resolve(path: PathLike) -> tuple[_Source, int | None]:
    """The source behind ``path`` and the event id the path itself names (prefix style)."""
    p = Path(path)
    if p.is_dir():
        return _dir_source(p), None
    if p.is_file() and zipfile.is_zipfile(p):
        return _ZipSource(p), None
    if p.suffix == ".zip":
        if not p.exists():
            raise FileNotFoundError(f"no such zip archive: {p}")
        return _ZipSource(p), None  # raises a TrackMLFormatError naming the file
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


# --------------------------------------------------------------------------- parsing


def _line(row: int) -> int:
    """1-based line in the file of data row ``row`` (0-based), header on line 1."""
    return int(row) + 2


def _locate_bad_value(
    source: str | io.BytesIO,
    display: str,
    dtypes: dict[str, str],
    compressed: bool,
    cause: BaseException,
) -> TrackMLFormatError:
    """Slow path: re-parse as text to find the first value the fast parse rejected."""
    raw = _parse_csv(source, object, compressed)
    best: tuple[int, int, str, str] | None = None  # (row, column order, column, reason)
    for order, (col, dt) in enumerate(dtypes.items()):
        if col not in raw.columns:
            continue
        text = raw[col].astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        kind = np.dtype(dt)
        if kind.kind == "f":
            bad = ~np.isfinite(num)
        else:
            info = np.iinfo(kind)
            is_int = text.str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool, na_value=False)
            with np.errstate(invalid="ignore"):
                bad = ~is_int | ~(num >= info.min) | ~(num <= info.max)
        hits = np.flatnonzero(bad)
        if hits.size and (best is None or (hits[0], order) < best[:2]):
            value = str(raw[col].iat[hits[0]]).strip()
            try:
                as_float: float | None = float(value)
            except ValueError:
                as_float = None
            if value == "":
                reason = "missing value (empty field, or a row with too few fields)"
            elif as_float is None:
                reason = f"unparsable value, expected {dt}"
            elif not np.isfinite(as_float):
                reason = "non-finite value"
            else:
                reason = f"value not representable as {dt}"
            best = (int(hits[0]), order, col, reason)
    if best is None:
        return TrackMLFormatError(
            f"cannot parse file ({type(cause).__name__}: {cause})", file=display
        )
    row, _, col, reason = best
    hit_id = None
    if "hit_id" in raw.columns and col != "hit_id":
        with_id = str(raw["hit_id"].iat[row]).strip()
        if re.fullmatch(r"[+-]?\d+", with_id):
            hit_id = int(with_id)
    return TrackMLFormatError(
        reason, file=display, column=col, line=_line(row), hit_id=hit_id, value=raw[col].iat[row]
    )


def _check_line_end(source: str | io.BytesIO, display: str) -> None:
    """A non-empty plain csv must end with a line end; one that does not was cut off mid-line."""
    if isinstance(source, io.BytesIO):
        view = source.getbuffer()
        tail = bytes(view[-256:])
        view.release()
    else:
        try:
            with open(source, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 256))
                tail = f.read()
        except OSError:
            return  # the parse reports a missing or unreadable file
    if tail and tail[-1:] not in (b"\n", b"\r"):
        last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
        raise TrackMLFormatError(
            "truncated file: the last line has no line end (a complete file ends with a newline)",
            file=display,
            value=last,
        )


def _parse_csv(
    source: str | io.BytesIO, dtypes: dict[str, str] | type, compressed: bool
) -> pd.DataFrame:
    """One ``pandas.read_csv`` call, warnings that mean bad input turned into errors."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with warnings.catch_warnings():
        # A float beyond float32 range becomes inf (reported by the finite check); a garbled
        # integer field may warn before the parse fails with a ValueError.
        warnings.filterwarnings("ignore", "overflow", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        # Rows longer than the header: pandas would drop their last fields with a warning.
        warnings.filterwarnings("error", category=pd.errors.ParserWarning)
        return pd.read_csv(
            source,
            dtype=dtypes,
            engine="c",
            index_col=False,
            na_filter=False,
            compression="gzip" if compressed else None,
        )


def _read_table(
    source: str | io.BytesIO,
    display: str,
    required: dict[str, str],
    optional: dict[str, str] | None = None,
    compressed: bool = False,
) -> pd.DataFrame:
    """Parse one csv with the schema dtypes; columns ``required`` then present ``optional``.

    Unknown extra columns are dropped. Raises :class:`TrackMLFormatError` on a missing
    column, an unparsable value, ragged rows, or a truncated / corrupt file.
    """
    optional = optional or {}
    dtypes = {**required, **optional}
    if not compressed:
        _check_line_end(source, display)
    try:
        df = _parse_csv(source, dtypes, compressed)
    except pd.errors.ParserWarning as e:
        raise TrackMLFormatError(
            "garbled file: data rows have more fields than the header row", file=display
        ) from e
    except pd.errors.EmptyDataError as e:
        raise TrackMLFormatError("empty file (no header row)", file=display) from e
    except FileNotFoundError as e:
        raise TrackMLFormatError("file vanished while reading", file=display) from e
    except pd.errors.ParserError as e:
        raise TrackMLFormatError(
            f"garbled file, ragged rows? ({e})".replace("\n", " "), file=display
        ) from e
    except _GARBLED_ERRORS as e:
        raise TrackMLFormatError(
            f"truncated or corrupt file ({type(e).__name__}: {e})", file=display
        ) from e
    except (ValueError, TypeError, OverflowError) as e:
        try:
            err = _locate_bad_value(source, display, dtypes, compressed, e)
        except (
            pd.errors.ParserError,
            pd.errors.ParserWarning,
            pd.errors.EmptyDataError,
            *_GARBLED_ERRORS,
        ) as e2:
            raise TrackMLFormatError(f"garbled file ({e2})", file=display) from e
        raise err from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TrackMLFormatError(
            f"missing column(s) {missing}; the header has {list(df.columns)}",
            file=display,
            column=missing[0],
        )
    cols = list(required) + [c for c in optional if c in df.columns]
    if list(df.columns) != cols:
        df = df[cols]
    return df


def schema_columns(part: str, columns: Iterable[str]) -> dict[str, str]:
    """The schema columns of ``part`` in the challenge's file order, with their dtypes.

    Optional columns (``particle_type``) are included only if in ``columns``; the
    challenge's particles files put ``particle_type`` right after ``particle_id``.
    """
    present = set(columns)
    required = DTYPES[part]
    optional = {c: t for c, t in OPTIONAL_COLUMNS.get(part, {}).items() if c in present}
    if part == "particles" and optional:
        first, *rest = required.items()
        return dict([first, *optional.items(), *rest])
    return {**required, **optional}


def _check_finite(df: pd.DataFrame, display: str) -> None:
    for col in df.columns:
        arr = df[col].to_numpy()
        if arr.dtype.kind != "f":
            continue
        ok = np.isfinite(arr)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            hit_id = int(df["hit_id"].iat[row]) if "hit_id" in df.columns else None
            raise TrackMLFormatError(
                "non-finite value",
                file=display,
                column=col,
                line=_line(row),
                hit_id=hit_id,
                value=arr[row],
            )


def _check_unique(df: pd.DataFrame, col: str, display: str) -> None:
    dup = pd.Index(df[col].to_numpy()).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise TrackMLFormatError(
            f"duplicate {col}", file=display, column=col, line=_line(row), value=df[col].iat[row]
        )


def _check_subset(ids: np.ndarray, ref: np.ndarray, display: str, what: str) -> None:
    """Every ``ids`` (a column of the file ``display``) must be in ``ref``."""
    absent = ~np.isin(ids, ref)
    if absent.any():
        row = int(np.flatnonzero(absent)[0])
        raise TrackMLFormatError(
            f"{int(absent.sum())} row(s) whose hit_id is not in {what}",
            file=display,
            column="hit_id",
            line=_line(row),
            value=ids[row],
        )


def _check_envelope(hits: pd.DataFrame, display: str) -> None:
    """Hits far outside the detector are an error: wrong units or a garbled value."""
    x, y, z = (hits[c].to_numpy(dtype=np.float64) for c in ("x", "y", "z"))
    r_max = FAR_OUTSIDE_FACTOR * DETECTOR_R_MAX_MM
    z_max = FAR_OUTSIDE_FACTOR * DETECTOR_Z_MAX_MM
    r = np.hypot(x, y)
    bad_r = r > r_max
    bad = bad_r | (np.abs(z) > z_max)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    if bad_r[row]:
        column, where = ("x" if abs(x[row]) >= abs(y[row]) else "y"), f"r = {r[row]:.6g} mm"
    else:
        column, where = "z", f"|z| = {abs(z[row]):.6g} mm"
    raise TrackMLFormatError(
        f"{int(bad.sum())} hit(s) far outside the detector, the first at {where}: positions in "
        f"the wrong units? (the detector ends at r = {DETECTOR_R_MAX_MM:g} mm, "
        f"|z| = {DETECTOR_Z_MAX_MM:g} mm; hits beyond r = {r_max:g} mm or |z| = {z_max:g} mm "
        "are rejected unless read with check_envelope=False)",
        file=display,
        column=column,
        line=_line(row),
        hit_id=int(hits["hit_id"].iat[row]),
        value=hits[column].iat[row],
    )


def _check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    if isinstance(parts, str):
        parts = (parts,)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; choose from {PARTS}")
    if "hits" not in parts:
        raise ValueError(f"parts must include 'hits', got {tuple(parts)}")
    return tuple(p for p in PARTS if p in parts)


def _read_from_source(
    source: _Source,
    event_id: int,
    parts: tuple[str, ...],
    validate: bool,
    check_envelope: bool = True,
) -> Event:
    files = source.index.get(event_id, {})
    missing = [p for p in parts if p not in files]
    if missing:
        expected = "; ".join(source.expected_names(event_id, p) for p in missing)
        have = sorted(files)
        raise TrackMLFormatError(
            f"event {event_id}: missing file(s) for part(s) {missing}, expected {expected}"
            + (f" (found parts {have})" if have else ""),
            file=source.display,
        )
    frames: dict[str, pd.DataFrame] = {}
    for part in parts:
        ref = files[part]
        df = _read_table(
            source.open(ref),
            ref.display,
            DTYPES[part],
            OPTIONAL_COLUMNS.get(part),
            compressed=ref.compressed,
        )
        order = list(schema_columns(part, df.columns))
        frames[part] = df if list(df.columns) == order else df[order]
    if validate:
        _validate_event(frames, {p: files[p].display for p in parts}, check_envelope)
    return Event(
        event_id=int(event_id),
        hits=frames["hits"],
        cells=frames.get("cells"),
        particles=frames.get("particles"),
        truth=frames.get("truth"),
    )


def _validate_event(
    frames: dict[str, pd.DataFrame], names: dict[str, str], check_envelope: bool = True
) -> None:
    """Data checks across the parts of one event (vectorised)."""
    for part, df in frames.items():
        _check_finite(df, names[part])
    hits = frames["hits"]
    if len(hits) == 0:
        raise TrackMLFormatError("empty event: the hits file has no rows", file=names["hits"])
    _check_unique(hits, "hit_id", names["hits"])
    if check_envelope:
        _check_envelope(hits, names["hits"])
    hit_ids = hits["hit_id"].to_numpy()
    if "truth" in frames:
        truth = frames["truth"]
        _check_unique(truth, "hit_id", names["truth"])
        truth_ids = truth["hit_id"].to_numpy()
        _check_subset(truth_ids, hit_ids, names["truth"], f"the hits file {names['hits']}")
        if len(truth_ids) != len(hit_ids):  # unique + subset + same size => same set
            absent = ~np.isin(hit_ids, truth_ids)
            row = int(np.flatnonzero(absent)[0])
            raise TrackMLFormatError(
                f"{int(absent.sum())} hit(s) of {names['hits']} have no truth row,"
                f" e.g. the hit on its line {_line(row)}",
                file=names["truth"],
                column="hit_id",
                value=hit_ids[row],
            )
    if "cells" in frames:
        cell_ids = frames["cells"]["hit_id"].to_numpy()
        _check_subset(cell_ids, hit_ids, names["cells"], f"the hits file {names['hits']}")
    if "particles" in frames:
        _check_unique(frames["particles"], "particle_id", names["particles"])


# --------------------------------------------------------------------------- public API


def list_event_ids(path: PathLike) -> list[int]:
    """The sorted ids of the events under ``path`` (directory, zip, or prefix).

    An event counts if any of its part files is present.
    """
    source, fixed = _resolve(path)
    try:
        if fixed is not None:
            return [fixed] if source.index.get(fixed) else []
        return source.event_ids()
    finally:
        source.close()


def event_fingerprints(path: PathLike, parts: Sequence[str] = ("hits", "cells")) -> dict[int, str]:
    """A content fingerprint per event under ``path``: ``{event_id: sha256 hex}``.

    The digest covers the bytes of each of the event's ``parts`` files that is present
    (with the part's name), so two datasets with the same event ids but other contents, or
    a file edited in place, get different fingerprints. Used to decide whether a saved
    per-event result may be reused (see :mod:`cgnn_jax.io.parts`). A full μ = 200 event's
    hits and cells (~16 MB) hash in a few tens of milliseconds.
    """
    import hashlib

    wanted = tuple(parts)
    source, fixed = _resolve(path)
    try:
        ids = (
            ([fixed] if source.index.get(fixed) else [])
            if fixed is not None
            else source.event_ids()
        )
        out: dict[int, str] = {}
        for eid in ids:
            h = hashlib.sha256()
            for part in wanted:
                ref = source.index[eid].get(part)
                if ref is None:
                    continue
                h.update(f"{part}{'.gz' if ref.compressed else ''}\0".encode())
                handle = source.open(ref)
                if isinstance(handle, io.BytesIO):
                    h.update(handle.getbuffer())
                else:
                    with open(handle, "rb") as f:
                        for block in iter(lambda f=f: f.read(1 << 22), b""):
                            h.update(block)
            out[int(eid)] = h.hexdigest()
        return out
    finally:
        source.close()


def read_event(
    path: PathLike,
    event_id: int | None = None,
    parts: Sequence[str] = PARTS,
    validate: bool = True,
    *,
    check_envelope: bool = True,
) -> Event:
    """Read one TrackML event.

    Args:
      path: a directory of ``eventNNNNNNNNN-<part>.csv[.gz]`` files, a ``.zip`` archive
        of such files (any sub-folder), or a prefix ``dir/event000001000``.
      event_id: which event; may be omitted when ``path`` is a prefix or holds exactly
        one event.
      parts: which files to read; must include ``"hits"`` (test data: hits and cells).
      validate: run the data checks (finite values, unique ids, hits/truth/cells cross
        references, non-empty event, hits inside the detector). Structural checks always run.
      check_envelope: with ``validate``, reject hits far outside the TrackML detector
        (beyond twice its envelope ``r = 1100 mm``, ``|z| = 3100 mm``); turn off for
        another detector.

    Returns:
      an :class:`Event` with ``hits`` ``[n_hits]``, ``cells`` ``[n_cells]``,
      ``particles`` ``[n_particles]`` (with ``particle_type`` if the file has it) and
      ``truth`` ``[n_hits]`` frames, dtypes from :data:`~cgnn_jax.io.schema.DTYPES`,
      columns in schema order; parts not requested are ``None``.

    Raises:
      TrackMLFormatError: a missing file, a bad value, an inconsistent event, ...
      FileNotFoundError: ``path`` does not exist.
    """
    wanted = _check_parts(parts)
    source, fixed = _resolve(path)
    try:
        if fixed is not None:
            if event_id is not None and int(event_id) != fixed:
                raise ValueError(f"event_id={event_id} but the path {path} names event {fixed}")
            event_id = fixed
        elif event_id is None:
            ids = source.event_ids()
            if len(ids) != 1:
                shown = ids[:5] + (["..."] if len(ids) > 5 else [])
                raise TrackMLFormatError(
                    f"holds {len(ids)} events {shown}; pass event_id to choose one"
                    if ids
                    else "holds no eventNNNNNNNNN-<part>.csv[.gz] files",
                    file=path,
                )
            event_id = ids[0]
        return _read_from_source(source, int(event_id), wanted, validate, check_envelope)
    finally:
        source.close()


def iter_events(
    path: PathLike,
    parts: Sequence[str] = PARTS,
    event_ids: Iterable[int] | None = None,
    validate: bool = True,
    *,
    check_envelope: bool = True,
) -> Iterator[Event]:
    """Yield the events under ``path`` one at a time, in ascending id order.

    The file names are listed now (so a bad ``path`` fails here); each event is read
    only when the iterator reaches it. ``event_ids`` restricts and orders the events
    (an id without files raises when reached). See :func:`read_event` for the rest.
    """
    wanted = _check_parts(parts)
    source, fixed = _resolve(path)
    source.close()
    if event_ids is not None:
        ids = [int(e) for e in event_ids]
    elif fixed is not None:
        ids = [fixed]
    else:
        ids = source.event_ids()
    return _iter(path, ids, wanted, validate, check_envelope)


def _iter(
    path: PathLike, ids: list[int], parts: tuple[str, ...], validate: bool, check_envelope: bool
) -> Iterator[Event]:
    source: _Source | None = None
    try:
        for eid in ids:
            if source is None:
                source, _ = _resolve(path)
            yield _read_from_source(source, eid, parts, validate, check_envelope)
    finally:
        if source is not None:
            source.close()


def read_submission(path: PathLike, validate: bool = True) -> pd.DataFrame:
    """Read a submission file (``.csv`` or ``.csv.gz``).

    Returns:
      a ``[n_rows]`` frame with columns ``event_id`` (int64), ``hit_id`` (int32),
      ``track_id`` (int64); extra columns are dropped.

    Raises:
      TrackMLFormatError: missing column, unparsable or non-integer value, truncated
        file, or (``validate``) a duplicate ``(event_id, hit_id)`` pair.
      FileNotFoundError: no such file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such submission file: {p}")
    compressed = p.suffix == ".gz"
    df = _read_table(str(p), str(p), SUBMISSION_DTYPES, compressed=compressed)
    if validate:
        dup = df.duplicated(["event_id", "hit_id"]).to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            eid, hid = int(df["event_id"].iat[row]), int(df["hit_id"].iat[row])
            raise TrackMLFormatError(
                f"duplicate (event_id, hit_id) pair ({eid}, {hid})",
                file=p,
                column="hit_id",
                line=_line(row),
                value=hid,
            )
    return df
