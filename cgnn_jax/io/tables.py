"""Parsing one TrackML csv (or csv.gz) with the schema dtypes, naming the first bad value.

Reading is one ``pandas.read_csv`` call per file with the schema dtypes (C parser, no
NA detection). Only when that fast parse fails is the file parsed again as text, to find
and name the first bad value. A missing column, a value that cannot be parsed, a truncated or
garbled file raise :class:`~cgnn_jax.io.errors.TrackMLFormatError`.

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
from collections.abc import Iterable

import numpy as np
import pandas as pd

from cgnn_jax.io.errors import TrackMLFormatError
from cgnn_jax.io.schema import DTYPES, OPTIONAL_COLUMNS

# Errors a truncated / corrupt compressed stream or archive member can raise.
GARBLED_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    OSError,
)


def data_line(row: int) -> int:
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
        reason,
        file=display,
        column=col,
        line=data_line(row),
        hit_id=hit_id,
        value=raw[col].iat[row],
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


def read_table(
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
    except GARBLED_ERRORS as e:
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
            *GARBLED_ERRORS,
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
