"""Particle generation calibrated on a real μ = 200 TrackML event.

The generator resamples the true particles of the real training event ``event000001000`` (shipped as
``data/real_particles_event000001000.csv.gz``), so that the joint distribution of p_T, η, charge,
production vertex (primaries spread along the beam line, displaced secondaries out to the strips)
and the number of hits the particle left are the real ones. Each resampled particle is made new by
symmetries of the detector and small smearings:

* a uniform rotation about the beam axis (vertex and momentum together),
* a reflection z -> -z with probability 1/2,
* a log-normal smear of p_T (σ = 5 %) and a Gaussian smear of η (σ = 0.02).

The particle count is Poisson with mean ``n_real * mu / 200``. The real particle's hit count becomes
the particle's *range*: the number of hits after which it ends (hadronic interaction, conversion,
decay, leaving through a gap), so hits-per-particle follow the real event where the geometry allows.

**Luminous region.** The real event's 159 collisions (TrackML's ``particle_id >> 52``: one of them
the hard scatter, the others pile-up) sit along the beam with σ_z ≈ 6 mm; other TrackML productions
spread them further (≈ 50 mm). By default (``vertex_sigma_z=None``) the resampled vertices are the
real ones as they are. With ``vertex_sigma_z`` every particle keeps its displacement from its real
collision's vertex (rotated and reflected with it, so secondaries stay where their parents decayed),
and each collision's vertex is placed anew along the beam, shared by all its particles: reflected in
z with probability 1/2 and shifted by a common ``N(0, sqrt(σ_z² - σ_0²))`` (σ_0: the real
collisions' spread), or scaled by ``σ_z / σ_0`` for a ``σ_z`` below σ_0. A simulated collision is one
real collision resampled, so its particle count scales with ``mu / 200``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd

REAL_PARTICLES = Path(__file__).resolve().parent / "data" / "real_particles_event000001000.csv.gz"
REAL_MU = 200.0
PROMPT_RADIUS_MM = 1.0  # vertices closer to the beam than this are a collision's own


@dataclasses.dataclass
class Particles:
    """Sampled particles, arrays ``[P]``: vertex (mm), momentum (GeV), charge, hit budget, ids."""

    particle_id: np.ndarray
    vertex: np.ndarray  # [P, 3]
    momentum: np.ndarray  # [P, 3]
    charge: np.ndarray  # [P] ±1
    max_hits: np.ndarray  # [P] int
    # With ``vertex_sigma_z``: each particle's collision ``[P]`` and the collisions' vertices
    # ``[C, 3]`` (mm); ``None`` otherwise.
    collision: np.ndarray | None = None
    collision_vertex: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.particle_id)

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.momentum[:, 0], self.momentum[:, 1])

    @property
    def eta(self) -> np.ndarray:
        return np.arcsinh(self.momentum[:, 2] / self.pt)


@functools.lru_cache(maxsize=1)
def real_particles() -> pd.DataFrame:
    """The shipped real particle list (12,263 particles of TrackML event 1000)."""
    return pd.read_csv(REAL_PARTICLES)


@dataclasses.dataclass(frozen=True)
class RealCollisions:
    """The collisions of the shipped real event: ``index [12263]`` each real particle's collision,
    ``vertex [C, 3]`` each collision's vertex (its most common prompt vertex, mm) and ``sigma_z``
    the RMS of the collisions' z (mm)."""

    index: np.ndarray
    vertex: np.ndarray
    sigma_z: float


@functools.lru_cache(maxsize=1)
def real_collisions() -> RealCollisions:
    """The collisions of :func:`real_particles` (``particle_id >> 52`` in TrackML's encoding)."""
    real = real_particles()
    _, index = np.unique(real["particle_id"].to_numpy(np.int64) >> 52, return_inverse=True)
    index = index.reshape(-1)
    prompt = np.hypot(real["vx"], real["vy"]).to_numpy() < PROMPT_RADIUS_MM
    counts = (
        real.loc[prompt, ["vx", "vy", "vz"]]
        .assign(c=index[prompt])
        .groupby(["c", "vx", "vy", "vz"])
        .size()
        .reset_index(name="n")
        .sort_values(["c", "n"], ascending=[True, False], kind="stable")
        .drop_duplicates("c")
    )
    if len(counts) != index.max() + 1:
        raise ValueError(f"{REAL_PARTICLES}: a collision without a prompt vertex")
    vertex = counts[["vx", "vy", "vz"]].to_numpy(np.float64)
    return RealCollisions(index, vertex, float(np.sqrt(np.mean(vertex[:, 2] ** 2))))


