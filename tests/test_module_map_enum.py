"""The module map's candidate enumeration (cgnn_jax.graph.module_map.candidate_pairs) against the
plain cross-product enumeration it replaces and a brute force over hand-made edge cases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cgnn_jax.graph import module_map as mm
from cgnn_jax.graph.module_map import ModuleMap, build_module_map, candidate_pairs, module_keys
from cgnn_jax.sim import simulate_event
from cgnn_jax.sim.dataset import event_seed

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_module_map.py"
SETTINGS = [(None, 1.0), (0.0, 0.0), (0.1, 1.0), (0.02, 0.1)]  # (window_margin, floor)


@pytest.fixture(scope="module")
def reference():
    """The benchmark's cross-product enumeration (the implementation this one replaces)."""
    spec = importlib.util.spec_from_file_location("bench_module_map", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.cross_product_candidates


@pytest.fixture(scope="module")
def events():
    return [
        simulate_event(event_seed(8, i), 200.0, track_fraction=0.03, event_id=1 + i)
        for i in range(2)
    ]


def _codes(s: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    return np.sort(np.asarray(s, np.int64) * n + np.asarray(t, np.int64))


def _assert_same_set(got: tuple, want: tuple, n: int) -> None:
    g, w = _codes(*got, n), _codes(*want, n)
    assert len(np.unique(g)) == len(g)  # no pair twice
    np.testing.assert_array_equal(g, w)


def _brute_force(keys, pos, mmap: ModuleMap, margin, floor) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered hit pair, kept when its module pair is mapped and (with a margin) its
    doublet quantities lie in the pair's widened window."""
    n = len(keys)
    s, t = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    pair = (keys[s] << 32) | keys[t]
    row = np.clip(np.searchsorted(mmap.keys, pair), 0, mmap.n_pairs - 1)
    keep = (mmap.keys[row] == pair) & (s != t)
    s, t, row = s[keep], t[keep], row[keep]
    if margin is not None:
        h = mm._position_arrays(pos)
        lo, hi = mm._windows(mmap, margin, floor)
        for q in range(len(mm.QUANTITIES)):
            v = mm._quantity(h, q, s, t)
            keep = (v >= lo[row, q]) & (v <= hi[row, q])
            s, t, row = s[keep], t[keep], row[keep]
    return s, t


def _key(volume: int, layer: int, module: int) -> int:
    return (volume << 24) | (layer << 16) | module


def _edge_case_event() -> tuple[np.ndarray, np.ndarray, ModuleMap]:
    """Hand-made hits and map: hits at one radius, a same-module pair, modules straddling
    φ = ±π, hits sharing η, hits at one point, a hit without z, a one-hit module, mapped
    modules without hits, windows that are one doublet's exact values, unbounded windows and
    windows that cut half of a pair."""
    rng = np.random.default_rng(3)
    mods = {
        "ring": _key(8, 2, 10),  # 24 hits, all at r = 100 (Δr = 0 within the module)
        "outer": _key(8, 4, 10),  # 30 hits at r in [150, 152]
        "disk": _key(9, 2, 3),  # 20 hits at z = 800 exactly
        "single": _key(13, 2, 1),  # 1 hit
        "same_eta": _key(13, 4, 7),  # 12 hits on one line from the origin: equal η
        "empty": _key(14, 2, 5),  # mapped, no hit
    }
    pos, keys = [], []

    def add(module: str, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        pos.append(np.stack([x, y, z], 1))
        keys.append(np.full(len(x), mods[module], np.int64))

    phi = np.pi + rng.uniform(-0.05, 0.05, 24)  # both sides of φ = ±π
    add("ring", 100 * np.cos(phi), 100 * np.sin(phi), rng.uniform(-60, 60, 24))
    r, phi = rng.uniform(150, 152, 30), np.pi + rng.uniform(-0.06, 0.06, 30)
    add("outer", r * np.cos(phi), r * np.sin(phi), rng.uniform(-100, 100, 30))
    r, phi = rng.uniform(50, 300, 20), rng.uniform(-0.2, 0.2, 20)
    add("disk", r * np.cos(phi), r * np.sin(phi), np.full(20, 800.0))
    add("single", np.array([400.0]), np.array([10.0]), np.array([500.0]))
    u = np.repeat(rng.uniform(0.3, 0.6, 6), 2)  # pairs of hits at the same point too
    add("same_eta", 500 * u, 40 * u, 700 * u)
    keys_a, pos_a = np.concatenate(keys), np.concatenate(pos)
    pos_a[30, 2] = np.nan  # an "outer" hit without z: in no windowed candidate
    order = rng.permutation(len(keys_a))  # rows not grouped by module
    keys_a, pos_a = keys_a[order], pos_a[order]

    m = mods
    pairs = [
        (m["ring"], m["ring"]),
        (m["ring"], m["outer"]),
        (m["outer"], m["ring"]),
        (m["ring"], m["disk"]),
        (m["disk"], m["disk"]),
        (m["disk"], m["same_eta"]),
        (m["same_eta"], m["same_eta"]),
        (m["single"], m["same_eta"]),
        (m["outer"], m["single"]),
        (m["empty"], m["ring"]),
        (m["ring"], m["empty"]),
    ]
    h = mm._position_arrays(pos_a)
    lo, hi = [], []
    for k, (a, b) in enumerate(pairs):
        s, t = np.meshgrid(np.flatnonzero(keys_a == a), np.flatnonzero(keys_a == b), indexing="ij")
        s, t = s.ravel(), t.ravel()
        keep = s != t
        s, t = s[keep], t[keep]
        nq = len(mm.QUANTITIES)
        if len(s) == 0:
            lo.append(np.zeros(nq, np.float32))
            hi.append(np.zeros(nq, np.float32))
            continue
        v = np.stack([mm._quantity(h, q, s, t) for q in range(nq)], 1)
        if k == 1:  # one doublet's exact values: edges hit exactly
            lo.append(v[0])
            hi.append(v[0])
        elif k == 3:  # unbounded (a float16 "no bound")
            lo.append(np.full(nq, -np.inf, np.float32))
            hi.append(np.full(nq, np.inf, np.float32))
        else:  # the middle of each quantity's range: cuts some pairs of each
            lo.append(np.nanquantile(v, 0.2, axis=0).astype(np.float32))
            hi.append(np.nanquantile(v, 0.8, axis=0).astype(np.float32))
    pkeys = np.array([(a << 32) | b for a, b in pairs], np.int64)
    o = np.argsort(pkeys)
    mmap = ModuleMap(pkeys[o], np.stack(lo)[o], np.stack(hi)[o], np.ones(len(pairs), np.uint32)[o])
    return keys_a, pos_a, mmap


@pytest.mark.parametrize(("margin", "floor"), SETTINGS)
def test_edge_cases_equal_the_brute_force(margin, floor):
    keys, pos, mmap = _edge_case_event()
    want = _brute_force(keys, pos, mmap, margin, floor)
    assert len(want[0]) > 0
    for chunk in (1, 7, 1 << 18):  # one pair per call, a few, all at once
        got = candidate_pairs(keys, pos, mmap, margin, floor, chunk=chunk)
        assert got[0].dtype == np.int64 and got[1].dtype == np.int64
        _assert_same_set(got, want, len(keys))


def test_edge_case_windows_cut_and_keep():
    """The hand-made windows do something: exact windows keep a pair, quantile windows cut."""
    keys, pos, mmap = _edge_case_event()
    every = _codes(*candidate_pairs(keys, pos, mmap, None), len(keys))
    exact = _codes(*candidate_pairs(keys, pos, mmap, 0.0, 0.0), len(keys))
    assert 0 < len(exact) < len(every)
    assert np.isin(exact, every).all()


@pytest.mark.parametrize(("margin", "floor"), SETTINGS)
def test_events_equal_the_cross_product_reference(events, reference, margin, floor):
    mmap = build_module_map(events[:1])
    for ev in events:  # its own event (every training doublet on a window edge) and another
        keys, pos = module_keys(ev.hits), ev.hits[["x", "y", "z"]].to_numpy(np.float64)
        want = reference(keys, pos, mmap, margin, floor)
        got = candidate_pairs(keys, pos, mmap, margin, floor)
        assert len(got[0]) > (100 if ev is events[0] else 0)
        _assert_same_set(got, want, len(keys))
    small = candidate_pairs(keys, pos, mmap, margin, floor, chunk=100)
    for a, b in zip(small, got, strict=True):  # chunking changes nothing, order included
        np.testing.assert_array_equal(a, b)


def test_order_is_the_documented_one(events):
    """Grouped by module pair in map order; within a pair, senders by (η, row), each sender's
    receivers by (η, row); the same arrays on every call."""
    mmap = build_module_map(events[:1])
    ev = events[1]
    keys, pos = module_keys(ev.hits), ev.hits[["x", "y", "z"]].to_numpy(np.float64)
    s, t = candidate_pairs(keys, pos, mmap)
    s2, t2 = candidate_pairs(keys, pos, mmap)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(t, t2)
    eta = mm._position_arrays(pos)["eta"]
    pair = np.searchsorted(mmap.keys, (keys[s] << 32) | keys[t])
    want = np.lexsort((t, eta[t], s, eta[s], pair))
    np.testing.assert_array_equal(want, np.arange(len(s)))


def test_bad_chunk_and_empty_inputs(events):
    mmap = build_module_map(events[:1])
    keys = module_keys(events[1].hits)
    pos = events[1].hits[["x", "y", "z"]].to_numpy(np.float64)
    with pytest.raises(ValueError, match="chunk"):
        candidate_pairs(keys, pos, mmap, chunk=0)
    for margin in (None, 0.1):
        s, t = candidate_pairs(keys[:0], pos[:0], mmap, margin)
        assert len(s) == len(t) == 0 and s.dtype == np.int64
        # hits only on modules no mapped pair names
        s, t = candidate_pairs(np.full(5, 123, np.int64), pos[:5], mmap, margin)
        assert len(s) == 0
