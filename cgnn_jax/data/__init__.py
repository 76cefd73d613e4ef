"""Data shipped with the package: a reduced real TrackML event (``real/``, with its citation)."""

from __future__ import annotations

from pathlib import Path

from cgnn_jax.io.event import Event

REAL_SAMPLE_DIR = Path(__file__).resolve().parent / "real"
REAL_SAMPLE_EVENT_ID = 2
# The tracks it keeps of a μ = 200 event, and its collisions' spread along the beam (mm): the
# settings of simulated events of the same kind.
REAL_SAMPLE_TRACK_FRACTION = 0.025
REAL_SAMPLE_VERTEX_SIGMA_Z = 50.0

__all__ = [
    "REAL_SAMPLE_DIR",
    "REAL_SAMPLE_EVENT_ID",
    "REAL_SAMPLE_TRACK_FRACTION",
    "REAL_SAMPLE_VERTEX_SIGMA_Z",
    "real_sample",
]


def real_sample() -> Event:
    """The shipped real event (hits, cells, particles, truth), read as any event is."""
    from cgnn_jax.io import read_event

    return read_event(REAL_SAMPLE_DIR, REAL_SAMPLE_EVENT_ID)
