"""Per-hit and per-pair input features (cgnn_jax.features)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.features import (
    FEATURE_NAMES,
    PAIR_FEATURE_NAMES,
    VOLUMES,
    hit_features,
    n_features,
    n_pair_features,
    pair_features,
    signed_curvature,
    wrap_angle,
)
from cgnn_jax.features.hits import HitFeatures
from cgnn_jax.sim import simulate_event

CELL_FEATURES = (
    "n_cells",
    "charge",
    "extent_u",
    "extent_v",
    "extent_u_t",
    "extent_v_t",
    "cell_cot",
    "cell_z0",
    "cell_abs_kappa",
)


@pytest.fixture(scope="module")
def event():
    return simulate_event(0, mu=10)


@pytest.fixture(scope="module")
def feats(event):
    return hit_features(event)


def _points_hf(pos: np.ndarray, cell_dir: np.ndarray | None = None) -> HitFeatures:
    """HitFeatures carrying only hand-made positions (and cell directions)."""
    pos = np.asarray(pos, np.float64)
    n = len(pos)
    return HitFeatures(
        x=np.zeros((n, n_features()), np.float32),
        names=list(FEATURE_NAMES),
        hit_id=np.arange(1, n + 1),
        pos=pos,
        cell_dir=np.zeros((n, 3)) if cell_dir is None else np.asarray(cell_dir, np.float64),
        volume_index=np.zeros(n, np.int32),
        layer_index=np.zeros(n, np.int32),
        has_cells=np.ones(n, bool),
    )


def _col(name: str) -> int:
    return PAIR_FEATURE_NAMES.index(name)


# ----------------------------------------------------------------------------------- hit features


def test_hit_features_shapes_and_ranges(event, feats):
    n = event.n_hits
    assert feats.x.shape == (n, n_features()) == (n, len(FEATURE_NAMES))
    assert feats.x.dtype == np.float32
    assert feats.names == list(FEATURE_NAMES)
    assert np.isfinite(feats.x).all()
    assert np.abs(feats.x).max() < 6.0  # everything O(1)
    np.testing.assert_array_equal(feats.hit_id, event.hits["hit_id"].to_numpy())
    assert feats.pos.shape == (n, 3) and feats.pos.dtype == np.float64
    np.testing.assert_allclose(feats.pos, event.hits[["x", "y", "z"]].to_numpy(np.float64))
    # Volume one-hot and indices agree with the hits.
    onehot = feats.x[:, [FEATURE_NAMES.index(f"vol_{v}") for v in VOLUMES]]
    np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.asarray(VOLUMES)[feats.volume_index], event.hits["volume_id"])
    np.testing.assert_array_equal(onehot.argmax(axis=1), feats.volume_index)
    lp = feats.column("layer_pos")
    assert lp.min() == 0.0 and lp.max() == 1.0
    barrel = np.isin(event.hits["volume_id"], (8, 13, 17))
    np.testing.assert_array_equal(feats.column("is_barrel"), barrel.astype(np.float32))
    # Coordinates.
    x, y, z = feats.pos.T
    r = np.hypot(x, y)
    np.testing.assert_allclose(feats.column("r"), r / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(feats.column("cos_phi"), x / r, atol=1e-6)
    np.testing.assert_allclose(feats.column("sin_phi"), y / r, atol=1e-6)
    np.testing.assert_allclose(feats.column("z"), z / 3000.0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(feats.column("eta"), np.arcsinh(z / r) / 3.0, rtol=1e-5, atol=1e-6)


def test_cell_features_match_a_groupby(event, feats):
    c = event.cells.merge(event.hits[["hit_id", "volume_id"]], on="hit_id")
    g = c.groupby("hit_id").agg(
        n=("ch0", "size"),
        q=("value", "sum"),
        u0=("ch0", "min"),
        u1=("ch0", "max"),
        v0=("ch1", "min"),
        v1=("ch1", "max"),
    )
    g = g.reindex(event.hits["hit_id"])
    assert feats.has_cells.all()
    np.testing.assert_allclose(feats.column("n_cells"), np.log1p(g["n"]), rtol=1e-6)
    np.testing.assert_allclose(feats.column("charge"), np.log1p(g["q"]), rtol=1e-5)
    from cgnn_jax.sim import load_geometry

    geo = load_geometry()
    h = event.hits
    rows = geo.module_rows(h["volume_id"], h["layer_id"], h["module_id"])
    ext_u = (g["u1"] - g["u0"] + 1).to_numpy() * geo.pitch_u[rows]
    ext_v = (g["v1"] - g["v0"] + 1).to_numpy() * geo.pitch_v[rows]
    np.testing.assert_allclose(feats.column("extent_u"), np.log1p(ext_u), rtol=1e-5)
    np.testing.assert_allclose(feats.column("extent_v"), np.log1p(ext_v), rtol=1e-5)
    thick = 2 * geo.half_t[rows]
    np.testing.assert_allclose(feats.column("extent_v_t"), np.log1p(ext_v / thick), rtol=1e-5)


def test_cell_dir_is_unit_and_points_outwards(feats):
    norm = np.linalg.norm(feats.cell_dir, axis=1)
    np.testing.assert_allclose(norm, 1.0, atol=1e-9)
    assert (np.einsum("ij,ij->i", feats.cell_dir, feats.pos) >= -1e-9).all()


def test_cell_dir_follows_the_true_momentum(event, feats):
    truth = event.truth
    p = truth[["tpx", "tpy", "tpz"]].to_numpy(np.float64)
    signal = truth["particle_id"].to_numpy() > 0
    pix_barrel = signal & (event.hits["volume_id"].to_numpy() == 8)
    assert pix_barrel.sum() > 300
    p_hat = p[pix_barrel] / np.linalg.norm(p[pix_barrel], axis=1, keepdims=True)
    cos_cell = np.abs(np.einsum("ij,ij->i", feats.cell_dir[pix_barrel], p_hat))
    rand = np.random.default_rng(0).normal(size=p_hat.shape)
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    cos_rand = np.abs(np.einsum("ij,ij->i", rand, p_hat))
    assert cos_cell.mean() > 0.8
    assert cos_rand.mean() < 0.6
    # Pixel endcaps too (long clusters along u at large |eta|).
    pix_ec = signal & np.isin(event.hits["volume_id"].to_numpy(), (7, 9))
    p_hat = p[pix_ec] / np.linalg.norm(p[pix_ec], axis=1, keepdims=True)
    assert np.abs(np.einsum("ij,ij->i", feats.cell_dir[pix_ec], p_hat)).mean() > 0.9


def _consecutive_pairs(event, volume: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(i, j)`` of same-particle hits on adjacent layers of ``volume``, inner to outer."""
    h = event.hits
    pid = event.truth["particle_id"].to_numpy()
    r = np.hypot(h["x"].to_numpy(np.float64), h["y"].to_numpy(np.float64))
    lay = h["layer_id"].to_numpy()
    idx = np.flatnonzero((pid > 0) & (h["volume_id"].to_numpy() == volume))
    idx = idx[np.lexsort((r[idx], pid[idx]))]
    a, b = idx[:-1], idx[1:]
    keep = (pid[a] == pid[b]) & (lay[b] - lay[a] == 2)
    return a[keep], b[keep]


