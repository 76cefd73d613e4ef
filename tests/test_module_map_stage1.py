"""Stage 1 on module-map candidates: the builder, its symmetric refined graph and the budget cut."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from cgnn_jax.graph.module_map import (
    build_module_map,
    candidate_pairs,
    candidates,
    hit_module_keys,
    map_coverage,
    module_keys,
    symmetric_edges,
)
from cgnn_jax.inference.events import prepare_event
from cgnn_jax.inference.stage1 import Stage1, graph_builder
from cgnn_jax.train.stage1 import budget_threshold, consecutive_labels, module_map_edge_set
from configs.default import stage12


@pytest.fixture(scope="module")
def events(map_events):
    return map_events


@pytest.fixture(scope="module")
def stage1(events, untrained_stage1_params) -> Stage1:
    config = stage12()
    config.filter.hidden = (8, 8)
    emb_params, filter_params = untrained_stage1_params(config, prepare_event(events[0]))
    mmap = build_module_map(events[:1])
    learned = {"module_map": mmap.to_json(), "filter_threshold": 0.5}
    return Stage1(config, emb_params, filter_params, learned)


def test_hit_module_keys_are_the_tables_keys(events):
    ev = events[1]
    pe = prepare_event(ev)
    np.testing.assert_array_equal(hit_module_keys(pe.hf.module_index), module_keys(ev.hits))


def test_candidate_pairs_of_arrays_are_the_tables_candidates(events):
    mmap = build_module_map(events[:1])
    ev = events[1]
    s1, t1 = candidates(ev.hits, mmap)
    s2, t2 = candidate_pairs(module_keys(ev.hits), ev.hits[["x", "y", "z"]].to_numpy(), mmap)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(t1, t2)
    with pytest.raises(ValueError, match="module keys for"):
        candidate_pairs(module_keys(ev.hits)[:-1], ev.hits[["x", "y", "z"]].to_numpy(), mmap)


def test_symmetric_edges_keep_the_larger_score_once_each_way():
    s = np.array([0, 1, 2, 3, 4])
    r = np.array([1, 0, 3, 2, 0])
    p = np.array([0.9, 0.2, 0.1, 0.6, 0.7], np.float32)
    ss, rr, pp = symmetric_edges(s, r, p, 5, threshold=0.3)
    got = {(int(a), int(b)): float(q) for a, b, q in zip(ss, rr, pp, strict=True)}
    # (0, 1) once at 0.9 (its 0.2 twin is dropped), (2, 3) at 0.6 (0.1 < cut), (0, 4) at 0.7
    assert got == pytest.approx(
        {(0, 1): 0.9, (1, 0): 0.9, (2, 3): 0.6, (3, 2): 0.6, (0, 4): 0.7, (4, 0): 0.7}
    )
    e = symmetric_edges(s, r, p, 5, threshold=0.95)
    assert all(len(a) == 0 for a in e)


def test_budget_threshold_keeps_the_budget():
    rng = np.random.default_rng(0)
    n = 200
    s, r = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    keep = s != r
    s, r = s[keep], r[keep]
    p = rng.random(len(s)).astype(np.float32)
    t = budget_threshold(p, s, r, n, edges_per_hit=4.0)
    ss, _, _ = symmetric_edges(s, r, p, n, t)
    assert len(ss) // 2 == pytest.approx(4.0 * n / 2, abs=1)
    assert budget_threshold(p, s, r, n, edges_per_hit=1e4) == -1.0  # fewer candidates: all


def test_module_map_stage1_graphs(events, stage1):
    assert stage1.builder == "module_map"
    pe = prepare_event(events[1])
    s, r = stage1.embedding_graph(pe)
    ref_s, ref_r = candidates(events[1].hits, stage1.module_map, 0.1, 1.0)
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(r, ref_r)
    rs, rr, p = stage1.refined_graph(pe, s, r, threshold=0.0)
    assert len(rs) > 0 and np.all(p > 0)
    fwd = set(zip(rs.tolist(), rr.tolist(), strict=True))
    assert fwd == {(b, a) for a, b in fwd}  # undirected: both directions
    cand = set(zip(s.tolist(), r.tolist(), strict=True))
    assert all((a, b) in cand or (b, a) in cand for a, b in fwd)
    # a higher cut keeps a subset
    hs, hr, _ = stage1.refined_graph(pe, s, r, threshold=float(np.median(p)))
    assert set(zip(hs.tolist(), hr.tolist(), strict=True)) < fwd


def test_filter_training_set_has_every_consecutive_candidate(events, stage1):
    pe = prepare_event(events[1])
    x, edges = module_map_edge_set(stage1.config, stage1.module_map, [pe])
    s, r = stage1.embedding_graph(pe)
    y = consecutive_labels(pe, s, r)
    assert edges.y.sum() == y.sum() > 0
    assert len(edges.y) < len(y)  # negatives sampled
    assert x.shape[0] == pe.n and edges.z.shape[0] == len(edges.y)


def test_builder_errors_name_the_setting(events, stage1):
    bad = ml_collections.ConfigDict(stage1.config.to_dict())
    bad.graph.builder = "grid"
    with pytest.raises(ValueError, match=r"graph\.builder"):
        graph_builder(bad)
    no_map = Stage1(stage1.config, stage1.emb_params, stage1.filter_params, {})
    with pytest.raises(ValueError, match="no learned module map"):
        no_map.embedding_graph(prepare_event(events[1]))


def test_map_coverage(events):
    mmap = build_module_map(events[:1])
    cov = []
    for ev in events:
        pe = prepare_event(ev)
        cov.append(map_coverage(mmap, module_keys(ev.hits), pe.hf.pos, pe.pid))
    assert cov[0] == 1.0 and 0 < cov[1] < 1  # its own event; another one
    pe = prepare_event(events[1])
    assert np.isnan(map_coverage(mmap, module_keys(events[1].hits), pe.hf.pos, 0 * pe.pid))


def test_stage_swap_puts_the_new_stage1_in_the_shipped_model(stage1):
    """benchmarks/stage_swap.py: the shipped pipeline with another stage 1 swapped in."""
    import importlib.util
    from pathlib import Path

    from cgnn_jax.inference import Pipeline

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "stage_swap.py"
    spec = importlib.util.spec_from_file_location("stage_swap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = Pipeline.restore()
    new = mod._swap_stage1(base, stage1, 0.005)
    assert new.stage1.builder == "module_map" and new.stage1.module_map is not None
    assert "zone_map" not in new.learned
    assert new.learned["module_map"] is stage1.learned["module_map"]  # the new map, not the base's
    assert new.learned["filter_threshold"] == 0.5
    assert new.config.gnn.input_threshold == 0.005
    assert new.params["embedding"] is stage1.emb_params
    assert new.params["gnn"] is base.params["gnn"]  # stages 2-3 kept
