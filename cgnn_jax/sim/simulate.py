"""Simulate one TrackML event: particles -> helices through the real detector -> hits, cells, truth.

Usage::

    from cgnn_jax.sim import simulate_event
    event = simulate_event(seed=0, mu=200)          # cgnn_jax.io.Event, the challenge's format
    small = simulate_event(seed=0, track_fraction=0.1)
    long_region = simulate_event(seed=0, vertex_sigma_z=50.0)  # collisions spread by 50 mm in z

The output has the four parts of a TrackML training event (hits, cells, particles, truth) with the
challenge's columns and dtypes, hit ids sorted by (volume, layer, module) as in real files, and the
phase-1 truth weights, so a simulated event is read, reconstructed and scored exactly as a real one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from cgnn_jax.io.event import Event
from cgnn_jax.io.schema import DTYPES
from cgnn_jax.sim.field import SOLENOID_HALF_LENGTH_MM, SOLENOID_RADIUS_MM, SolenoidField
from cgnn_jax.sim.geometry import load_geometry
from cgnn_jax.sim.particles import Particles, sample_particles
from cgnn_jax.sim.propagate import propagate
from cgnn_jax.sim.response import (
    CLUSTER_MODELS,
    cell_clusters,
    local_to_global,
    module_hits,
    noise_hits,
)

DEFAULT_NOISE = 0.12
# Passive cylinders of the TrackML detector as built in ACTS (``GenericDetectorML``): the beryllium
# beam pipe (r = 19 mm, 0.8 mm thick) and pixel support tube (r = 200 mm, 1.8 mm thick);
# ``(radius mm, half length mm, x/X0)`` with X0(Be) = 352.8 mm.
PASSIVE_MATERIAL: tuple[tuple[float, float, float], ...] = (
    (19.0, 3000.0, 0.8 / 352.8),
    (200.0, 2800.0, 1.8 / 352.8),
)


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Simulation settings (defaults reproduce a real μ = 200 TrackML event).

    ``solenoid``: the finite solenoid's field (:class:`cgnn_jax.sim.field.SolenoidField`, ``b_field``
    at the centre, coil ``solenoid_radius`` / ``solenoid_half_length`` in mm); ``False`` gives the
    uniform ``b_field`` along z (perfect helices). ``passive_material``: passive cylinders
    ``(radius mm, half length mm, x/X0)`` crossed without a hit. ``cluster_model``: how hits fire
    cells (:data:`cgnn_jax.sim.response.CLUSTER_MODELS`): ``"path_length"`` (the default: pixel
    cells from the track's path length in each pixel, with the barrel's Lorentz drift, and the
    charge-weighted hit position, as the TrackML digitisation makes them) or ``"staircase"``
    (calibrated cluster sizes, uniform pixel charge sharing).
    """

    b_field: float = 2.0
    solenoid: bool = True
    solenoid_radius: float = SOLENOID_RADIUS_MM
    solenoid_half_length: float = SOLENOID_HALF_LENGTH_MM
    passive_material: tuple[tuple[float, float, float], ...] = PASSIVE_MATERIAL
    hit_efficiency: float = 0.98
    multiple_scattering: bool = True
    energy_loss: bool = True
    max_steps: int = 64
    cluster_model: str = "path_length"


def _subset(p: Particles, keep: np.ndarray) -> Particles:
    return Particles(
        p.particle_id[keep],
        p.vertex[keep],
        p.momentum[keep],
        p.charge[keep],
        p.max_hits[keep],
        None if p.collision is None else p.collision[keep],
        p.collision_vertex,
    )


