"""Training data for the learned stages: events -> features and truth, concatenated on device."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from cgnn_jax.features import HitFeatures, hit_features
from cgnn_jax.io.event import Event
from cgnn_jax.sim.dataset import simulated_events

__all__ = [
    "PairData",
    "PreparedEvent",
    "evaluation_events",
    "pair_data",
    "prepare_event",
    "simulated_events",
]


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


@dataclasses.dataclass
class PairData:
    """Concatenated hits of several events for pair sampling inside jit (all numpy, ``[N]``).

    ``x [N, F]`` features; ``pid [N]``; ``event_start/event_count [N]`` the row range of each
    hit's event; ``signal [S]`` rows of non-noise hits; ``by_particle [S]`` signal rows grouped by
    particle with ``group_start/group_count/rank [N]`` for each hit's particle group.
    """

    x: np.ndarray
    pid: np.ndarray
    event_start: np.ndarray
    event_count: np.ndarray
    signal: np.ndarray
    by_particle: np.ndarray
    group_start: np.ndarray
    group_count: np.ndarray
    rank: np.ndarray


def pair_data(events: list[PreparedEvent]) -> PairData:
    """Stack events; particle ids are made unique across events."""
    x = np.concatenate([e.hf.x for e in events]).astype(np.float32)
    counts = np.array([e.n for e in events])
    starts = np.cumsum(counts) - counts
    ev_start = np.repeat(starts, counts)
    ev_count = np.repeat(counts, counts)
    # A particle is (event index, particle_id): ids are only unique within an event.
    event_index = np.repeat(np.arange(len(events)), counts)
    raw = np.concatenate([e.pid for e in events])
    _, key = np.unique(np.stack([event_index, raw], 1), axis=0, return_inverse=True)
    key = key.reshape(-1)
    signal = np.flatnonzero(raw != 0)
    order = signal[np.argsort(key[signal], kind="stable")]
    k_sorted = key[order]
    first = np.r_[0, np.flatnonzero(np.diff(k_sorted)) + 1]
    cnt = np.diff(np.r_[first, len(order)])
    n = len(x)
    group_start = np.zeros(n, np.int64)
    group_count = np.ones(n, np.int64)
    rank = np.zeros(n, np.int64)
    group_start[order] = np.repeat(first, cnt)
    group_count[order] = np.repeat(cnt, cnt)
    rank[order] = np.arange(len(order)) - np.repeat(first, cnt)
    pid = np.where(raw != 0, key + 1, 0).astype(np.int64)
    return PairData(x, pid, ev_start, ev_count, signal, order, group_start, group_count, rank)


def evaluation_events(
    data: str | None, n_events: int = 2, seed: int = 99
) -> tuple[Iterator[Event], int]:
    """``(events, count)`` for the quality reports: the events of a dataset (hits, cells, truth),
    or, when ``data`` is None, ``n_events`` simulated full μ = 200 events with ``seed``."""
    if data is None:
        return iter(simulated_events(n_events, seed, first_event=1)), n_events
    from cgnn_jax.io import iter_events, list_event_ids

    return iter_events(data, parts=("hits", "cells", "truth")), len(list_event_ids(data))
