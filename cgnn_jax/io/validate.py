"""The data checks of an event's parts: finite values, unique ids, hits/truth/cells cross
references, a non-empty event, hits inside the detector (all vectorised numpy).

Each failure raises :class:`~cgnn_jax.io.errors.TrackMLFormatError` naming the file, line,
column and value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cgnn_jax.io.errors import TrackMLFormatError
from cgnn_jax.io.schema import (
    DETECTOR_R_MAX_MM,
    DETECTOR_Z_MAX_MM,
    FAR_OUTSIDE_FACTOR,
    PARTS,
)
from cgnn_jax.io.tables import data_line


def check_finite(df: pd.DataFrame, display: str) -> None:
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
                line=data_line(row),
                hit_id=hit_id,
                value=arr[row],
            )


def check_unique(df: pd.DataFrame, col: str, display: str) -> None:
    dup = pd.Index(df[col].to_numpy()).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise TrackMLFormatError(
            f"duplicate {col}",
            file=display,
            column=col,
            line=data_line(row),
            value=df[col].iat[row],
        )


def check_subset(ids: np.ndarray, ref: np.ndarray, display: str, what: str) -> None:
    """Every ``ids`` (a column of the file ``display``) must be in ``ref``."""
    absent = ~np.isin(ids, ref)
    if absent.any():
        row = int(np.flatnonzero(absent)[0])
        raise TrackMLFormatError(
            f"{int(absent.sum())} row(s) whose hit_id is not in {what}",
            file=display,
            column="hit_id",
            line=data_line(row),
            value=ids[row],
        )


def check_detector_envelope(hits: pd.DataFrame, display: str) -> None:
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
        line=data_line(row),
        hit_id=int(hits["hit_id"].iat[row]),
        value=hits[column].iat[row],
    )


def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    if isinstance(parts, str):
        parts = (parts,)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; choose from {PARTS}")
    if "hits" not in parts:
        raise ValueError(f"parts must include 'hits', got {tuple(parts)}")
    return tuple(p for p in PARTS if p in parts)


def validate_event(
    frames: dict[str, pd.DataFrame], names: dict[str, str], check_envelope: bool = True
) -> None:
    """Data checks across the parts of one event (vectorised)."""
    for part, df in frames.items():
        check_finite(df, names[part])
    hits = frames["hits"]
    if len(hits) == 0:
        raise TrackMLFormatError("empty event: the hits file has no rows", file=names["hits"])
    check_unique(hits, "hit_id", names["hits"])
    if check_envelope:
        check_detector_envelope(hits, names["hits"])
    hit_ids = hits["hit_id"].to_numpy()
    if "truth" in frames:
        truth = frames["truth"]
        check_unique(truth, "hit_id", names["truth"])
        truth_ids = truth["hit_id"].to_numpy()
        check_subset(truth_ids, hit_ids, names["truth"], f"the hits file {names['hits']}")
        if len(truth_ids) != len(hit_ids):  # unique + subset + same size => same set
            absent = ~np.isin(hit_ids, truth_ids)
            row = int(np.flatnonzero(absent)[0])
            raise TrackMLFormatError(
                f"{int(absent.sum())} hit(s) of {names['hits']} have no truth row,"
                f" e.g. the hit on its line {data_line(row)}",
                file=names["truth"],
                column="hit_id",
                value=hit_ids[row],
            )
    if "cells" in frames:
        cell_ids = frames["cells"]["hit_id"].to_numpy()
        check_subset(cell_ids, hit_ids, names["cells"], f"the hits file {names['hits']}")
    if "particles" in frames:
        check_unique(frames["particles"], "particle_id", names["particles"])