def collision_z(
    rng: np.random.Generator, z0: np.ndarray, sigma0: float, sigma_z: float
) -> np.ndarray:
    """New z of collisions at ``z0`` (RMS ``sigma0``) for a luminous region of RMS ``sigma_z``:
    a random reflection each, then a common Gaussian shift (``sigma_z >= sigma0``) or a scaling."""
    z = np.where(rng.random(len(z0)) < 0.5, -z0, z0)
    if sigma_z >= sigma0:
        return z + rng.normal(0.0, np.sqrt(sigma_z**2 - sigma0**2), size=len(z))
    return z * (sigma_z / sigma0)


def sample_particles(
    rng: np.random.Generator, mu: float = 200.0, vertex_sigma_z: float | None = None
) -> Particles:
    """Sample the particles of one event with pile-up ``mu``.

    Args:
      rng: numpy generator (the event's seed).
      mu: mean number of pile-up collisions; the real event has μ = 200.
      vertex_sigma_z: RMS (mm) of the collisions' z along the beam (the luminous region); ``None``
        keeps the real event's own vertices (σ_z ≈ 6 mm) and its random stream unchanged.
    Returns:
      :class:`Particles` with ``P ~ Poisson(12263 mu / 200)`` entries; with ``vertex_sigma_z``
      their ``collision`` and the collisions' vertices too.
    """
    if not mu > 0:
        raise ValueError(f"mu must be positive, got {mu}")
    if vertex_sigma_z is not None and not (np.isfinite(vertex_sigma_z) and vertex_sigma_z >= 0):
        raise ValueError(f"vertex_sigma_z must be >= 0 mm or None, got {vertex_sigma_z}")
    real = real_particles()
    n = rng.poisson(len(real) * mu / REAL_MU)
    idx = rng.integers(0, len(real), size=n)
    v = real[["vx", "vy", "vz"]].to_numpy(np.float64)[idx]
    p = real[["px", "py", "pz"]].to_numpy(np.float64)[idx]
    q = real["q"].to_numpy(np.int64)[idx]
    nh = real["nhits"].to_numpy(np.int64)[idx]

    # Rotation about z, reflection in z.
    a = rng.uniform(0.0, 2.0 * np.pi, size=n)
    ca, sa = np.cos(a), np.sin(a)
    v = np.stack([ca * v[:, 0] - sa * v[:, 1], sa * v[:, 0] + ca * v[:, 1], v[:, 2]], axis=1)
    p = np.stack([ca * p[:, 0] - sa * p[:, 1], sa * p[:, 0] + ca * p[:, 1], p[:, 2]], axis=1)
    flip = rng.random(n) < 0.5
    v[flip, 2] *= -1.0
    p[flip, 2] *= -1.0
    # Smear p_T and eta.
    pt = np.hypot(p[:, 0], p[:, 1]) * np.exp(rng.normal(0.0, 0.05, size=n))
    eta = np.arcsinh(p[:, 2] / np.hypot(p[:, 0], p[:, 1])) + rng.normal(0.0, 0.02, size=n)
    phi = np.arctan2(p[:, 1], p[:, 0])
    p = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=1)

    # TrackML-like 64-bit particle ids: unique, positive, sorted like the real files.
    ids = np.unique(rng.integers(2**52, 2**53, size=n + 16, dtype=np.int64))
    while len(ids) < n:  # collisions among 2^52 values: practically never
        ids = np.unique(np.concatenate([ids, rng.integers(2**52, 2**53, size=n, dtype=np.int64)]))
    ids = np.sort(rng.permutation(ids)[:n])
    if vertex_sigma_z is None:
        return Particles(particle_id=ids, vertex=v, momentum=p, charge=q, max_hits=nh)

    # Each particle at its collision's new vertex plus its own displacement, rotated and
    # reflected as its momentum is.
    col = real_collisions()
    c = col.index[idx]
    d = real[["vx", "vy", "vz"]].to_numpy(np.float64)[idx] - col.vertex[c]
    d = np.stack([ca * d[:, 0] - sa * d[:, 1], sa * d[:, 0] + ca * d[:, 1], d[:, 2]], axis=1)
    d[flip, 2] *= -1.0
    cv = col.vertex.copy()
    cv[:, 2] = collision_z(rng, cv[:, 2], col.sigma_z, float(vertex_sigma_z))
    return Particles(
        particle_id=ids,
        vertex=cv[c] + d,
        momentum=p,
        charge=q,
        max_hits=nh,
        collision=c.astype(np.int64),
        collision_vertex=cv,
    )
