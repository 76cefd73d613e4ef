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
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd

REAL_PARTICLES = Path(__file__).resolve().parent / "data" / "real_particles_event000001000.csv.gz"
REAL_MU = 200.0


@dataclasses.dataclass
class Particles:
    """Sampled particles, arrays ``[P]``: vertex (mm), momentum (GeV), charge, hit budget, ids."""

    particle_id: np.ndarray
    vertex: np.ndarray  # [P, 3]
    momentum: np.ndarray  # [P, 3]
    charge: np.ndarray  # [P] ±1
    max_hits: np.ndarray  # [P] int

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


def sample_particles(rng: np.random.Generator, mu: float = 200.0) -> Particles:
    """Sample the particles of one event with pile-up ``mu``.

    Args:
      rng: numpy generator (the event's seed).
      mu: mean number of pile-up collisions; the real event has μ = 200.
    Returns:
      :class:`Particles` with ``P ~ Poisson(12263 mu / 200)`` entries.
    """
    if not mu > 0:
        raise ValueError(f"mu must be positive, got {mu}")
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
    return Particles(particle_id=ids, vertex=v, momentum=p, charge=q, max_hits=nh)
