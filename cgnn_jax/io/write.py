"""Writing TrackML events and submissions in the challenge's csv format, atomically."""

from __future__ import annotations

import contextlib
import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgnn_jax.io.atomic import atomic_write
from cgnn_jax.io.event import Event
from cgnn_jax.io.read import schema_columns
from cgnn_jax.io.schema import SUBMISSION_DTYPES, event_prefix

PathLike = str | os.PathLike[str]

# gzip level 6: within a few % of level 9's size at a fraction of its time. mtime=0 makes
# the bytes depend on the content only.
_GZIP: dict[str, Any] = {"method": "gzip", "compresslevel": 6, "mtime": 0}


def _cast(df: pd.DataFrame, dtypes: dict[str, str], target: Path) -> pd.DataFrame:
    """``df[list(dtypes)]`` cast to the schema dtypes, refusing lossy integer casts."""
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write {target}: the frame lacks column(s) {missing}")
    out = {}
    for col, dt in dtypes.items():
        arr = df[col].to_numpy()
        want = np.dtype(dt)
        if arr.dtype != want:
            if want.kind in "iu":
                if arr.dtype.kind not in "iub":
                    with np.errstate(invalid="ignore"):
                        ok = np.isfinite(arr) & (arr == np.round(arr))
                    if not ok.all():
                        row = int(np.flatnonzero(~ok)[0])
                        raise ValueError(
                            f"cannot write {target}: column {col!r} row {row} value "
                            f"{arr[row]!r} is not an integer"
                        )
                info = np.iinfo(want)
                if arr.size and (arr.min() < info.min or arr.max() > info.max):
                    raise ValueError(
                        f"cannot write {target}: column {col!r} has values outside {dt} range"
                    )
            arr = arr.astype(want)
        out[col] = arr
    return pd.DataFrame(out, copy=False)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as csv bytes (header row, no index, ``\n`` line ends), the same bytes as
    ``df.to_csv(index=False, lineterminator="\n")`` for numeric and bool columns at several times
    its speed: each column is formatted by numpy's C cast to a fixed-width byte string (floats as
    their shortest round-tripping repr, as pandas does; NaN as an empty field, as pandas does);
    the columns and separators are laid side by side in one ``[rows, width]`` byte matrix and
    the NUL padding is dropped (csv text never holds a NUL byte). No Python loop over rows."""
    head = ",".join(map(str, df.columns)).encode() + b"\n"
    n = len(df)
    if not n:
        return head
    blocks = []
    for i, c in enumerate(df.columns):
        a = df[c].to_numpy()
        if a.dtype.kind not in "iufb":
            raise TypeError(f"csv_bytes: column {c!r} has dtype {a.dtype}, not numeric")
        b = _as_bytes(a)
        if a.dtype.kind == "f":
            nan = np.isnan(a)
            if nan.any():
                b[nan] = b""
        blocks.append(np.ascontiguousarray(b).view(np.uint8).reshape(n, b.dtype.itemsize))
        sep = b"\n" if i == len(df.columns) - 1 else b","
        blocks.append(np.full((n, 1), sep[0], np.uint8))
    flat = np.concatenate(blocks, axis=1).ravel()
    return head + flat[flat != 0].tobytes()


def _as_bytes(a: np.ndarray) -> np.ndarray:
    """``a.astype("S")``, formatting each distinct value once where values repeat (ids of
    volumes, layers, modules and particles, cell channels, charges: ~3x faster on an event's
    cells); the same bytes. Floats with a negative zero keep the plain path (``np.unique``
    merges -0.0 with 0.0, which print differently); runs of a sorted integer column are formatted
    once per run without sorting."""
    if len(a) >= 4096 and a.dtype.kind in "iu":  # runs of a sorted column (cells' hit ids)
        d = a[1:] != a[:-1]
        runs = int(np.count_nonzero(d)) + 1
        if 2 * runs <= len(a) and not np.any(a[1:] < a[:-1]):
            starts = np.concatenate([[0], np.flatnonzero(d) + 1])
            return np.repeat(a[starts].astype("S"), np.diff(np.append(starts, len(a))))
    if len(a) >= 4096 and not (a.dtype.kind == "f" and np.any((a == 0) & np.signbit(a))):
        u, inv = np.unique(a, return_inverse=True)
        if 4 * len(u) <= len(a):
            return u.astype("S")[inv.reshape(-1)]
    return a.astype("S")


def _write_csv(df: pd.DataFrame, path: Path, compress: bool) -> None:
    data = csv_bytes(df)
    with atomic_write(path, "wb") as f:
        if compress:
            f.write(gzip.compress(data, compresslevel=_GZIP["compresslevel"], mtime=0))
        else:
            f.write(data)


def _write_part(part: str, df: pd.DataFrame, path: Path, compress: bool) -> None:
    _write_csv(_cast(df, schema_columns(part, df.columns), path), path, compress)


def _fork_pool(workers: int):
    """A process pool for writing parts in parallel, or ``None`` where forking is unsafe (JAX,
    multithreaded, is loaded) or not available."""
    import multiprocessing
    import sys

    if workers <= 1 or "jax" in sys.modules:
        return None
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform
        return None
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=ctx)


def write_event(
    event: Event, out_dir: PathLike, compress: bool = False, workers: int = 1
) -> list[Path]:
    """Write every present part of ``event`` as ``eventNNNNNNNNN-<part>.csv[.gz]``.

    Columns are written in schema order (header row, no index), cast to the schema
    dtypes; extra columns are dropped. Each file is replaced atomically; a sibling of
    the other format (``.csv`` vs ``.csv.gz``) of the same part is removed afterwards,
    so readers cannot pick up a stale copy.

    Args:
      event: the event; ``hits`` ``[n_hits]`` and any of cells/particles/truth.
      out_dir: target directory (created if needed).
      compress: write ``.csv.gz`` instead of ``.csv``.
      workers: write the parts in this many forked processes (float formatting dominates: a
        full μ = 200 event takes ~2.9 s in one process, ~1.6 s in two). Ignored (serial) when
        JAX is loaded in this process, as forking a multithreaded JAX process is unsafe.

    Returns:
      the written paths, in part order (hits, cells, particles, truth).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = event_prefix(event.event_id)
    ext = ".csv.gz" if compress else ".csv"
    jobs = [(part, df, out / f"{prefix}-{part}{ext}") for part, df in event.parts().items()]
    pool = _fork_pool(min(int(workers), len(jobs)))
    if pool is None:
        for part, df, path in jobs:
            _write_part(part, df, path, compress)
    else:
        with pool:  # largest first; each part is still replaced atomically
            order = sorted(jobs, key=lambda j: -j[1].size)
            for f in [
                pool.submit(_write_part, part, df, path, compress) for part, df, path in order
            ]:
                f.result()
    written = []
    for part, _, path in jobs:
        other = out / f"{prefix}-{part}{'.csv' if compress else '.csv.gz'}"
        with contextlib.suppress(FileNotFoundError):
            other.unlink()
        written.append(path)
    return written


def write_submission(df: pd.DataFrame, path: PathLike) -> Path:
    """Write a submission ``[n_rows]`` frame (``event_id, hit_id, track_id``) atomically.

    Gzip-compressed when ``path`` ends in ``.gz``. Extra columns are dropped.

    Raises:
      ValueError: a column is missing, a value is not an integer of the schema range,
        or an ``(event_id, hit_id)`` pair repeats.
    """
    p = Path(path)
    table = _cast(df, SUBMISSION_DTYPES, p)
    dup = table.duplicated(["event_id", "hit_id"]).to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise ValueError(
            f"cannot write {p}: duplicate (event_id, hit_id) pair "
            f"({table['event_id'].iat[row]}, {table['hit_id'].iat[row]}) at row {row}"
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(table, p, p.suffix == ".gz")
    return p