def simulate_event(
    seed: int | np.random.Generator = 0,
    mu: float = 200.0,
    *,
    track_fraction: float = 1.0,
    noise: float = DEFAULT_NOISE,
    event_id: int = 0,
    config: SimConfig = SimConfig(),
    vertex_sigma_z: float | None = None,
) -> Event:
    """Simulate one event.

    Args:
      seed: integer seed or numpy generator; the same seed gives the same event.
      mu: pile-up (mean number of collisions); 200 is the TrackML condition.
      track_fraction: keep this random fraction of the particles (with their hits); noise hits are
        thinned by the same fraction so the noise share stays the same.
      noise: the fraction of all hits that are noise (``particle_id == 0``), in ``[0, 1)``.
      event_id: the id written into the Event.
      config: :class:`SimConfig`.
      vertex_sigma_z: the luminous region, RMS (mm) of the collisions' z along the beam: every
        collision's particles share its new vertex (:func:`cgnn_jax.sim.particles.sample_particles`);
        ``None`` keeps the real event's own vertices (σ_z ≈ 6 mm) and the event unchanged.
    Returns:
      An :class:`cgnn_jax.io.Event` with hits, cells, particles and truth (with weights).
    """
    if not 0.0 < track_fraction <= 1.0:
        raise ValueError(f"track_fraction must be in (0, 1], got {track_fraction}")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    if config.cluster_model not in CLUSTER_MODELS:
        raise ValueError(
            f"cluster_model must be one of {CLUSTER_MODELS}, got {config.cluster_model!r}"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    geo = load_geometry()
    parts = sample_particles(rng, mu, vertex_sigma_z)
    if track_fraction < 1.0:
        parts = _subset(parts, rng.random(len(parts)) < track_fraction)
    n_part = len(parts)

    budget = parts.max_hits
    crossings = propagate(
        geo,
        parts.vertex,
        parts.momentum,
        parts.charge,
        np.where(budget > 0, 2 * budget + 4, 0),
        rng,
        b_field=config.b_field,
        field=(
            SolenoidField(config.b_field, config.solenoid_radius, config.solenoid_half_length)
            if config.solenoid
            else None
        ),
        multiple_scattering=config.multiple_scattering,
        energy_loss=config.energy_loss,
        max_steps=config.max_steps,
        passive=config.passive_material,
    )
    mh = module_hits(geo, crossings)
    pidx = crossings.particle[mh["crossing"]]
    # Hit efficiency, then the particle's range: keep its first `budget` recorded hits.
    eff = rng.random(len(pidx)) < config.hit_efficiency
    sel = np.flatnonzero(eff)
    order = sel[np.argsort(pidx[sel], kind="stable")]  # hits are in step order already
    ps = pidx[order]
    first = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
    rank = np.arange(len(ps)) - np.repeat(first, np.diff(np.r_[first, len(ps)]))
    keep = np.sort(order[rank < budget[ps]])
    module = mh["module"][keep]
    cross = mh["crossing"][keep]
    pidx = pidx[keep]
    true_pos = mh["pos"][keep]
    direction = crossings.direction[cross]
    mom = direction * crossings.p[cross][:, None]
    s_hit, s_ch0, s_ch1, s_val, um, vm = cell_clusters(
        geo, module, mh["u"][keep], mh["v"][keep], direction, rng, config.cluster_model
    )
    xyz = local_to_global(geo, module, um, vm)

    n_sig = len(module)
    n_noise = rng.poisson(noise / (1.0 - noise) * n_sig) if noise > 0 else 0
    n_module, n_u, n_v = noise_hits(geo, n_noise, rng)
    n_hit, n_ch0, n_ch1, n_val, n_um, n_vm = cell_clusters(
        geo, n_module, n_u, n_v, None, rng, config.cluster_model
    )
    n_xyz = local_to_global(geo, n_module, n_um, n_vm)

    # All hits, sorted by module as in real files (random order within a module).
    all_module = np.concatenate([module, n_module])
    n_all = len(all_module)
    perm = rng.permutation(n_all)
    order = perm[np.argsort(all_module[perm], kind="stable")]
    new_index = np.empty(n_all, dtype=np.int64)
    new_index[order] = np.arange(n_all)
    hit_id = np.arange(1, n_all + 1, dtype=np.int32)

    all_xyz = np.concatenate([xyz, n_xyz])[order]
    m = all_module[order]
    hits = pd.DataFrame(
        {
            "hit_id": hit_id,
            "x": all_xyz[:, 0],
            "y": all_xyz[:, 1],
            "z": all_xyz[:, 2],
            "volume_id": geo.volume_id[m],
            "layer_id": geo.layer_id[m],
            "module_id": geo.module_id[m],
        }
    ).astype(DTYPES["hits"])

    cell_hit = np.concatenate([new_index[s_hit], new_index[n_sig + n_hit]])
    c_order = np.argsort(cell_hit, kind="stable")
    cells = pd.DataFrame(
        {
            "hit_id": hit_id[cell_hit[c_order]],
            "ch0": np.concatenate([s_ch0, n_ch0])[c_order],
            "ch1": np.concatenate([s_ch1, n_ch1])[c_order],
            "value": np.concatenate([s_val, n_val])[c_order],
        }
    ).astype(DTYPES["cells"])

    pid = np.concatenate([parts.particle_id[pidx], np.zeros(n_noise, dtype=np.int64)])[order]
    tpos = np.concatenate([true_pos, n_xyz])[order]
    tmom = np.concatenate([mom, np.zeros((n_noise, 3))])[order]
    truth = pd.DataFrame(
        {
            "hit_id": hit_id,
            "particle_id": pid,
            "tx": tpos[:, 0],
            "ty": tpos[:, 1],
            "tz": tpos[:, 2],
            "tpx": tmom[:, 0],
            "tpy": tmom[:, 1],
            "tpz": tmom[:, 2],
            "weight": np.zeros(n_all),
        }
    ).astype(DTYPES["truth"])

    particles = pd.DataFrame(
        {
            "particle_id": parts.particle_id,
            "vx": parts.vertex[:, 0],
            "vy": parts.vertex[:, 1],
            "vz": parts.vertex[:, 2],
            "px": parts.momentum[:, 0],
            "py": parts.momentum[:, 1],
            "pz": parts.momentum[:, 2],
            "q": parts.charge,
            "nhits": np.bincount(pidx, minlength=n_part),
        }
    ).astype(DTYPES["particles"])

    from cgnn_jax.metrics.weights import compute_weights

    truth["weight"] = compute_weights(truth, particles).astype(np.float32)
    return Event(event_id=int(event_id), hits=hits, cells=cells, particles=particles, truth=truth)
