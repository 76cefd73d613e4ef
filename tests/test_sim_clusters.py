"""Pixel cluster models of the simulator: the default stays as it was, and the path-length model
makes pixel clusters as the TrackML digitisation does (path length per pixel, Lorentz drift)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cgnn_jax.features.hits import hit_features
from cgnn_jax.sim import SimConfig, load_geometry, simulate_event
from cgnn_jax.sim.response import (
    PIXEL_DEPTH_MM,
    PIXEL_LORENTZ_ANGLE,
    cell_clusters,
    pixel_path_clusters,
)

# sha256 of each table's records of simulate_event(0, track_fraction=0.05) and of
# simulate_event(3, track_fraction=0.02, vertex_sigma_z=50) with the "staircase" cluster model, as
# the simulator made them before the path-length model: that model keeps them byte for byte.
STAIRCASE_HASHES = {
    (0, 0.05, None): {
        "hits": "a0d2ebfc2616eb4f0552d6380d707fea72cf7e9e75c74ce3a204a644857934f2",
        "cells": "a23e9552fff80fed690b5e5748b4f7a9f53c1ae8d6818a47c998a21ac5a01c5b",
        "truth": "7edea7c8d58e287df650548ef369241d258a21e273380a04517680dec4c2dc77",
        "particles": "a8be381c573c88cb252077b1341487522e30520a88ff604efcfbdedc8e796cad",
    },
    (3, 0.02, 50.0): {
        "hits": "74e8be8a2df83122146ffba5fc414084e8c1cbb704abbb56313ae594c5422b1f",
        "cells": "425fedc76f6e745a540b321b033120b70d454c2de8b33f799d38b6a9b91f35fa",
        "truth": "c41b51495b7060c52f700c392f5bb87b57faab369d52f80aa767b711354ec209",
        "particles": "64d214dd727ce2082b5ddc0e7227d06ebe53fd91a17eb9e57a0607238e689e31",
    },
}
PATH = SimConfig(cluster_model="path_length")


def _hashes(ev) -> dict[str, str]:
    return {
        name: hashlib.sha256(getattr(ev, name).to_records(index=False).tobytes()).hexdigest()
        for name in ("hits", "cells", "truth", "particles")
    }


@pytest.mark.parametrize("key", list(STAIRCASE_HASHES))
def test_staircase_cluster_model_keeps_events_byte_identical(key):
    seed, fraction, sigma = key
    stair = SimConfig(cluster_model="staircase")
    ev = simulate_event(seed, track_fraction=fraction, vertex_sigma_z=sigma, config=stair)
    assert _hashes(ev) == STAIRCASE_HASHES[key]
    # the default is the path-length model: its pixel cells differ, its particles do not
    default = _hashes(simulate_event(seed, track_fraction=fraction, vertex_sigma_z=sigma))
    assert SimConfig().cluster_model == "path_length"
    assert default["cells"] != STAIRCASE_HASHES[key]["cells"]
    assert default["particles"] == STAIRCASE_HASHES[key]["particles"]


def test_bad_cluster_model():
    with pytest.raises(ValueError, match=r"cluster_model must be one of .*'blob'"):
        simulate_event(0, track_fraction=0.01, config=SimConfig(cluster_model="blob"))
    g = load_geometry()
    with pytest.raises(ValueError, match="cluster model must be one of"):
        cell_clusters(g, np.zeros(1, int), np.zeros(1), np.zeros(1), None, None, "blob")


def _module(g, volume: int) -> int:
    return int(np.flatnonzero(g.volume_id == volume)[0])


def _one_hit(g, row: int, local_dir, u: float, v: float, rng):
    d = g.rot[row] @ (np.asarray(local_dir, float) / np.linalg.norm(local_dir))
    return pixel_path_clusters(g, np.array([row]), np.array([u]), np.array([v]), d[None, :], rng)


def test_path_length_cells_of_one_track():
    g = load_geometry()
    rng = np.random.default_rng(0)
    row = _module(g, 9)  # endcap: depth 0.30 mm, no Lorentz drift
    pu, pv = g.pitch_u[row], g.pitch_v[row]
    # Normal incidence in the middle of a pixel: one pixel, the depth's path length.
    u = (10 + 0.5) * pu - g.maxhu[row]
    v = (100 + 0.5) * pv - g.hv[row]
    hit, ch0, ch1, value, um, vm = _one_hit(g, row, (0, 0, 1), u, v, rng)
    assert len(hit) == 1 and (ch0[0], ch1[0]) == (10, 100)
    assert abs(value[0] - 0.30) < 0.30 * 0.35
    np.testing.assert_allclose([um[0], vm[0]], [u, v], atol=1e-9)
    # A slope along v of 2.5 pitches over the depth: the pixels it crosses, values summing to the
    # path (up to the charge spread), the charge-weighted centre near the true crossing.
    t_v = 2.5 * pv / 0.30
    values = []
    for k in range(200):
        hit, ch0, ch1, value, um, vm = _one_hit(g, row, (0, t_v, 1), u, v + 0.013 * k % pv, rng)
        assert np.all(ch0 == 10) and len(set(ch1)) == len(ch1) in (3, 4)
        assert np.all(np.diff(np.sort(ch1)) == 1)
        values.append(value.sum() / (0.30 * np.hypot(1, t_v)))
        assert abs(vm[0] - (v + 0.013 * k % pv)) < pv
    assert abs(np.median(values) - 1.0) < 0.03
    assert 0.05 < np.std(values) < 0.12


def test_barrel_lorentz_drift_and_hit_position():
    g = load_geometry()
    rng = np.random.default_rng(1)
    row = _module(g, 8)
    tan_l = np.tan(PIXEL_LORENTZ_ANGLE[8])
    depth = PIXEL_DEPTH_MM[8]
    pu = g.pitch_u[row]
    # A track along the Lorentz angle (d_u / d_w = tan θ_L) lands on one column; one against it
    # spreads over 2 tan θ_L depth / pitch = 0.73 pitch on average.
    widths = {}
    for sign in (1, -1):
        n_u = []
        for k in range(300):
            u = 0.0037 * k % pu + 3 * pu - g.maxhu[row]
            _, ch0, _, _, _, _ = _one_hit(g, row, (sign * tan_l, 0.0, 1.0), u, 0.1, rng)
            n_u.append(ch0.max() - ch0.min())
        widths[sign] = np.mean(n_u)
    assert widths[1] < 0.02
    assert abs(widths[-1] - 2 * tan_l * depth / pu) < 0.1
    # The position is the charge-weighted centre plus the reconstruction's Lorentz correction
    # module_t tan θ_L; the raw centre sits tan θ_L depth / 2 to -u of the crossing.
    _, ch0, _, value, um, _ = _one_hit(g, row, (0.0, 0.3, 1.0), 0.0123, 0.2, rng)
    centre = np.sum(value * ((ch0 + 0.5) * pu - g.maxhu[row])) / value.sum()
    np.testing.assert_allclose(um[0] - centre, g.half_t[row] * tan_l, rtol=1e-6)


@pytest.fixture(scope="module")
def path_event():
    return simulate_event(11, track_fraction=0.15, config=PATH)


def _pixel_table(ev):
    g = load_geometry()
    h = ev.hits
    t = ev.truth.set_index("hit_id").loc[h["hit_id"].to_numpy()]
    rows = g.module_rows(
        h["volume_id"].to_numpy(), h["layer_id"].to_numpy(), h["module_id"].to_numpy()
    )
    c = ev.cells.groupby("hit_id").agg(
        n=("ch0", "size"),
        q=("value", "sum"),
        u0=("ch0", "min"),
        u1=("ch0", "max"),
        v0=("ch1", "min"),
        v1=("ch1", "max"),
    )
    c = c.reindex(h["hit_id"].to_numpy())
    p = t[["tpx", "tpy", "tpz"]].to_numpy(np.float64)
    norm = np.linalg.norm(p, axis=1)
    local = np.einsum("nij,ni->nj", g.rot[rows], p / np.maximum(norm, 1e-12)[:, None])
    vol = h["volume_id"].to_numpy()
    keep = np.isin(vol, (7, 8, 9)) & (t["particle_id"].to_numpy() != 0) & (norm > 0)
    return {
        "vol": vol[keep],
        "n": c["n"].to_numpy()[keep],
        "q": c["q"].to_numpy()[keep],
        "nu": (c["u1"] - c["u0"] + 1).to_numpy()[keep],
        "nv": (c["v1"] - c["v0"] + 1).to_numpy()[keep],
        "local": local[keep],
        "pu": g.pitch_u[rows][keep],
        "pv": g.pitch_v[rows][keep],
    }


def test_path_length_charge_and_staircase(path_event):
    x = _pixel_table(path_event)
    assert np.mean(x["n"] == x["nu"] + x["nv"] - 1) > 0.99
    for vol, depth in PIXEL_DEPTH_MM.items():
        m = x["vol"] == vol
        assert m.sum() > 300
        path = depth / np.maximum(np.abs(x["local"][m, 2]), 1e-3)
        ratio = x["q"][m] / path
        ratio = ratio[path < 40 * 0.05]  # segments not shortened at 40 pixels
        assert abs(np.median(ratio) - 1.0) < 0.02, vol
        iqr = np.subtract(*np.quantile(ratio, [0.75, 0.25]))
        assert 0.05 < iqr < 0.2, vol


def test_path_length_cluster_length_follows_depth(path_event):
    x = _pixel_table(path_event)
    for vol, depth in PIXEL_DEPTH_MM.items():
        m = x["vol"] == vol
        t_v = np.abs(x["local"][m, 1] / x["local"][m, 2])
        length = depth * t_v / x["pv"][m]  # projected length along v, in pitches
        sel = length < 30
        # a segment of L pitches at a random offset crosses L boundaries on average
        slope = np.polyfit(length[sel], x["nv"][m][sel] - 1.0, 1)[0]
        assert abs(slope - 1.0) < 0.1, vol


def _expected_endcap_error(local: np.ndarray, pv: np.ndarray, rng) -> np.ndarray:
    """The cell-direction error a path-length cluster implies, drawn independently: the cluster
    spans ``floor(f + L)`` pitches along v (``f`` uniform, ``L`` the projected length) and
    ``floor(f' + L_u)`` along u; the feature reads the direction ``(span_u, span_v, 2 module_t)``."""
    depth = PIXEL_DEPTH_MM[7]
    t = np.abs(local[:, :2] / local[:, 2:3])
    pitch = np.stack([np.full(len(pv), 0.05), pv], axis=1)
    span = np.floor(rng.random(t.shape) + depth * t / pitch) * pitch
    est = np.concatenate([span, np.full((len(pv), 1), 0.30)], axis=1)
    est /= np.linalg.norm(est, axis=1, keepdims=True)
    true = np.abs(local) / np.linalg.norm(local, axis=1, keepdims=True)
    return np.arccos(np.clip(np.sum(est * true, axis=1), 0.0, 1.0))


def test_endcap_direction_error_is_the_geometric_one(path_event):
    """The endcaps' cell-derived direction error: its median is what the pixel geometry implies
    for the simulated tracks (about 0.07 rad), not the staircase model's ~0.13 rad."""
    x = _pixel_table(path_event)
    f = hit_features(path_event)
    t = path_event.truth.set_index("hit_id").loc[path_event.hits["hit_id"].to_numpy()]
    p = t[["tpx", "tpy", "tpz"]].to_numpy(np.float64)
    norm = np.linalg.norm(p, axis=1)
    vol = path_event.hits["volume_id"].to_numpy()
    ok = (t["particle_id"].to_numpy() != 0) & (norm > 0) & f.has_cells
    cos = np.abs(np.sum(f.cell_dir * p / np.maximum(norm, 1e-12)[:, None], axis=1))
    err = np.arccos(np.clip(cos, 0.0, 1.0))
    rng = np.random.default_rng(5)
    for v in (7, 9):
        sim = np.median(err[ok & (vol == v)])
        m = x["vol"] == v
        expected = np.median(_expected_endcap_error(x["local"][m], x["pv"][m], rng))
        assert 0.04 < expected < 0.1
        assert abs(sim - expected) < 0.15 * expected, (v, sim, expected)


def test_staircase_endcap_direction_error_differs():
    """The check above can fail: the staircase model's endcap error is about twice as large."""
    ev = simulate_event(11, track_fraction=0.05, config=SimConfig(cluster_model="staircase"))
    f = hit_features(ev)
    t = ev.truth.set_index("hit_id").loc[ev.hits["hit_id"].to_numpy()]
    p = t[["tpx", "tpy", "tpz"]].to_numpy(np.float64)
    norm = np.linalg.norm(p, axis=1)
    ok = (t["particle_id"].to_numpy() != 0) & (norm > 0) & f.has_cells
    ok &= ev.hits["volume_id"].isin([7, 9]).to_numpy()
    cos = np.abs(np.sum(f.cell_dir[ok] * p[ok] / norm[ok, None], axis=1))
    assert np.median(np.arccos(np.clip(cos, 0.0, 1.0))) > 0.1


def test_path_length_noise_and_strips(path_event):
    """Noise pixel hits are crossings (charge at least the depth's path, most of the time); strip
    cells are as in the staircase model (value 1)."""
    h = path_event.hits
    t = path_event.truth.set_index("hit_id").loc[h["hit_id"].to_numpy()]
    q = path_event.cells.groupby("hit_id")["value"].sum().reindex(h["hit_id"].to_numpy())
    vol = h["volume_id"].to_numpy()
    noise = t["particle_id"].to_numpy() == 0
    for v, depth in PIXEL_DEPTH_MM.items():
        m = noise & (vol == v)
        if m.sum() >= 10:
            assert np.median(q.to_numpy()[m]) > depth
    strip_hits = h["hit_id"].to_numpy()[~np.isin(vol, (7, 8, 9))]
    cells = path_event.cells
    assert np.all(cells["value"].to_numpy()[cells["hit_id"].isin(strip_hits).to_numpy()] == 1.0)
