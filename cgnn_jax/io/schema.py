"""The TrackML challenge's CSV schema: file parts, columns and dtypes.

Columns and dtypes follow the challenge's own reader (``trackml-library``):

* ``hits``      ``hit_id, x, y, z, volume_id, layer_id, module_id``
* ``cells``     ``hit_id, ch0, ch1, value``
* ``particles`` ``particle_id, [particle_type,] vx, vy, vz, px, py, pz, q, nhits``
* ``truth``     ``hit_id, particle_id, tx, ty, tz, tpx, tpy, tpz, weight``

A submission is ``event_id, hit_id, track_id``.
"""

from __future__ import annotations

PARTS: tuple[str, ...] = ("hits", "cells", "particles", "truth")

DTYPES: dict[str, dict[str, str]] = {
    "hits": {
        "hit_id": "int32",
        "x": "float32",
        "y": "float32",
        "z": "float32",
        "volume_id": "int32",
        "layer_id": "int32",
        "module_id": "int32",
    },
    "cells": {"hit_id": "int32", "ch0": "int32", "ch1": "int32", "value": "float32"},
    "particles": {
        "particle_id": "int64",
        "vx": "float32",
        "vy": "float32",
        "vz": "float32",
        "px": "float32",
        "py": "float32",
        "pz": "float32",
        "q": "int32",
        "nhits": "int32",
    },
    "truth": {
        "hit_id": "int32",
        "particle_id": "int64",
        "tx": "float32",
        "ty": "float32",
        "tz": "float32",
        "tpx": "float32",
        "tpy": "float32",
        "tpz": "float32",
        "weight": "float32",
    },
}

# Optional columns a part may carry (real particles files of some releases have it).
OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {"particles": {"particle_type": "int32"}}

SUBMISSION_DTYPES: dict[str, str] = {"event_id": "int64", "hit_id": "int32", "track_id": "int64"}

# The TrackML detector's envelope in mm: its modules reach r = 1025 mm and |z| = 2956 mm (see
# cgnn_jax.sim.geometry). Readers reject a hit more than FAR_OUTSIDE_FACTOR times as far out: that
# is not a stray hit but a unit mix-up (micrometres for mm) or a garbled value.
DETECTOR_R_MAX_MM = 1100.0
DETECTOR_Z_MAX_MM = 3100.0
FAR_OUTSIDE_FACTOR = 2.0

EVENT_PREFIX = "event"
EVENT_ID_DIGITS = 9


def event_prefix(event_id: int) -> str:
    """``1000 -> 'event000001000'``."""
    return f"{EVENT_PREFIX}{int(event_id):0{EVENT_ID_DIGITS}d}"
