"""Simulate and write a whole dataset of events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cgnn_jax.io.event import Event
from cgnn_jax.sim.simulate import DEFAULT_NOISE, simulate_event


def event_seed(seed: int, index: int) -> np.random.Generator:
    """The generator of event ``index`` of a dataset with base seed ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def simulate_dataset(
    out_dir: str | Path,
    n_events: int,
    *,
    mu: float = 200.0,
    seed: int = 0,
    track_fraction: float = 1.0,
    noise: float | None = None,
    first_event: int = 1000,
    compress: bool = False,
    write_workers: int = 1,
) -> Iterator[tuple[Path, Event]]:
    """Simulate ``n_events`` events into ``out_dir``, yielding ``(out_dir, event)`` as each is written.

    ``write_workers``: processes writing each event's files (see :func:`cgnn_jax.io.write_event`).
    """
    from cgnn_jax.io import write_event

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n_events):
        ev = simulate_event(
            event_seed(seed, i),
            mu,
            track_fraction=track_fraction,
            noise=DEFAULT_NOISE if noise is None else noise,
            event_id=first_event + i,
        )
        write_event(ev, out, compress=compress, workers=write_workers)
        yield out, ev


def simulated_events(
    n: int, seed: int, mu: float = 200.0, track_fraction: float = 1.0, first_event: int = 0
) -> list[Event]:
    """``n`` events in memory, seeded as :func:`simulate_dataset` seeds them (event ``i``: ``(seed, i)``)."""
    return [
        simulate_event(
            event_seed(seed, i), mu, track_fraction=track_fraction, event_id=first_event + i
        )
        for i in range(n)
    ]
