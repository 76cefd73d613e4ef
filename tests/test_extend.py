"""Track extension along helix roads (:mod:`cgnn_jax.cluster.extend`) on synthetic helices."""

from __future__ import annotations

import functools

import ml_collections
import numpy as np
import pytest

from cgnn_jax.cluster.extend import extend_tracks, layer_geometry

BARREL_R = (32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0)
BARREL_HALF_Z = 500.0
DISK_Z = (600.0, 700.0, 800.0, 1000.0, 1200.0)  # at -z (layers 10..14) and +z (15..19)
DISK_R = (30.0, 1020.0)


def _helix_point(rho, s, R, phi_c, side, t, z0):
    """The point at distance ``rho`` from the beam line, arc length ``s``, of a helix through
    the origin (circle centre at angle ``phi_c``, radius ``R``; ``z = z0 + t s``)."""
    phi = phi_c + side * np.arccos(rho / (2 * R))
    return [rho * np.cos(phi), rho * np.sin(phi), z0 + t * s]


def helix_hits(n_tracks: int, seed: int = 0):
    """Hits of prompt helices (p_T 1-5 GeV in 2 T, |cot theta| <= 2.5, |z0| <= 50 mm, phi0 in
    [0, pi)) on 10 barrel layers and 2 x 5 disks: ``pos [n, 3]``, ``layer [n]``, ``particle [n]``."""
    rng = np.random.default_rng(seed)
    pos, layer, particle = [], [], []
    for p in range(n_tracks):
        R = 1000.0 * rng.uniform(1.0, 5.0) / 0.6  # mm: p_T [GeV] / (0.3 * 2 T)
        phi0, side = rng.uniform(0.0, np.pi), rng.choice([-1.0, 1.0])
        t, z0 = rng.uniform(-2.5, 2.5), rng.uniform(-50.0, 50.0)
        phi_c = phi0 - side * np.pi / 2  # the circle's centre, seen from the origin
        at = functools.partial(_helix_point, R=R, phi_c=phi_c, side=side, t=t, z0=z0)
        for i, rho in enumerate(BARREL_R):
            s = 2 * R * np.arcsin(rho / (2 * R))
            if abs(z0 + t * s) < BARREL_HALF_Z:
                pos.append(at(rho, s)), layer.append(i), particle.append(p)
        for j, zd in enumerate(DISK_Z):
            for sign, base in ((-1.0, 10), (1.0, 15)):
                s = (sign * zd - z0) / t
                rho = 2 * R * np.sin(s / (2 * R)) if s > 0 else -1.0
                if DISK_R[0] < rho < DISK_R[1]:
                    pos.append(at(rho, s)), layer.append(base + j), particle.append(p)
    return np.asarray(pos), np.asarray(layer), np.asarray(particle)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings group the points alike (labels themselves may differ)."""
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def broken_tracks(particle: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The true labels with two hits of every track of >= 8 hits made singletons, and the last
    two hits of every other such track split off as a fragment of their own."""
    label = particle.copy()
    nxt = particle.max() + 1
    for p in np.unique(particle):
        idx = np.flatnonzero(particle == p)
        if len(idx) < 8:
            continue
        for h in rng.choice(idx[:-2], size=2, replace=False):
            label[h], nxt = nxt, nxt + 1
        if p % 2:
            label[idx[-2:]], nxt = nxt, nxt + 1
    return label


def test_layer_geometry_reads_barrels_and_disks_off_the_hits():
    pos, layer, _ = helix_hits(40)
    geo = layer_geometry(pos, layer)
    assert geo.present.all() and len(geo.barrel) == 20
    np.testing.assert_array_equal(geo.barrel, np.arange(20) < 10)
    np.testing.assert_allclose(geo.position[:10], BARREL_R, rtol=1e-9)
    np.testing.assert_allclose(np.abs(geo.position[10:]), DISK_Z * 2, rtol=1e-9)
    assert (geo.lo[:10] >= -BARREL_HALF_Z - 20).all() and (geo.hi[:10] <= BARREL_HALF_Z + 20).all()