def test_cell_features_agree_with_true_pair_chords(event, feats):
    s, t = _consecutive_pairs(event, 8)
    assert len(s) > 200
    e = pair_features(feats, s, t)
    assert e[:, _col("cell_chord_i")].mean() > 0.8
    assert e[:, _col("cell_chord_j")].mean() > 0.8
    assert e[:, _col("cell_cos")].mean() > 0.8
    # Random pairs in the same volume agree much less.
    rng = np.random.default_rng(1)
    pool = np.flatnonzero(event.hits["volume_id"].to_numpy() == 8)
    rs, rt = rng.choice(pool, 2000), rng.choice(pool, 2000)
    er = pair_features(feats, rs, rt)
    assert er[:, _col("cell_chord_i")].mean() < e[:, _col("cell_chord_i")].mean() - 0.2


def test_curvature_tracks_charge_over_pt():
    ev = simulate_event(3, mu=10)
    hf = hit_features(ev)
    s, t = _consecutive_pairs(ev, 8)
    pid = ev.truth["particle_id"].to_numpy()[s]
    parts = ev.particles.set_index("particle_id").loc[pid]
    pt = np.hypot(parts["px"].to_numpy(np.float64), parts["py"].to_numpy(np.float64))
    q = parts["q"].to_numpy(np.float64)
    from_origin = np.hypot(parts["vx"], parts["vy"]).to_numpy() < 1.0
    sel = (pt > 0.5) & from_origin
    assert sel.sum() > 100
    curv = pair_features(hf, s[sel], t[sel])[:, _col("curvature")]
    qpt = q[sel] / pt[sel]
    r = np.corrcoef(curv, qpt)[0, 1]
    assert r > 0.8, r
    # Scale: curvature ~ 1000 / R = 0.6 q / p_T.
    slope = np.polyfit(qpt, curv, 1)[0]
    assert 0.45 < slope < 0.75, slope


