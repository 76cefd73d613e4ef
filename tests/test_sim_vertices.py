"""The simulator's luminous region: collisions placed along the beam with a configurable spread,
particles of one collision sharing its vertex, secondaries keeping their displacement; the default
unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from cgnn_jax.sim import simulate_event
from cgnn_jax.sim.dataset import event_seed, event_vertex_sigma_z, simulated_events
from cgnn_jax.sim.particles import Particles, real_collisions, real_particles, sample_particles

ROOT = Path(__file__).resolve().parents[1]


def _collision_vertices(p: Particles) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of the collisions present in ``p`` ``[C, 3]`` (``nan`` rows for the others)
    and the share of each one's particles sitting exactly at it."""
    vert = np.full_like(p.collision_vertex, np.nan)
    share = np.full(len(vert), np.nan)
    at = np.all(p.vertex == p.collision_vertex[p.collision], axis=1)
    for c in np.unique(p.collision):
        vert[c] = p.collision_vertex[c]
        share[c] = at[p.collision == c].mean()
    return vert, share


def test_real_collisions_of_the_shipped_event():
    col = real_collisions()
    assert len(col.vertex) == 159  # TrackML's particle_id >> 52
    assert len(col.index) == len(real_particles())
    assert 5.0 < col.sigma_z < 7.0  # event000001000's luminous region
    assert np.all(np.hypot(col.vertex[:, 0], col.vertex[:, 1]) < 0.1)  # on the beam line


def test_default_is_the_native_event():
    a = simulate_event(5, track_fraction=0.02)
    b = simulate_event(5, track_fraction=0.02, vertex_sigma_z=None)
    for part in ("hits", "cells", "particles", "truth"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))
    # Native vertices: each one a real vertex, rotated about z and maybe reflected.
    real = real_particles()
    tree = cKDTree(np.stack([np.hypot(real.vx, real.vy), np.abs(real.vz)], 1))
    p = a.particles.astype(np.float64)
    dist, _ = tree.query(np.stack([np.hypot(p.vx, p.vy), np.abs(p.vz)], 1))
    assert np.all(dist < 5e-3)  # float32 files
    assert sample_particles(np.random.default_rng(0)).collision is None


@pytest.mark.parametrize("sigma", [50.0, 20.0])
def test_collisions_share_a_vertex_with_the_requested_spread(sigma):
    z = []
    for seed in range(8):
        p = sample_particles(np.random.default_rng(seed), vertex_sigma_z=sigma)
        vert, share = _collision_vertices(p)
        present = ~np.isnan(vert[:, 2])
        # Most particles of a collision come from its vertex (the real event: ~70 %).
        assert np.nanmean(share) > 0.5 and present.sum() > 140
        assert len(np.unique(vert[present, 2])) == present.sum()  # one vertex each
        z.append(vert[present, 2])
    z = np.concatenate(z)
    assert abs(np.sqrt(np.mean(z**2)) / sigma - 1.0) < 0.1
    assert abs(np.mean(z)) < 0.2 * sigma


def test_narrow_region_scales_and_zero_puts_every_collision_at_the_centre():
    p = sample_particles(np.random.default_rng(1), vertex_sigma_z=0.0)
    vert, _ = _collision_vertices(p)
    z = vert[~np.isnan(vert[:, 2]), 2]
    assert len(z) > 140 and np.all(z == 0.0)
    z = np.concatenate(
        [
            _collision_vertices(sample_particles(np.random.default_rng(s), vertex_sigma_z=3.0))[0]
            for s in range(4)
        ]
    )[:, 2]
    assert 2.0 < np.sqrt(np.nanmean(z**2)) < 4.0


