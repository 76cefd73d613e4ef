"""The built-in TrackML event simulator (real detector geometry, calibrated particles)."""

from cgnn_jax.sim.field import SolenoidField
from cgnn_jax.sim.geometry import Geometry, load_geometry
from cgnn_jax.sim.simulate import DEFAULT_NOISE, SimConfig, simulate_event

__all__ = [
    "DEFAULT_NOISE",
    "Geometry",
    "SimConfig",
    "SolenoidField",
    "load_geometry",
    "simulate_event",
]