def test_no_cells_and_partial_cells(event, feats):
    bare = hit_features(dataclasses.replace(event, cells=None))
    assert not bare.has_cells.any()
    assert (bare.column("has_cells") == 0).all()
    for name in CELL_FEATURES:
        assert (bare.column(name) == 0).all(), name
    assert (bare.cell_dir == 0).all()
    # Geometry features are unchanged.
    geo_cols = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n not in CELL_FEATURES]
    geo_cols.remove(FEATURE_NAMES.index("has_cells"))
    np.testing.assert_array_equal(bare.x[:, geo_cols], feats.x[:, geo_cols])

    # Drop the cells of every other hit: those hits get zeros, the others are unchanged.
    drop = event.hits["hit_id"].to_numpy()[::2]
    cells = event.cells[~event.cells["hit_id"].isin(drop)]
    part = hit_features(dataclasses.replace(event, cells=cells))
    no = np.isin(part.hit_id, drop)
    assert (part.column("has_cells")[no] == 0).all() and (part.column("has_cells")[~no] == 1).all()
    np.testing.assert_array_equal(part.x[~no], feats.x[~no])
    assert (part.cell_dir[no] == 0).all()
    # Pair features stay finite with zero cell directions.
    e = pair_features(part, np.arange(part.n_hits - 1), np.arange(1, part.n_hits))
    assert np.isfinite(e).all()


def test_row_order_and_cell_order_do_not_matter(event, feats):
    rng = np.random.default_rng(5)
    perm = rng.permutation(event.n_hits)
    cells = event.cells.iloc[rng.permutation(len(event.cells))]
    shuffled = dataclasses.replace(event, hits=event.hits.iloc[perm], cells=cells)
    hf = hit_features(shuffled)
    np.testing.assert_array_equal(hf.x, feats.x[perm])
    np.testing.assert_array_equal(hf.cell_dir, feats.cell_dir[perm])
    np.testing.assert_array_equal(hf.hit_id, feats.hit_id[perm])


def test_unknown_module_is_an_error(event):
    hits = event.hits.copy()
    hits.loc[hits.index[3], "module_id"] = 99999
    with pytest.raises(ValueError, match="module_id=99999"):
        hit_features(dataclasses.replace(event, hits=hits))


def test_orphan_cells_are_an_error(event):
    orphan = pd.DataFrame({"hit_id": [10**7], "ch0": [1], "ch1": [1], "value": [0.1]}).astype(
        event.cells.dtypes.to_dict()
    )
    cells = pd.concat([event.cells, orphan], ignore_index=True)
    with pytest.raises(ValueError, match=r"hit_id=10000000"):
        hit_features(dataclasses.replace(event, cells=cells))


def test_missing_column_is_an_error(event):
    with pytest.raises(ValueError, match="'value'"):
        hit_features(dataclasses.replace(event, cells=event.cells.drop(columns="value")))


def test_hit_features_are_deterministic(event, feats):
    again = hit_features(event)
    np.testing.assert_array_equal(again.x, feats.x)
    np.testing.assert_array_equal(again.cell_dir, feats.cell_dir)


# ---------------------------------------------------------------------------------- pair features


