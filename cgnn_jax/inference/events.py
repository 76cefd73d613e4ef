"""Events as the learned stages see them: hit features and truth particle ids."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from cgnn_jax.features import HitFeatures, hit_features
from cgnn_jax.io.event import Event

__all__ = ["PreparedEvent", "as_prepared", "evaluation_events", "prepare_event"]


@dataclasses.dataclass
class PreparedEvent:
    """One event's hit features ``hf`` and per-hit particle ids ``pid [n]`` (0: noise)."""

    event_id: int
    hf: HitFeatures
    pid: np.ndarray

    @property
    def n(self) -> int:
        return len(self.pid)


def prepare_event(event: Event) -> PreparedEvent:
    """Hit features and truth particle ids (zeros if the event has no truth)."""
    hf = hit_features(event)
    if event.truth is not None:
        tr = event.truth.set_index("hit_id")["particle_id"]
        pid = tr.reindex(event.hits["hit_id"].to_numpy()).to_numpy(np.int64)
    else:
        pid = np.zeros(event.n_hits, np.int64)
    return PreparedEvent(int(event.event_id), hf, pid)


def as_prepared(event: Event | PreparedEvent) -> PreparedEvent:
    """``event`` itself if already prepared, else :func:`prepare_event` of it."""
    return event if isinstance(event, PreparedEvent) else prepare_event(event)


def evaluation_events(
    data: str | None, n_events: int = 2, seed: int = 99
) -> tuple[Iterator[Event], int]:
    """``(events, count)`` for the quality reports: the events of a dataset (hits, cells, truth),
    or, when ``data`` is None, ``n_events`` simulated full μ = 200 events with ``seed``."""
    if data is None:
        from cgnn_jax.sim.dataset import simulated_events

        return iter(simulated_events(n_events, seed, first_event=1)), n_events
    from cgnn_jax.io import iter_events, list_event_ids

    return iter_events(data, parts=("hits", "cells", "truth")), len(list_event_ids(data))
