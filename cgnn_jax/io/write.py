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
from cgnn_jax.io.schema import SUBMISSION_DTYPES, event_prefix
from cgnn_jax.io.tables import schema_columns
from cgnn_jax.utils.cpus import ordered_map

PathLike = str | os.PathLike[str]

# gzip level 6: within a few % of level 9's size at a fraction of its time. mtime=0 makes
# the bytes depend on the content only.
_GZIP: dict[str, Any] = {"method": "gzip", "compresslevel": 6, "mtime": 0}


def submission_frame(event_id: int, hit_id: np.ndarray, track_id: np.ndarray) -> pd.DataFrame:
    """A ``[n]`` submission frame ``event_id, hit_id, track_id`` with the schema dtypes."""
    n = len(hit_id)
    return pd.DataFrame(
        {
            "event_id": np.full(n, int(event_id), dtype=SUBMISSION_DTYPES["event_id"]),
            "hit_id": np.asarray(hit_id).astype(SUBMISSION_DTYPES["hit_id"]),
            "track_id": np.asarray(track_id).astype(SUBMISSION_DTYPES["track_id"]),
        }
    )


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


def csv_bytes(df: pd.DataFrame, rows: slice | None = None, header: bool = True) -> bytes:
    """``df`` as csv bytes (header row, no index, ``\n`` line ends), the same bytes as
    ``df.to_csv(index=False, lineterminator="\n")`` for numeric and bool columns at several times
    its speed: each column is formatted by numpy's C cast to a fixed-width byte string (floats as
    their shortest round-tripping repr, as pandas does; NaN as an empty field, as pandas does);
    the columns and separators are laid side by side in one ``[rows, width]`` byte matrix and
    the NUL padding is dropped (csv text never holds a NUL byte). No Python loop over rows.

    ``rows``: format only these rows (a slice of ``df``'s rows); ``header``: start with the
    header row. Pieces of consecutive row ranges, joined, are the bytes of the whole.
    """
    head = ",".join(map(str, df.columns)).encode() + b"\n" if header else b""
    rows = slice(0, len(df)) if rows is None else rows
    cols = [df[c].to_numpy()[rows] for c in df.columns]
    n = len(cols[0]) if cols else 0
    if not n:
        return head
    blocks = []
    for i, (c, a) in enumerate(zip(df.columns, cols, strict=True)):
        if a.dtype.kind not in "iufb":
            raise TypeError(f"csv_bytes: column {c!r} has dtype {a.dtype}, not numeric")
        b = _as_bytes(a)
        if a.dtype.kind == "f":
            nan = np.isnan(a)
            if nan.any():
                b[nan] = b""
        blocks.append(np.ascontiguousarray(b).view(np.uint8).reshape(n, b.dtype.itemsize))
        sep = b"\n" if i == len(cols) - 1 else b","
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


def _write_bytes(data: bytes, path: Path, compress: bool) -> None:
    with atomic_write(path, "wb") as f:
        if compress:
            f.write(gzip.compress(data, compresslevel=_GZIP["compresslevel"], mtime=0))
        else:
            f.write(data)


def _write_csv(df: pd.DataFrame, path: Path, compress: bool) -> None:
    _write_bytes(csv_bytes(df), path, compress)


def _fork_context():
    """The ``fork`` multiprocessing context, or ``None`` where forking is unsafe (JAX,
    multithreaded, is loaded) or not available."""
    import multiprocessing
    import sys

    if "jax" in sys.modules:
        return None
    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform
        return None


def _parallel_csv_bytes(frames: list[pd.DataFrame], workers: int) -> list[bytes]:
    """``[csv_bytes(df) for df in frames]``, formatted by ``workers`` processes: this one and
    ``workers - 1`` forked children, each taking one consecutive range of every frame's rows
    (so the work is even whatever the frames' sizes). A child inherits the frames by the fork
    and sends its pieces back through a pipe; the pieces are joined in row order, the same bytes
    as one process writes. Serial where forking is unsafe or ``workers <= 1``."""
    ctx = _fork_context() if workers > 1 else None
    if ctx is None:
        return [csv_bytes(df) for df in frames]

    def ranges(w: int) -> list[slice]:
        return [slice(len(df) * w // workers, len(df) * (w + 1) // workers) for df in frames]

    def child(conn, w: int) -> None:
        try:  # all pieces first: a send blocks until the parent, busy formatting, reads it
            pieces = [
                csv_bytes(df, rows, header=False)
                for df, rows in zip(frames, ranges(w), strict=True)
            ]
            for piece in pieces:
                conn.send_bytes(piece)
        except BaseException as e:  # reported to the parent, which raises
            conn.send_bytes(b"\0" + repr(e).encode())
        finally:
            conn.close()

    procs = []
    for w in range(1, workers):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=child, args=(send, w), daemon=True)
        proc.start()
        send.close()
        procs.append((proc, recv))
    try:
        pieces = [[csv_bytes(df, rows)] for df, rows in zip(frames, ranges(0), strict=True)]
        for _, recv in procs:
            for i in range(len(frames)):
                try:
                    piece = recv.recv_bytes()
                except EOFError:
                    raise RuntimeError("a csv writer process ended without its result") from None
                if piece[:1] == b"\0":
                    raise RuntimeError(f"a csv writer process failed: {piece[1:].decode()}")
                pieces[i].append(piece)
    finally:
        for proc, recv in procs:
            recv.close()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [b"".join(p) for p in pieces]


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
      workers: format the rows in this many processes (this one and forked children; float
        formatting dominates: a full μ = 200 event takes ~1.1 s in one process, ~0.6 s in two)
        and compress the parts in this many threads. Ignored (serial) when JAX is loaded in
        this process, as forking a multithreaded JAX process is unsafe. The bytes are the same
        for any number of workers.

    Returns:
      the written paths, in part order (hits, cells, particles, truth).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = event_prefix(event.event_id)
    ext = ".csv.gz" if compress else ".csv"
    paths, frames = [], []
    for part, df in event.parts().items():
        path = out / f"{prefix}-{part}{ext}"
        paths.append((part, path))
        frames.append(_cast(df, schema_columns(part, df.columns), path))
    data = _parallel_csv_bytes(frames, max(1, int(workers)))
    jobs = [(d, path, compress) for d, (_, path) in zip(data, paths, strict=True)]
    # gzip on threads (zlib frees the GIL); plain files in this thread
    for _ in ordered_map(lambda j: _write_bytes(*j), jobs, workers if compress else 1):
        pass
    written = []
    for part, path in paths:
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