def test_pair_features_shapes_and_determinism(feats):
    rng = np.random.default_rng(0)
    n_pairs = 150_000  # several blocks
    s = rng.integers(0, feats.n_hits, n_pairs)
    t = rng.integers(0, feats.n_hits, n_pairs)
    e = pair_features(feats, s, t)
    assert e.shape == (n_pairs, n_pair_features()) == (n_pairs, len(PAIR_FEATURE_NAMES))
    assert e.dtype == np.float32
    assert np.isfinite(e).all()
    np.testing.assert_array_equal(pair_features(feats, s, t), e)
    np.testing.assert_array_equal(pair_features(feats, s, t, threads=1), e)
    np.testing.assert_array_equal(pair_features(feats, s[:1000], t[:1000]), e[:1000])
    assert (e[:, _col("cell_cos") :] >= 0).all() and (e[:, _col("cell_cos") :] <= 1).all()
    # Reversing an edge flips the antisymmetric features and keeps z0 and the cell cosines.
    rev = pair_features(feats, t, s)
    for name in ("dr", "dz", "deta", "curvature"):
        np.testing.assert_allclose(rev[:, _col(name)], -e[:, _col(name)], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rev[:, _col("z0")], e[:, _col("z0")], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(rev[:, _col("cell_cos")], e[:, _col("cell_cos")])
    # Empty input.
    assert pair_features(feats, np.zeros(0, int), np.zeros(0, int)).shape == (0, n_pair_features())


def test_pair_features_hand_made():
    pos = np.array([[100.0, 0.0, 10.0], [200.0, 0.0, 40.0], [0.0, 300.0, -5.0]])
    hf = _points_hf(pos)
    e = pair_features(hf, np.array([0, 0]), np.array([1, 2]))
    np.testing.assert_allclose(e[0, _col("dr")], 1.0, rtol=1e-6)
    np.testing.assert_allclose(e[0, _col("dz")], 0.3, rtol=1e-6)
    np.testing.assert_allclose(e[0, _col("dphi")], 0.0, atol=1e-7)
    np.testing.assert_allclose(e[1, _col("dphi")], np.pi / 2, rtol=1e-6)
    np.testing.assert_allclose(
        e[0, _col("deta")], np.arcsinh(40 / 200) - np.arcsinh(10 / 100), rtol=1e-5
    )
    assert e[0, _col("curvature")] == 0.0  # collinear with the origin: straight


def test_phi_wraps_across_pi():
    eps = 0.01
    a = np.pi - eps
    pos = np.array([[np.cos(a), np.sin(a), 0.0], [np.cos(-a), np.sin(-a), 0.0]]) * 100.0
    e = pair_features(_points_hf(pos), np.array([0, 1]), np.array([1, 0]))
    np.testing.assert_allclose(e[:, _col("dphi")], [2 * eps, -2 * eps], rtol=1e-5)
    # Exactly opposite points: +π, never -π.
    pos = np.array([[100.0, 0.0, 0.0], [-100.0, 0.0, 0.0]])
    e = pair_features(_points_hf(pos), np.array([0, 1]), np.array([1, 0]))
    np.testing.assert_allclose(e[:, _col("dphi")], np.pi, rtol=1e-6)
    # The helper.
    x = np.array([np.pi, -np.pi, 3 * np.pi, 0.5, -7.0, 2 * np.pi])
    w = wrap_angle(x)
    assert (w > -np.pi).all() and (w <= np.pi).all()
    np.testing.assert_allclose(np.cos(w), np.cos(x), atol=1e-12)
    np.testing.assert_allclose(np.sin(w), np.sin(x), atol=1e-12)
    np.testing.assert_allclose(w[:2], [np.pi, np.pi])


def _helix_xy(radius: float, q: int, phi0: float, arcs: np.ndarray) -> np.ndarray:
    """Points ``[k, 3]`` at transverse arc lengths ``arcs`` of a track from the origin."""
    if q > 0:  # clockwise, centre to the right
        centre = radius * np.array([np.sin(phi0), -np.cos(phi0)])
        alpha = phi0 + np.pi / 2 - arcs / radius
    else:
        centre = radius * np.array([-np.sin(phi0), np.cos(phi0)])
        alpha = phi0 - np.pi / 2 + arcs / radius
    xy = centre + radius * np.stack([np.cos(alpha), np.sin(alpha)], axis=1)
    return np.concatenate([xy, np.zeros((len(arcs), 1))], axis=1)


@pytest.mark.parametrize("radius", [300.0, 1666.7, 2.0e5])
def test_curvature_of_a_circle_through_the_origin(radius):
    arcs = np.array([40.0, 110.0, 290.0])
    for q in (1, -1):
        pos = _helix_xy(radius, q, 0.7, arcs)
        e = pair_features(_points_hf(pos), np.array([0, 0, 1]), np.array([1, 2, 2]))
        np.testing.assert_allclose(e[:, _col("curvature")], q * 1000.0 / radius, rtol=1e-6)
        np.testing.assert_allclose(signed_curvature(pos[[0]], pos[[1]]), q / radius, rtol=1e-9)


def test_z0_of_a_line():
    z0, cot = -37.0, 1.8
    r = np.array([50.0, 120.0, 800.0])
    phi = np.array([0.2, 0.21, 0.25])
    pos = np.stack([r * np.cos(phi), r * np.sin(phi), z0 + cot * r], axis=1)
    e = pair_features(_points_hf(pos), np.array([0, 0, 2]), np.array([1, 2, 1]))
    np.testing.assert_allclose(e[:, _col("z0")], z0 / 100.0, rtol=1e-5)


def test_degenerate_pairs_are_finite():
    pos = np.array(
        [
            [100.0, 0.0, 5.0],
            [100.0, 0.0, 5.0],  # identical to 0
            [0.0, 100.0, 50.0],  # same r as 0
            [0.0, 0.0, 20.0],  # on the axis
            [0.0, 0.0, 0.0],  # the origin
        ]
    )
    dirs = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 0], [0, 0, 1.0]])
    hf = _points_hf(pos, dirs)
    s = np.array([0, 0, 0, 3, 4, 4, 1])
    t = np.array([1, 2, 3, 4, 4, 0, 1])
    e = pair_features(hf, s, t)
    assert np.isfinite(e).all()
    assert e[0, _col("z0")] == pytest.approx(0.05)  # identical points: z0 = z
    assert abs(e[1, _col("z0")]) <= 30.0  # equal r: clipped
    assert e[0, _col("cell_chord_i")] == 0.0  # zero chord
    assert e[0, _col("cell_cos")] == pytest.approx(1.0)
    assert e[2, _col("cell_cos")] == 0.0  # zero cell direction
    # Coincident points or a point on the axis: no circle, curvature 0.
    np.testing.assert_array_equal(e[[0, 2, 3, 4, 5, 6], _col("curvature")], 0.0)
    assert e[1, _col("curvature")] == pytest.approx(-2e4 / (1e4 * 100 * np.sqrt(2)) * 1000)


