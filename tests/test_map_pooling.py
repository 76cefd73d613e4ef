"""The module map pooled over the detector's rotations in φ (cgnn_jax.graph.map_pooling)."""

from __future__ import annotations

import numpy as np
import pytest

from cgnn_jax.graph.map_pooling import detector_rings, pooled_module_map
from cgnn_jax.graph.module_map import QUANTITIES, ModuleMap


def _module(rg, ring, index):
    return rg.keys[
        rg.ring_rows[rg.ring_first[ring] + index % rg.n_phi[rg.ring_rows[rg.ring_first[ring]]]]
    ]


def _map(pairs, lo, hi):
    keys = np.array([(a << 32) | b for a, b in pairs], np.int64)
    q = len(QUANTITIES)
    lo = np.broadcast_to(np.asarray(lo, np.float32), (len(keys), q)).copy()
    hi = np.broadcast_to(np.asarray(hi, np.float32), (len(keys), q)).copy()
    o = np.argsort(keys)
    return ModuleMap(keys[o], lo[o], hi[o], np.ones(len(keys), np.uint32))


def test_rings_are_evenly_spaced_in_phi():
    rg = detector_rings()
    first = rg.ring_rows[rg.ring_first[rg.ring]]
    d = rg.phi - (rg.phi[first] + rg.index * 2 * np.pi / rg.n_phi)
    assert np.abs((d + np.pi) % (2 * np.pi) - np.pi).max() < 1e-4
    assert len(rg.keys) == 18728 and (rg.n_phi % 2 == 0).all()


def test_a_pair_is_pooled_to_every_rotation_of_its_parity():
    rg = detector_rings()
    # two z-rows of one barrel layer: same n_phi, so a rotation by 2 modules maps pairs onto pairs
    ring_a = rg.ring[rg.rows(np.array([(8 << 24) | (4 << 16) | 1]))][0]
    ring_b = ring_a + 1
    n = rg.n_phi[rg.ring_rows[rg.ring_first[ring_a]]]
    a, b = _module(rg, ring_a, 4), _module(rg, ring_b, 5)
    m = _map([(a, b)], [0, -1, -0.1, -1e-3, -0.05], [10, 1, 0.1, 1e-3, 0.05])
    p = pooled_module_map(m, phase_bins=4)
    assert p.n_pairs == n // 2  # one pair per module of a's parity
    for k in (0, 2, 10, n - 2):
        key = (_module(rg, ring_a, 4 + k) << 32) | _module(rg, ring_b, 5 + k)
        i = np.searchsorted(p.keys, key)
        assert p.keys[i] == key
        np.testing.assert_array_equal(p.lo[i], m.lo[0])
    odd = (_module(rg, ring_a, 5) << 32) | _module(rg, ring_b, 6)
    assert odd not in set(p.keys.tolist())  # the other parity is another class


def test_classes_take_the_union_of_windows_and_fill_only_keeps_seen_windows():
    rg = detector_rings()
    ring_a = rg.ring[rg.rows(np.array([(8 << 24) | (4 << 16) | 1]))][0]
    pairs = [
        (_module(rg, ring_a, 0), _module(rg, ring_a + 1, 0)),
        (_module(rg, ring_a, 2), _module(rg, ring_a + 1, 2)),
    ]
    m = _map(pairs, 0, 1)
    m.lo[1] -= 1.0  # the second pair saw a wider window
    wide = pooled_module_map(m)
    assert np.isin(m.keys, wide.keys).all()
    np.testing.assert_array_equal(wide.lo, np.full_like(wide.lo, -1.0))
    fill = pooled_module_map(m, fill_only=True)
    i = np.searchsorted(fill.keys, m.keys)
    np.testing.assert_array_equal(fill.lo[i], m.lo)  # seen pairs keep their own windows
    assert fill.n_pairs == wide.n_pairs


def test_unknown_modules_and_bad_bins_are_errors():
    bad = _map([((99 << 24) | 1, (8 << 24) | (2 << 16) | 1)], 0, 1)
    with pytest.raises(ValueError, match="volume 99"):
        pooled_module_map(bad)
    with pytest.raises(ValueError, match="phase_bins"):
        pooled_module_map(bad, phase_bins=0)