def test_secondaries_keep_their_displacement():
    rng_native, rng_long = np.random.default_rng(11), np.random.default_rng(11)
    native = sample_particles(rng_native)
    p = sample_particles(rng_long, vertex_sigma_z=50.0)
    # The same particles, momenta and ids as the native event: only the vertices move.
    np.testing.assert_array_equal(p.particle_id, native.particle_id)
    np.testing.assert_array_equal(p.momentum, native.momentum)
    np.testing.assert_array_equal(p.collision_vertex[:, :2], real_collisions().vertex[:, :2])
    dist = np.linalg.norm(p.vertex - p.collision_vertex[p.collision], axis=1)
    # Each particle's distance from its collision's vertex is that of a real particle of the
    # same collision (rotation and reflection keep lengths).
    col = real_collisions()
    real = real_particles()[["vx", "vy", "vz"]].to_numpy(np.float64)
    real_dist = np.linalg.norm(real - col.vertex[col.index], axis=1)
    for c in np.unique(p.collision)[:60]:
        want = real_dist[col.index == c]
        got = dist[p.collision == c]
        assert np.all(np.min(np.abs(got[:, None] - want[None, :]), axis=1) < 1e-6)
    displaced = dist > 1.0
    assert 0.15 < displaced.mean() < 0.5  # the real event: ~30 % beyond 1 mm
    # A displaced vertex keeps its transverse distance from the beam.
    r_native = np.hypot(native.vertex[:, 0], native.vertex[:, 1])
    r_long = np.hypot(p.vertex[:, 0], p.vertex[:, 1])
    assert np.max(np.abs(r_long - r_native)[displaced]) < 0.2


def test_simulated_event_files_carry_the_luminous_region():
    spread = {}
    for sigma in (None, 50.0):
        ev = simulate_event(2, track_fraction=0.05, vertex_sigma_z=sigma)
        p = ev.particles
        prompt = np.hypot(p.vx, p.vy) < 1.0
        spread[sigma] = float(p.vz[prompt].std())
        assert ev.n_hits > 0 and (ev.truth.particle_id != 0).any()
    assert spread[None] < 12.0
    assert 35.0 < spread[50.0] < 65.0


def test_luminous_region_range_per_event():
    draws = [event_vertex_sigma_z((5.0, 60.0), 4, i) for i in range(20)]
    assert all(5.0 <= d <= 60.0 for d in draws) and np.std(draws) > 5.0
    assert draws == [event_vertex_sigma_z((5.0, 60.0), 4, i) for i in range(20)]
    assert event_vertex_sigma_z(None, 4, 0) is None and event_vertex_sigma_z(7, 4, 0) == 7.0
    (ev,) = simulated_events(1, 4, track_fraction=0.01, vertex_sigma_z=(5.0, 60.0))
    same = simulate_event(event_seed(4, 0), track_fraction=0.01, vertex_sigma_z=draws[0])
    pd.testing.assert_frame_equal(ev.particles, same.particles)
    with pytest.raises(ValueError, match="vertex_sigma_z"):
        event_vertex_sigma_z((60.0, 5.0), 4, 0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_vertex_sigma_z(bad):
    with pytest.raises(ValueError, match="vertex_sigma_z"):
        sample_particles(np.random.default_rng(0), vertex_sigma_z=bad)


def test_simulate_cli_flag(tmp_path):
    out = tmp_path / "sim"
    args = [sys.executable, str(ROOT / "launch" / "simulate.py"), f"--out={out}"]
    p = subprocess.run(
        [*args, "--track_fraction=0.02", "--vertex_sigma_z=50"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    parts = pd.read_csv(out / "event000001000-particles.csv")
    assert parts.vz[np.hypot(parts.vx, parts.vy) < 1.0].std() > 25.0
    bad = subprocess.run(
        [*args, "--vertex_sigma_z=-3"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert bad.returncode != 0 and "--vertex_sigma_z" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_training_events_take_the_luminous_region_from_the_config():
    import ml_collections

    from cgnn_jax.train.data import TrainingEvents

    spread = {}
    for region in (None, (40.0, 60.0)):
        data = {"seed": 5, "mu": 200.0, "track_fraction": 0.02, "train_events": 1}
        if region is not None:
            data["vertex_sigma_z"] = region
        cfg = ml_collections.ConfigDict({"data": data})
        te = TrainingEvents(cfg, log=lambda *_: None)
        assert te.vertex_sigma_z == region
        (ev,) = te.validation_events(1, 0.05)
        p = ev.particles
        spread[region] = float(p.vz[np.hypot(p.vx, p.vy) < 1.0].std())
    assert spread[None] < 12.0 < 25.0 < spread[(40.0, 60.0)]