def test_pair_index_errors(feats):
    with pytest.raises(ValueError, match="out of range"):
        pair_features(feats, np.array([0]), np.array([feats.n_hits]))
    with pytest.raises(ValueError, match="equal length"):
        pair_features(feats, np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="integer"):
        pair_features(feats, np.array([0.0]), np.array([1.0]))


def test_empty_event(event):
    empty = dataclasses.replace(event, hits=event.hits.iloc[:0], cells=event.cells.iloc[:0])
    hf = hit_features(empty)
    assert hf.x.shape == (0, n_features()) and hf.cell_dir.shape == (0, 3)
    assert pair_features(hf, np.zeros(0, int), np.zeros(0, int)).shape == (0, n_pair_features())


def test_pair_features_in_jax_match_numpy_and_the_fused_filter(event, feats):
    """The float32 pair features the edge filter computes inside its program
    (:mod:`cgnn_jax.features.pairs_jax`) are the float64 numpy ones up to float32 rounding, on
    every pair that is not degenerate (``z0`` of two hits at nearly equal radius is
    ill-conditioned in either precision), and the fused filter is the filter of those features,
    in chunks or whole."""
    import jax
    import jax.numpy as jnp

    from cgnn_jax.features.pairs_jax import pair_columns, pair_features_jnp
    from cgnn_jax.inference.stage1 import edge_probabilities, edge_probabilities_fused
    from cgnn_jax.models import EdgeFilter
    from tests.helpers import assert_reordered_close

    rng = np.random.default_rng(5)
    n = feats.n_hits
    s, r = rng.integers(0, n, 6000), rng.integers(0, n, 6000)
    want = pair_features(feats, s, r)
    got = np.asarray(jax.jit(pair_features_jnp)(pair_columns(feats), s, r))
    assert got.shape == want.shape and got.dtype == np.float32
    rad = np.hypot(feats.pos[:, 0], feats.pos[:, 1])
    fine = np.abs(rad[r] - rad[s]) > 1.0  # mm
    for k, name in enumerate(PAIR_FEATURE_NAMES):
        np.testing.assert_allclose(got[fine, k], want[fine, k], rtol=1e-4, atol=1e-5, err_msg=name)
    assert np.isfinite(got).all()
    model = EdgeFilter(hidden=(8, 8))
    x = feats.x.astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(got[:1]), s[:1], r[:1])
    direct = edge_probabilities(model, params, x, got, s, r)
    for chunk in (1 << 20, 512):
        fused = edge_probabilities_fused(model, params, feats, s, r, chunk=chunk)
        assert_reordered_close(fused, direct, 8, depth=3)
