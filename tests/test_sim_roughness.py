"""Track roughness of the simulator against a real TrackML event; the solenoid field; digitisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.analysis.fidelity import roughness_table, track_residuals
from cgnn_jax.io.event import Event
from cgnn_jax.sim import SimConfig, load_geometry, simulate_event
from cgnn_jax.sim.field import SolenoidField
from cgnn_jax.sim.propagate import propagate

# Real figures (x-y, r-z medians in mm) of one real TrackML event reduced to 5 % of its tracks:
# ../shared/README.md, section "Track roughness and baseline difficulty on a real event".
REAL_ETA_BINS = {
    "p_T > 0.6, |η| 0-1": (0.090, 1.0),
    "p_T > 0.6, |η| 1-2": (0.31, 2.4),
    "p_T > 0.6, |η| 2-2.6": (0.58, 1.4),
}
N_EVENTS = 6


def _pooled_table(config: SimConfig | None = None) -> dict[str, tuple[float, float, int]]:
    config = SimConfig() if config is None else config
    evs = [
        simulate_event(np.random.default_rng([11, i]), 200.0, track_fraction=0.05, config=config)
        for i in range(N_EVENTS)
    ]
    return roughness_table(pd.concat([track_residuals(e) for e in evs]))


@pytest.fixture(scope="module")
def table():
    return _pooled_table()


@pytest.mark.parametrize("label", list(REAL_ETA_BINS))
def test_roughness_lies_in_a_band_around_the_real_event(table, label):
    sim_xy, sim_rz, n = table[label]
    real_xy, real_rz = REAL_ETA_BINS[label]
    assert n >= 100
    assert 0.5 < sim_xy / real_xy < 2.0, (label, sim_xy, real_xy)
    assert 0.4 < sim_rz / real_rz < 2.5, (label, sim_rz, real_rz)


def test_uniform_field_tracks_are_too_smooth_at_large_eta(table):
    # The band above catches the old simulator: in a uniform field the forward tracks are
    # near-perfect helices (x-y roughness ~10x below the real event at 2 < |eta| < 2.6).
    smooth = _pooled_table(SimConfig(solenoid=False))
    label = "p_T > 0.6, |η| 2-2.6"
    assert smooth[label][0] / REAL_ETA_BINS[label][0] < 0.25
    assert table[label][0] > 3.0 * smooth[label][0]


def _event(x, y, z, pt=1.0, eta=0.5) -> Event:
    n = len(x)
    hits = pd.DataFrame({"hit_id": np.arange(1, n + 1), "x": x, "y": y, "z": z})
    truth = pd.DataFrame({"hit_id": hits.hit_id, "particle_id": np.full(n, 7)})
    particles = pd.DataFrame(
        {"particle_id": [7], "px": [pt], "py": [0.0], "pz": [pt * np.sinh(eta)]}
    )
    return Event(event_id=0, hits=hits, particles=particles, truth=truth)


def test_track_residuals_of_exact_and_displaced_points():
    a = np.linspace(0.1, 1.2, 9)
    R, cx, cy = 1500.0, 40.0, -1480.0
    x, y = cx + R * np.cos(a), cy + R * np.sin(a)
    r = np.hypot(x, y)
    z = 3.0 + 0.7 * r
    out = track_residuals(_event(x, y, z))
    assert len(out) == 1
    assert out["xy"].iloc[0] < 1e-6 and out["rz"].iloc[0] < 1e-6
    assert out["pt"].iloc[0] == pytest.approx(1.0)
    assert out["eta"].iloc[0] == pytest.approx(0.5)
    # Every other point moved 0.2 mm off the circle (radially) and 1 mm in z: the medians see it.
    k = np.arange(9) % 2 == 1
    s = 1.0 + 0.2 / R * k
    rough = track_residuals(_event(cx + R * s * np.cos(a), cy + R * s * np.sin(a), z + 1.0 * k))
    assert 0.03 < rough["xy"].iloc[0] < 0.2
    assert 0.2 < rough["rz"].iloc[0] < 1.0
    # Fewer than min_hits points: no row.
    assert len(track_residuals(_event(x[:4], y[:4], z[:4]))) == 0


def test_solenoid_field_on_axis_and_divergence_free():
    f = SolenoidField()
    a, half = f.radius, f.half_length
    zs = np.array([0.0, 1000.0, 2000.0, half, 3000.0])
    b = f(np.stack([np.zeros_like(zs), np.zeros_like(zs), zs], axis=1))

    def on_axis(z):  # finite thin solenoid, on the axis
        return (half - z) / np.hypot(half - z, a) + (half + z) / np.hypot(half + z, a)

    np.testing.assert_allclose(b[:, 2], 2.0 * on_axis(zs) / on_axis(0.0), rtol=2e-3)
    np.testing.assert_allclose(b[:, :2], 0.0, atol=1e-9)
    # div B = (1/r) d(r B_r)/dr + dB_z/dz = 0 (grid interpolation: a tolerance).
    p = np.array([[400.0, 0.0, 2000.0]])
    h = 20.0

    def bf(dp):
        return f(p + np.asarray(dp, dtype=np.float64))[0]

    d_rbr = (bf([h, 0, 0])[0] * (400 + h) - bf([-h, 0, 0])[0] * (400 - h)) / (2 * h) / 400
    d_bz = (bf([0, 0, h])[2] - bf([0, 0, -h])[2]) / (2 * h)
    assert abs(d_bz) > 1e-4  # the field does fall along z here
    assert abs(d_rbr + d_bz) < 0.05 * abs(d_bz)
    # B_r points outwards where B_z falls (z > 0), inwards for z < 0.
    br_pos = f(np.array([[300.0, 400.0, 2000.0]]))[0]
    br_neg = f(np.array([[300.0, 400.0, -2000.0]]))[0]
    assert br_pos[0] > 0 and br_pos[1] > 0
    np.testing.assert_allclose(br_neg[:2], -br_pos[:2], rtol=1e-12)
    with pytest.raises(ValueError, match="solenoid"):
        SolenoidField(radius=0.0)


def test_shipped_field_table_is_the_computed_one(tmp_path):
    """The default coil's table read from the package equals the one computed from the loops;
    another coil is computed, not read; write_table stores the key it is checked by."""
    from cgnn_jax.sim import field as fm

    a, hl = fm.SOLENOID_RADIUS_MM, fm.SOLENOID_HALF_LENGTH_MM
    fm._table.cache_clear()
    shipped = fm._table(a, hl)
    computed = fm.compute_table(a, hl)
    for s_, c_ in zip(shipped, computed, strict=True):
        np.testing.assert_allclose(s_, c_, rtol=1e-9, atol=1e-12)
    other = fm._table(a, 2000.0)
    assert not np.allclose(other[1], shipped[1])  # a shorter coil: B_z falls sooner
    path = fm.write_table(tmp_path / "t.npz")
    with np.load(path) as f:
        assert np.array_equal(f["key"], fm._grid_key(a, hl))
    fm._table.cache_clear()


def _forward_track(field):
    g = load_geometry()
    pt, eta, phi = 1.0, 2.3, 0.4
    mom = np.array([[pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)]])
    return propagate(
        g,
        np.zeros((1, 3)),
        mom,
        np.array([1]),
        np.array([40]),
        np.random.default_rng(0),
        field=field,
        multiple_scattering=False,
        energy_loss=False,
    )


def _circle_residual(pos):
    x, y = pos[:, 0], pos[:, 1]
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    sol = np.linalg.lstsq(a, -(x * x + y * y), rcond=None)[0]
    cx, cy = -sol[0] / 2, -sol[1] / 2
    rad = np.sqrt(cx * cx + cy * cy - sol[2])
    return np.abs(np.hypot(x - cx, y - cy) - rad)


def test_constant_field_callable_gives_the_exact_helix():
    c_uniform = _forward_track(None)
    c_const = _forward_track(lambda pos: np.tile([0.0, 0.0, 2.0], (len(pos), 1)))
    np.testing.assert_allclose(c_const.pos, c_uniform.pos, atol=1e-6)
    assert len(c_uniform.particle) >= 8
    assert _circle_residual(c_uniform.pos).max() < 1e-4


def test_solenoid_bends_forward_tracks_off_the_helix():
    c = _forward_track(SolenoidField())
    assert len(c.particle) >= 8
    assert np.median(_circle_residual(c.pos)) > 0.05  # mm: far above the hit resolution


def test_hit_position_is_its_cluster_centre():
    """The staircase model puts a hit at its cells' centre (the path-length model at their
    charge-weighted centre: tests/test_sim_clusters.py)."""
    ev = simulate_event(3, mu=5, config=SimConfig(cluster_model="staircase"))
    g = load_geometry()
    rows = g.module_rows(ev.hits.volume_id, ev.hits.layer_id, ev.hits.module_id)
    rel = ev.hits[["x", "y", "z"]].to_numpy(np.float64) - g.center[rows]
    u = np.einsum("nj,nj->n", rel, g.rot[rows, :, 0])
    v = np.einsum("nj,nj->n", rel, g.rot[rows, :, 1])
    cells = ev.cells.groupby("hit_id").agg(
        u0=("ch0", "min"), u1=("ch0", "max"), v0=("ch1", "min"), v1=("ch1", "max")
    )
    cells = cells.loc[ev.hits.hit_id.to_numpy()]
    uc = (0.5 * (cells.u0 + cells.u1).to_numpy() + 0.5) * g.pitch_u[rows] - g.maxhu[rows]
    vc = (0.5 * (cells.v0 + cells.v1).to_numpy() + 0.5) * g.pitch_v[rows] - g.hv[rows]
    hu = g.minhu[rows] + (g.maxhu[rows] - g.minhu[rows]) * (v + g.hv[rows]) / (2 * g.hv[rows])
    inside = np.abs(uc) < hu - 0.1  # centres not clipped at a trapezoid's slanted edge
    assert inside.mean() > 0.95
    np.testing.assert_allclose(u[inside], uc[inside], atol=0.02)  # float32 coordinates
    np.testing.assert_allclose(v, np.clip(vc, -g.hv[rows], g.hv[rows]), atol=0.02)
    # The true crossing lies within the fired channels (strip length along v in the strips).
    t = ev.truth.set_index("hit_id").loc[ev.hits.hit_id.to_numpy()]
    sig = (t.particle_id != 0).to_numpy()
    tpos = t[["tx", "ty", "tz"]].to_numpy(np.float64)[sig]
    tv = np.einsum("nj,nj->n", tpos - g.center[rows[sig]], g.rot[rows[sig], :, 1])
    half_span = 0.5 * (cells.v1 - cells.v0 + 1).to_numpy()[sig] * g.pitch_v[rows[sig]]
    assert (np.abs(tv - v[sig]) <= half_span + 0.02).mean() > 0.99
