"""Zones, the learned zone-pair map and the zone-restricted kNN graph (cgnn_jax.graph.zones)."""

from __future__ import annotations

import numpy as np
import pytest

from cgnn_jax.graph.neighbors import neighbor_graph, zone_knn_graph
from cgnn_jax.graph.zones import ZoneMap, learn_zone_map

RADII = (50.0, 100.0, 150.0)  # three barrel layers 0, 1, 2 (|z| < 400); layer 3: a disk at z = 600


def toy_event(rng: np.random.Generator, n_tracks: int = 200):
    """Straight tracks from the origin: one hit per barrel layer, or on the disk."""
    layer, pos, pid = [], [], []
    for p in range(1, n_tracks + 1):
        phi, cot = rng.uniform(-np.pi, np.pi), rng.uniform(-2.5, 20.0)
        for li, r in enumerate(RADII):
            if abs(r * cot) < 400:
                layer.append(li)
                pos.append((r * np.cos(phi), r * np.sin(phi), r * cot))
                pid.append(p)
        r = 600 / cot if cot > 0 else np.inf
        if 30 < r < 160:
            layer.append(3)
            pos.append((r * np.cos(phi), r * np.sin(phi), 600.0))
            pid.append(p)
    return np.array(layer), np.array(pos), np.array(pid)


@pytest.fixture(scope="module")
def zmap() -> ZoneMap:
    rng = np.random.default_rng(0)
    return learn_zone_map([toy_event(rng) for _ in range(3)], n_layers=5, bins=4)


def test_zones_slice_barrel_layers_in_z_and_disks_in_r(zmap):
    assert list(zmap.axis_z[:4]) == [True, True, True, False]
    z = np.linspace(-390, 390, 9)
    zones = zmap.zones(np.ones(9, int), np.stack([100 * np.ones(9), 0 * z, z], 1))
    assert np.all(np.diff(zones) >= 0) and zones.min() == 4 and zones.max() == 7
    # -1 is no layer of the map: the catch-all zone
    catch = zmap.n_layers * zmap.bins
    assert list(zmap.zones(np.array([4, -1]), np.zeros((2, 3)))) == [16, catch]


def test_zone_map_allows_what_tracks_join_and_nothing_across(zmap):
    def zone(li, r, z):
        return int(zmap.zones(np.array([li]), np.array([[r, 0.0, z]]))[0])

    # consecutive hits of one track: layer 0 at z = 100 -> layer 1 at z = 200
    assert zmap.allowed[zone(0, 50, 100), zone(1, 100, 200)]
    assert zmap.allowed[zone(1, 100, 200), zone(0, 50, 100)]  # both orders
    # across the detector: layer 0 at z = -150 and layer 1 at z = +300
    assert not zmap.allowed[zone(0, 50, -150), zone(1, 100, 300)]
    # the middle barrel layer near its end and the disk's outer ring: a forward track joins them
    assert zmap.allowed[zone(1, 100, 390), zone(3, 150, 600)]
    # backward hits of layer 0 never join the forward disk
    assert not zmap.allowed[zone(0, 50, -100), zone(3, 100, 600)]
    # layer 4 was never hit in training and the catch-all zone: allowed with every zone
    catch = zmap.n_layers * zmap.bins
    assert zmap.allowed[catch].all() and zmap.allowed[:, zone(4, 0, 0)].all()


def test_zone_map_json_round_trip(zmap):
    back = ZoneMap.from_json(zmap.to_json())
    assert back.bins == zmap.bins
    np.testing.assert_array_equal(back.axis_z, zmap.axis_z)
    np.testing.assert_allclose(back.edges, zmap.edges, atol=1e-3)
    np.testing.assert_array_equal(back.allowed, zmap.allowed)
    bad = {**zmap.to_json(), "pairs": [[0, 10_000]]}
    with pytest.raises(ValueError, match="zone pair"):
        ZoneMap.from_json(bad)


def test_zone_knn_graph_with_every_pair_allowed_is_the_knn_graph():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(500, 4)).astype(np.float32)
    zones = rng.integers(0, 3, 500)
    s, r = zone_knn_graph(pts, zones, np.ones((3, 3), bool), k=6, candidates=6, radius=10.0)
    s0, r0 = neighbor_graph(pts, "knn_radius", k=6, radius=10.0)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(r, r0)


