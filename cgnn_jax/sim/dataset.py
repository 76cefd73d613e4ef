"""Simulate and write a whole dataset of events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cgnn_jax.io.event import Event
from cgnn_jax.sim.simulate import DEFAULT_NOISE, SimConfig, simulate_event

# A luminous region: one RMS in mm, or a range ``(low, high)`` each event draws its RMS from.
VertexSigmaZ = float | tuple[float, float] | None


def event_seed(seed: int, index: int) -> np.random.Generator:
    """The generator of event ``index`` of a dataset with base seed ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def event_vertex_sigma_z(vertex_sigma_z: VertexSigmaZ, seed: int, index: int) -> float | None:
    """Event ``index``'s luminous region (mm): ``vertex_sigma_z`` itself, or for a range
    ``(low, high)`` a uniform draw from it seeded by ``(seed, index)`` apart from the event's own
    stream (the same event at a fixed value differs only in its vertices' z)."""
    if vertex_sigma_z is None:
        return None
    if isinstance(vertex_sigma_z, (tuple, list)):
        if len(vertex_sigma_z) != 2 or not 0 <= vertex_sigma_z[0] <= vertex_sigma_z[1]:
            raise ValueError(
                f"vertex_sigma_z range must be (low, high) with 0 <= low <= high, got "
                f"{vertex_sigma_z}"
            )
        low, high = map(float, vertex_sigma_z)
        return float(np.random.default_rng([int(seed), int(index), 1]).uniform(low, high))
    return float(vertex_sigma_z)


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
    vertex_sigma_z: VertexSigmaZ = None,
    config: SimConfig | None = None,
) -> Iterator[tuple[Path, Event]]:
    """Simulate ``n_events`` events into ``out_dir``, yielding ``(out_dir, event)`` as each is written.

    ``write_workers``: processes writing each event's files (see :func:`cgnn_jax.io.write_event`).
    ``vertex_sigma_z``: the luminous region (:func:`event_vertex_sigma_z`; ``None``: the real
    event's own, σ_z ≈ 6 mm). ``config``: the simulator's settings (:class:`SimConfig`; ``None``:
    the defaults).
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
            vertex_sigma_z=event_vertex_sigma_z(vertex_sigma_z, seed, i),
            config=SimConfig() if config is None else config,
        )
        write_event(ev, out, compress=compress, workers=write_workers)
        yield out, ev


def simulated_events(
    n: int,
    seed: int,
    mu: float = 200.0,
    track_fraction: float = 1.0,
    first_event: int = 0,
    vertex_sigma_z: VertexSigmaZ = None,
    config: SimConfig | None = None,
) -> list[Event]:
    """``n`` events in memory, seeded as :func:`simulate_dataset` seeds them (event ``i``: ``(seed, i)``)."""
    return [
        simulate_event(
            event_seed(seed, i),
            mu,
            track_fraction=track_fraction,
            event_id=first_event + i,
            vertex_sigma_z=event_vertex_sigma_z(vertex_sigma_z, seed, i),
            config=SimConfig() if config is None else config,
        )
        for i in range(n)
    ]
