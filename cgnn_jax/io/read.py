"""Reading TrackML events and submissions from csv / csv.gz files, directories and zips.

Three ways to point at events:

* a directory holding ``eventNNNNNNNNN-{hits,cells,particles,truth}.csv[.gz]`` files;
* a ``.zip`` archive holding such files, at any depth (the challenge's
  ``train_sample.zip`` keeps them in a ``train_100_events/`` folder);
* a prefix path ``dir/event000001000`` (the challenge library's style); a path to one
  of an event's files (``dir/event000001000-hits.csv``) works the same way.

Where the files are (:mod:`.sources`), the parse of each csv (:mod:`.tables`), the data checks
(:mod:`.validate`) and the events' content fingerprints (:mod:`.fingerprints`) have modules of
their own; this one reads whole events and submissions with them.

Structural problems (a missing file or column, a value that cannot be parsed, a
truncated or garbled file) always raise :class:`TrackMLFormatError`; the data checks
(non-finite values, duplicate ids, hits/truth/cells cross references, empty event, hits far
outside the detector) run when ``validate=True``.

A plain csv must end with a line end: a file cut off inside its last line (a truncated copy
or download) would otherwise parse, with a shortened last value. Compressed files carry their
own length and checksum.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cgnn_jax.io.errors import TrackMLFormatError
from cgnn_jax.io.event import Event
from cgnn_jax.io.schema import DTYPES, OPTIONAL_COLUMNS, PARTS, SUBMISSION_DTYPES
from cgnn_jax.io.sources import PathLike, Source, resolve_source
from cgnn_jax.io.tables import data_line, read_table, schema_columns
from cgnn_jax.io.validate import check_parts, validate_event


def _read_from_source(
    source: Source,
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
        df = read_table(
            source.open(ref),
            ref.display,
            DTYPES[part],
            OPTIONAL_COLUMNS.get(part),
            compressed=ref.compressed,
        )
        order = list(schema_columns(part, df.columns))
        frames[part] = df if list(df.columns) == order else df[order]
    if validate:
        validate_event(frames, {p: files[p].display for p in parts}, check_envelope)
    return Event(
        event_id=int(event_id),
        hits=frames["hits"],
        cells=frames.get("cells"),
        particles=frames.get("particles"),
        truth=frames.get("truth"),
    )


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
    wanted = check_parts(parts)
    source, fixed = resolve_source(path)
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
    wanted = check_parts(parts)
    source, fixed = resolve_source(path)
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
    source: Source | None = None
    try:
        for eid in ids:
            if source is None:
                source, _ = resolve_source(path)
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
    df = read_table(str(p), str(p), SUBMISSION_DTYPES, compressed=compressed)
    if validate:
        dup = df.duplicated(["event_id", "hit_id"]).to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            eid, hid = int(df["event_id"].iat[row]), int(df["hit_id"].iat[row])
            raise TrackMLFormatError(
                f"duplicate (event_id, hit_id) pair ({eid}, {hid})",
                file=p,
                column="hit_id",
                line=data_line(row),
                value=hid,
            )
    return df