def test_zone_knn_graph_keeps_k_nearest_allowed_neighbours():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(600, 3)).astype(np.float32)
    zones = rng.integers(0, 4, 600)
    allowed = np.eye(4, dtype=bool)[:, ::-1] | np.eye(4, dtype=bool)  # i with i and 3 - i
    allowed[0, 0] = allowed[3, 3] = False
    k = 5
    s, r = zone_knn_graph(pts, zones, allowed, k=k, candidates=40, radius=10.0)
    assert allowed[zones[s], zones[r]].all()
    assert len(s) and np.all(s != r)
    # each point's own k picks: its k nearest allowed points (the union adds reverse edges)
    for i in rng.choice(600, 20, replace=False):
        ok = np.flatnonzero(allowed[zones[i], zones] & (np.arange(600) != i))
        d = np.linalg.norm(pts[ok] - pts[i], axis=1)
        nearest = set(ok[np.argsort(d)[:k]])
        assert nearest <= set(r[s == i])


def test_zone_knn_graph_is_the_same_in_blocks_of_rows(monkeypatch):
    import cgnn_jax.graph.neighbors as nb

    rng = np.random.default_rng(4)
    pts = rng.normal(size=(700, 3)).astype(np.float32)
    zones = rng.integers(0, 5, 700)
    allowed = rng.random((5, 5)) < 0.6
    allowed |= allowed.T
    whole = zone_knn_graph(pts, zones, allowed, k=4, candidates=12, radius=10.0, workers=1)
    monkeypatch.setattr(nb, "_BLOCK_ROWS", 64)  # 11 blocks, the last one short, two threads
    blocks = zone_knn_graph(pts, zones, allowed, k=4, candidates=12, radius=10.0, workers=2)
    for a, b in zip(whole, blocks, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(whole[0]) > 700


def test_zone_knn_graph_checks_its_inputs():
    with pytest.raises(ValueError, match="zones"):
        zone_knn_graph(np.zeros((5, 2)), np.zeros(4, int), np.ones((1, 1), bool))


def test_trained_stage1_learns_a_zone_map_and_its_graph_keeps_to_it(two_runs):
    """configs/test.py inherits ``graph.zone_bins = 8``: stage 1 learns a map from its training
    events' truth, the resumed run the same one, and the embedding graph joins allowed zones
    only, at most ``zone_k`` picks per hit."""
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.inference.events import prepare_event
    from cgnn_jax.sim import simulate_event

    whole, resumed, _ = two_runs
    pipe = Pipeline.restore(whole)
    zm = pipe.stage1.zone_map
    assert zm is not None and zm.bins == pipe.stage1_config.graph.zone_bins == 8
    np.testing.assert_array_equal(zm.allowed, Pipeline.restore(resumed).stage1.zone_map.allowed)
    assert 0 < zm.allowed.mean() < 1
    ev = prepare_event(simulate_event(32, 10.0, event_id=32, track_fraction=0.3))
    s, r = pipe.stage1.embedding_graph(ev)
    zones = zm.zones(ev.hf.layer_index, ev.hf.pos)
    assert len(s) and zm.allowed[zones[s], zones[r]].all()
    # directed picks before the union: at most zone_k per hit, so at most 2 * zone_k * n edges
    assert len(s) <= 2 * pipe.stage1_config.graph.zone_k * ev.n


def test_export_model_adds_a_zone_map_and_changes_nothing_else(two_runs, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import jax

    from cgnn_jax.inference import Pipeline

    whole, _, _ = two_runs
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "model"
    p = subprocess.run(
        [sys.executable, "launch/export_model.py", f"--workdir={whole}", f"--out={out}",
         "--zone_bins=4", "--zone_k=6", "--zone_candidates=12"],
        cwd=root, capture_output=True, text=True, check=False,
        env={**os.environ, "CGNN_JAX_CACHE_DIR": "off"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    a, b = Pipeline.restore(whole), Pipeline.restore(out)
    assert b.stage1.zone_map.bins == 4 and b.stage1_config.graph.zone_k == 6
    assert b.stage1_config.graph.candidates == 12
    for group in a.params:
        leaves = zip(
            jax.tree_util.tree_leaves(a.params[group]),
            jax.tree_util.tree_leaves(b.params[group]),
            strict=True,
        )
        for x, y in leaves:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert {k: v for k, v in b.learned.items() if k != "zone_map"} == {
        k: v for k, v in a.learned.items() if k != "zone_map"
    }
