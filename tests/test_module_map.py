"""The module map and its candidate edges (cgnn_jax.graph.module_map)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.graph.module_map import (
    QUANTITIES,
    ModuleMap,
    build_module_map,
    candidates,
    event_truth,
    module_keys,
    path_pairs,
)
from cgnn_jax.sim import simulate_event
from cgnn_jax.sim.dataset import event_seed


def _event(i: int):
    return simulate_event(event_seed(5, i), 200.0, track_fraction=0.02, event_id=1 + i)


@pytest.fixture(scope="module")
def events():
    return [_event(0), _event(1)]


@pytest.fixture(scope="module")
def mmap(events) -> ModuleMap:
    return build_module_map(events[:1])


def _pair_set(hits: pd.DataFrame, s: np.ndarray, t: np.ndarray) -> set[tuple[int, int]]:
    hid = hits["hit_id"].to_numpy(np.int64)
    return set(zip(hid[s].tolist(), hid[t].tolist(), strict=True))


def test_map_covers_its_own_events_consecutive_pairs(events, mmap):
    ev = events[0]
    pid, _ = event_truth(ev)
    a, b = path_pairs(ev.hits, pid)
    assert len(a) > 100
    mk = module_keys(ev.hits)
    keys = (mk[a] << 32) | mk[b]
    assert np.isin(keys, mmap.keys).all()  # coverage 1.0
    assert mmap.count.sum() == len(a)
    assert np.all(mmap.lo <= mmap.hi)
    for margin in (None, 0.0):  # the exact windows hold every training doublet
        s, t = candidates(ev.hits, mmap, window_margin=margin, floor=0.0)
        got = _pair_set(ev.hits, s, t)
        assert _pair_set(ev.hits, a, b) <= got
        assert not any(x == y for x, y in got)


def test_windows_only_cut(events, mmap):
    hits = events[1].hits  # an unseen event: some pairs fall outside the windows
    every = _pair_set(hits, *candidates(hits, mmap, window_margin=None))
    exact = _pair_set(hits, *candidates(hits, mmap, window_margin=0.0, floor=0.0))
    wide = _pair_set(hits, *candidates(hits, mmap, window_margin=0.1, floor=1.0))
    assert exact <= wide <= every
    assert len(exact) < len(every)
    # chunking changes nothing
    small = _pair_set(hits, *candidates(hits, mmap, window_margin=0.1, chunk=1000))
    assert small == wide


def test_merge_is_the_map_of_both_events(events, mmap):
    other = build_module_map(events[1:])
    both = build_module_map(events)
    merged = mmap.merge(other)
    np.testing.assert_array_equal(merged.keys, both.keys)
    np.testing.assert_array_equal(merged.lo, both.lo)
    np.testing.assert_array_equal(merged.hi, both.hi)
    np.testing.assert_array_equal(merged.count, both.count)
    assert both.n_pairs > mmap.n_pairs and np.isin(mmap.keys, both.keys).all()
    i = np.searchsorted(both.keys, mmap.keys)
    assert np.all(both.lo[i] <= mmap.lo) and np.all(both.hi[i] >= mmap.hi)


def test_serialization_holds_every_window(mmap):
    """Stored in float16 rounded outward: each window holds the built one within a float16
    step, keys and counts exact; a second round trip changes nothing."""
    for back in (ModuleMap.from_bytes(mmap.to_bytes()), ModuleMap.from_json(mmap.to_json())):
        for f in dataclasses.fields(ModuleMap):
            assert getattr(back, f.name).dtype == getattr(mmap, f.name).dtype
        np.testing.assert_array_equal(back.keys, mmap.keys)
        np.testing.assert_array_equal(back.count, mmap.count)
        assert np.all(back.lo <= mmap.lo) and np.all(back.hi >= mmap.hi)
        finite = np.abs(mmap.lo) < 6e4
        step = np.maximum(np.abs(mmap.lo[finite]) * 2e-3, 1e-7)
        assert np.all(mmap.lo[finite] - back.lo[finite] <= step)
        again = ModuleMap.from_bytes(back.to_bytes())
        np.testing.assert_array_equal(again.lo, back.lo)
        np.testing.assert_array_equal(again.hi, back.hi)
    assert mmap.keys.dtype == np.int64 and mmap.lo.dtype == np.float32
    assert 0 < mmap.size_mb() < 1
    with pytest.raises(ValueError, match="format version"):
        ModuleMap.from_json({**mmap.to_json(), "format_version": 99})
    with pytest.raises(ValueError, match="module-map npz"):
        ModuleMap.from_bytes(b"not a map")


def test_hit_order_and_extra_hits_leave_the_candidate_set(events, mmap):
    hits = events[1].hits
    want = _pair_set(hits, *candidates(hits, mmap))
    rng = np.random.default_rng(0)
    shuffled = hits.iloc[rng.permutation(len(hits))].reset_index(drop=True)
    assert _pair_set(shuffled, *candidates(shuffled, mmap)) == want
    # padding: hits on a module no map pair names add no candidate
    pad = hits.iloc[:50].copy()
    pad["hit_id"] = pad["hit_id"] + 10**7
    pad["module_id"] = 65000
    padded = pd.concat([shuffled, pad], ignore_index=True)
    assert _pair_set(padded, *candidates(padded, mmap)) == want


def test_bad_input_names_the_column(events, mmap):
    hits = events[0].hits
    for col in ("module_id", "z"):
        with pytest.raises(ValueError, match=f"'{col}'"):
            candidates(hits.drop(columns=[col]), mmap)
    ev = dataclasses.replace(events[0], truth=events[0].truth.drop(columns=["particle_id"]))
    with pytest.raises(ValueError, match="'particle_id'"):
        build_module_map([ev])
    with pytest.raises(ValueError, match="at least one"):
        build_module_map([])
    bad = hits.assign(module_id=-1)
    with pytest.raises(ValueError, match="module_id outside"):
        candidates(bad, mmap)
    with pytest.raises(ValueError, match="window_margin"):
        candidates(hits, mmap, window_margin=-0.1)
    assert len(QUANTITIES) == mmap.lo.shape[1]