def test_free_hits_and_fragments_rejoin_their_tracks():
    pos, layer, particle = helix_hits(30, seed=1)
    label = broken_tracks(particle, np.random.default_rng(2))
    assert not same_partition(label, particle)
    out = extend_tracks(label, pos, layer)
    assert out.dtype == np.int64 and out.min() == 1
    assert same_partition(out, particle)


def test_hits_off_every_road_and_on_covered_layers_stay_alone():
    pos, layer, particle = helix_hits(30, seed=1)
    rng = np.random.default_rng(3)
    # noise on the barrel layers, in the half of the detector no track crosses (phi < -0.5)
    k = 40
    li = rng.integers(0, 10, size=k)
    phi = rng.uniform(-np.pi + 0.5, -0.5, size=k)
    rho = np.asarray(BARREL_R)[li]
    noise = np.stack([rho * np.cos(phi), rho * np.sin(phi), rng.uniform(-400, 400, k)], 1)
    # a copy of a track's hit, 1 mm off, on the layer that track already has
    copy = pos[:1] + np.array([[0.0, 0.0, 1.0]])
    all_pos = np.concatenate([pos, noise, copy])
    all_layer = np.concatenate([layer, li, layer[:1]])
    label = np.concatenate([particle, 1000 + np.arange(k + 1)])
    out = extend_tracks(label, all_pos, all_layer)
    assert same_partition(out[: len(pos)], particle)
    extra = out[len(pos) :]
    assert len(np.unique(extra)) == k + 1 and not np.isin(extra, out[: len(pos)]).any()


def test_extension_does_not_depend_on_the_hit_order():
    pos, layer, particle = helix_hits(30, seed=4)
    label = broken_tracks(particle, np.random.default_rng(5))
    out = extend_tracks(label, pos, layer)
    perm = np.random.default_rng(6).permutation(len(pos))
    out_perm = extend_tracks(label[perm], pos[perm], layer[perm])
    inv = np.argsort(perm)
    assert same_partition(out_perm[inv], out)


def test_zero_iterations_and_bad_input():
    pos, layer, particle = helix_hits(5)
    label = particle * 7 + 3
    out = extend_tracks(label, pos, layer, iterations=0)
    assert same_partition(out, label) and out.min() == 1 and out.max() == len(np.unique(label))
    with pytest.raises(ValueError, match="must be"):
        extend_tracks(label[:-1], pos, layer)
    with pytest.raises(ValueError, match="layer indices"):
        extend_tracks(label, pos, layer + 64)
    with pytest.raises(ValueError, match="min_size > free_max"):
        extend_tracks(label, pos, layer, free_max=3, min_size=3)
    assert len(extend_tracks(np.zeros(0, int), np.zeros((0, 3)), np.zeros(0, int))) == 0


def test_pipeline_extends_only_when_its_config_says_so():
    """``Stage3.extend``: ``cluster.extend_iterations`` 0 (or absent) leaves the track ids
    alone; > 0 runs :func:`extend_tracks` with the config's road widths."""
    from cgnn_jax.features.hits import HitFeatures
    from cgnn_jax.inference import Stage3
    from cgnn_jax.inference.events import PreparedEvent

    pos, layer, particle = helix_hits(30, seed=1)
    label = broken_tracks(particle, np.random.default_rng(2))
    n = len(pos)
    hf = HitFeatures(
        x=np.zeros((n, 1), np.float32),
        names=["x"],
        hit_id=np.arange(1, n + 1),
        pos=pos,
        cell_dir=np.zeros((n, 3)),
        volume_index=np.zeros(n, np.int32),
        layer_index=layer.astype(np.int32),
        has_cells=np.zeros(n, bool),
    )
    ev = PreparedEvent(0, hf, particle)

    def pipe_with(**cluster):
        config = ml_collections.ConfigDict({"cluster": cluster})
        return Stage3(config, {}, 0.5)

    np.testing.assert_array_equal(pipe_with().extend(ev, label), label)
    np.testing.assert_array_equal(pipe_with(extend_iterations=0).extend(ev, label), label)
    assert same_partition(pipe_with(extend_iterations=2).extend(ev, label), particle)
    # the config's sizes are the ones used: with no hit free, nothing moves
    none_free = pipe_with(extend_iterations=2, extend_free_max=0, extend_min_size=1)
    assert same_partition(none_free.extend(ev, label), label)
