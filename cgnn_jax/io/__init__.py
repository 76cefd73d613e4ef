"""The TrackML file layer: read and write events and submissions (csv, csv.gz, zip)."""

from cgnn_jax.io.atomic import atomic_write
from cgnn_jax.io.errors import TrackMLFormatError
from cgnn_jax.io.event import Event
from cgnn_jax.io.fingerprints import event_fingerprints
from cgnn_jax.io.read import iter_events, read_event, read_submission
from cgnn_jax.io.schema import DTYPES, PARTS, event_prefix
from cgnn_jax.io.sources import list_event_ids
from cgnn_jax.io.write import submission_frame, write_event, write_submission

__all__ = [
    "DTYPES",
    "PARTS",
    "Event",
    "TrackMLFormatError",
    "atomic_write",
    "event_fingerprints",
    "event_prefix",
    "iter_events",
    "list_event_ids",
    "read_event",
    "read_submission",
    "submission_frame",
    "write_event",
    "write_submission",
]
