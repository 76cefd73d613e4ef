"""The built-in simulator: geometry, helix physics, detector response, realism of a full event."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.analysis.fidelity import event_stats, particle_distributions
from cgnn_jax.io.schema import DTYPES
from cgnn_jax.sim import SimConfig, load_geometry, simulate_event
from cgnn_jax.sim.propagate import propagate
from cgnn_jax.sim.response import module_hits

# Real-event facts from ../shared/README.md (measured on real TrackML events).
REAL_VOLUME_SHARE = {7: 13, 8: 24, 9: 13, 12: 7, 13: 23, 14: 6, 16: 3, 17: 8, 18: 3}


@pytest.fixture(scope="module")
def full_event():
    return simulate_event(7, mu=200)


def test_geometry_is_the_real_detector():
    g = load_geometry()
    assert g.n_modules == 18728
    assert g.n_layers == 48
    assert set(np.unique(g.volume_id)) == {7, 8, 9, 12, 13, 14, 16, 17, 18}
    # Rotations are orthonormal.
    rtr = np.einsum("mji,mjk->mik", g.rot, g.rot)
    np.testing.assert_allclose(rtr, np.broadcast_to(np.eye(3), rtr.shape), atol=1e-5)


def _one_particle(pt, eta, q, phi=0.3):
    mom = np.array([[pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)]])
    return np.zeros((1, 3)), mom, np.array([q])


def test_helix_without_material_is_exact():
    g = load_geometry()
    rng = np.random.default_rng(0)
    pt = 0.8
    v, p, q = _one_particle(pt, 0.4, 1)
    c = propagate(g, v, p, q, np.array([40]), rng, multiple_scattering=False, energy_loss=False)
    assert len(c.particle) >= 8
    R = pt / 0.6 * 1000.0  # mm at 2 T
    # Positive charge in +z field turns clockwise: centre to the right of the initial direction.
    phi = 0.3
    centre = np.array([R * np.sin(phi), -R * np.cos(phi)])
    dist = np.hypot(c.pos[:, 0] - centre[0], c.pos[:, 1] - centre[1])
    np.testing.assert_allclose(dist, R, rtol=1e-9)
    # z grows linearly with the transverse arc length.
    arc = R * 2 * np.arcsin(np.hypot(c.pos[:, 0], c.pos[:, 1]) / (2 * R))
    np.testing.assert_allclose(c.pos[:, 2], arc * np.sinh(0.4), rtol=1e-7)
    # The azimuth bends clockwise for q > 0 and anticlockwise for q < 0.
    assert np.arctan2(c.pos[-1, 1], c.pos[-1, 0]) < phi
    c2 = propagate(g, v, p, -q, np.array([40]), rng, multiple_scattering=False, energy_loss=False)
    assert np.arctan2(c2.pos[-1, 1], c2.pos[-1, 0]) > phi


def test_threads_make_the_same_crossings(monkeypatch):
    """Particles stepped in parallel slices: the same crossings, bit for bit, in the same order,
    and the same scattering draws taken from the generator (one call per step, particle order;
    each particle's arithmetic is elementwise, whichever slice holds it)."""
    from cgnn_jax.sim import propagate as prop
    from cgnn_jax.sim.field import SolenoidField
    from cgnn_jax.sim.particles import sample_particles
    from cgnn_jax.sim.simulate import PASSIVE_MATERIAL

    monkeypatch.setattr(prop, "_MIN_THREADED", 64)  # slices even on a small event
    g = load_geometry()
    parts = sample_particles(np.random.default_rng(3), 10.0)
    budget = np.where(parts.max_hits > 0, 2 * parts.max_hits + 4, 0)
    assert (budget > 0).sum() > 3 * 64
    runs = {}
    for threads in (1, 2, 3):
        rng = np.random.default_rng(4)
        c = propagate(
            g, parts.vertex, parts.momentum, parts.charge, budget, rng,
            field=SolenoidField(), passive=PASSIVE_MATERIAL, threads=threads,
        )  # fmt: skip
        runs[threads] = (c, rng.random())
    one, after = runs[1]
    assert len(one.particle) > 1000 and len(np.unique(one.step)) > 10
    for threads in (2, 3):
        c, a = runs[threads]
        for field in ("particle", "layer", "step", "pos", "direction", "p"):
            np.testing.assert_array_equal(getattr(c, field), getattr(one, field), err_msg=field)
        assert a == after  # the generator is left in the same state


def test_multiple_scattering_spreads_low_pt_more():
    g = load_geometry()
    rng = np.random.default_rng(1)
    n = 200
    spreads = {}
    for pt in (0.5, 5.0):
        v, p, q = _one_particle(pt, 0.1, 1)
        c = propagate(
            g, np.repeat(v, n, 0), np.repeat(p, n, 0), np.repeat(q, n), np.full(n, 12), rng
        )
        last = c.layer == c.layer.max()
        phis = np.arctan2(c.pos[last, 1], c.pos[last, 0])
        spreads[pt] = phis.std()
    assert spreads[0.5] > 5 * spreads[5.0] > 0


def test_hits_lie_on_their_modules(full_event):
    g = load_geometry()
    ev = full_event
    key = pd.DataFrame(
        {"v": g.volume_id, "l": g.layer_id, "m": g.module_id, "row": np.arange(g.n_modules)}
    )
    rows = ev.hits.merge(
        key, left_on=["volume_id", "layer_id", "module_id"], right_on=["v", "l", "m"], how="left"
    )["row"].to_numpy()
    assert not np.isnan(rows.astype(float)).any()
    rel = ev.hits[["x", "y", "z"]].to_numpy(np.float64) - g.center[rows]
    u = np.einsum("nj,nj->n", rel, g.rot[rows, :, 0])
    v = np.einsum("nj,nj->n", rel, g.rot[rows, :, 1])
    w = np.einsum("nj,nj->n", rel, g.rot[rows, :, 2])
    hv = g.hv[rows]
    hu = g.minhu[rows] + (g.maxhu[rows] - g.minhu[rows]) * (v + hv) / (2 * hv)
    assert np.abs(w).max() < 1e-2  # float32 coordinates
    assert (np.abs(v) <= hv + 1e-2).all()
    assert (np.abs(u) <= hu + 1e-2).all()


def test_schema_and_ids(full_event):
    ev = full_event
    for part in ("hits", "cells", "particles", "truth"):
        df = getattr(ev, part)
        assert list(df.columns) == list(DTYPES[part])
        assert dict(df.dtypes.astype(str)) == DTYPES[part]
    assert (ev.hits["hit_id"].to_numpy() == np.arange(1, ev.n_hits + 1)).all()
    assert (ev.truth["hit_id"].to_numpy() == ev.hits["hit_id"].to_numpy()).all()
    # Hits sorted by (volume, layer, module) as in real files.
    k = ev.hits[["volume_id", "layer_id", "module_id"]].to_numpy(np.int64)
    key = k[:, 0] * 10**9 + k[:, 1] * 10**6 + k[:, 2]
    assert (np.diff(key) >= 0).all()
    assert ev.particles["particle_id"].is_unique
    signal = ev.truth["particle_id"].to_numpy()
    assert np.isin(signal[signal != 0], ev.particles["particle_id"].to_numpy()).all()
    counts = pd.Series(signal[signal != 0]).value_counts()
    nh = ev.particles.set_index("particle_id")["nhits"]
    assert (nh.loc[counts.index].to_numpy() == counts.to_numpy()).all()
    np.testing.assert_allclose(ev.truth["weight"].sum(), 1.0, rtol=1e-4)
    assert (ev.truth.loc[ev.truth["particle_id"] == 0, "weight"] == 0).all()


def test_full_event_matches_real_event_facts(full_event):
    s = event_stats(full_event)
    assert 90_000 <= s["hits"] <= 130_000
    assert 9_000 <= s["particles"] <= 12_000
    assert 0.10 <= s["noise_fraction"] <= 0.15
    assert 8.5 <= s["mean_hits_per_particle"] <= 11.0
    assert 0.20 <= s["double_hit_fraction"] <= 0.36
    assert s["hits_per_particle_q50"] in (10, 11, 12)
    for v, share in REAL_VOLUME_SHARE.items():
        assert abs(s[f"vol{v}_share"] - share) < 4.0, (v, s[f"vol{v}_share"])


def test_particle_distributions_follow_the_real_event(full_event):
    from cgnn_jax.sim.particles import real_particles

    sim = particle_distributions(full_event.particles)
    real = particle_distributions(real_particles())
    for k in ("pt", "eta"):
        qs = np.quantile(sim[k], [0.1, 0.5, 0.9])
        qr = np.quantile(real[k], [0.1, 0.5, 0.9])
        np.testing.assert_allclose(qs, qr, rtol=0.1, atol=0.1)


def test_cells(full_event):
    ev = full_event
    cells, hits = ev.cells, ev.hits
    per_hit = cells.groupby("hit_id").size().reindex(hits["hit_id"]).to_numpy()
    assert not np.isnan(per_hit.astype(float)).any()  # every hit has cells
    pix = hits["volume_id"].isin([7, 8, 9]).to_numpy()
    barrel = (hits["volume_id"] == 8).to_numpy()
    assert 5.0 <= per_hit[barrel].mean() <= 9.0
    assert 1.2 <= per_hit[hits["volume_id"].isin([7, 9]).to_numpy()].mean() <= 2.2
    charge = cells.groupby("hit_id")["value"].sum().reindex(hits["hit_id"]).to_numpy()
    # the default path-length model's pixel charge is the path length in mm (real: ~0.36 per hit)
    assert 0.30 <= charge[pix].mean() <= 0.42
    assert (charge[~pix] == per_hit[~pix]).all()  # strip cells carry 1
    assert not cells.duplicated(["hit_id", "ch0", "ch1"]).any()
    assert (cells[["ch0", "ch1"]] >= 0).all().all()


def test_reproducible_and_seeded():
    a = simulate_event(3, mu=10)
    b = simulate_event(3, mu=10)
    c = simulate_event(4, mu=10)
    pd.testing.assert_frame_equal(a.hits, b.hits)
    pd.testing.assert_frame_equal(a.cells, b.cells)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert len(a.hits) != len(c.hits) or not a.hits.equals(c.hits)


def test_track_fraction_and_noise_parameters():
    full = simulate_event(5, mu=100)
    tenth = simulate_event(5, mu=100, track_fraction=0.1)
    ratio = (tenth.particles["nhits"] > 0).sum() / (full.particles["nhits"] > 0).sum()
    assert 0.07 < ratio < 0.13
    assert 0.08 < tenth.n_hits / full.n_hits < 0.12
    clean = simulate_event(5, mu=20, noise=0.0)
    assert (clean.truth["particle_id"] != 0).all()
    noisy = simulate_event(5, mu=20, noise=0.3)
    assert 0.25 < (noisy.truth["particle_id"] == 0).mean() < 0.35


def test_no_multiple_scattering_option_changes_hits():
    a = simulate_event(9, mu=5, config=SimConfig(multiple_scattering=False))
    b = simulate_event(9, mu=5)
    assert not a.hits[["x", "y"]].equals(b.hits[["x", "y"]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"track_fraction": 0.0}, "track_fraction"),
        ({"track_fraction": 1.5}, "track_fraction"),
        ({"noise": 1.0}, "noise"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_event(0, mu=5, **kwargs)


def test_bad_mu():
    with pytest.raises(ValueError, match="mu"):
        simulate_event(0, mu=0)


def test_overlapping_modules_give_two_hits():
    g = load_geometry()
    rng = np.random.default_rng(2)
    n = 3000
    phi = rng.uniform(0, 2 * np.pi, n)
    eta = rng.uniform(-0.5, 0.5, n)
    pt = np.full(n, 50.0)
    mom = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], 1)
    c = propagate(
        g, np.zeros((n, 3)), mom, np.ones(n), np.full(n, 3), rng, multiple_scattering=False
    )
    first = c.layer == c.layer[0]  # innermost pixel barrel layer: its crossings
    sub = type(c)(**{k: getattr(c, k)[first] for k in c.__dataclass_fields__})
    mh = module_hits(g, sub)
    per = np.bincount(mh["crossing"], minlength=len(sub.particle))
    assert (per == 2).mean() > 0.02  # overlapping modules (in phi or z)
    assert per.max() <= 4  # a corner where four modules overlap
    assert (per >= 1).mean() > 0.97  # the pixel barrel is hermetic for straight tracks
