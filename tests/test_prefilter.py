"""The first pass before the edge filter on module-map candidates (cgnn_jax.models.prefilter)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgnn_jax.features.pairs_jax import pair_columns, pair_features_jnp
from cgnn_jax.graph.module_map import (
    QUANTITIES,
    ModuleMap,
    _pair_key,
    build_module_map,
    candidate_pairs,
    doublet_quantities,
    hit_module_keys,
    module_keys,
)
from cgnn_jax.inference.events import prepare_event
from cgnn_jax.inference.stage1 import Stage1, prefilter_logits
from cgnn_jax.models.prefilter import (
    N_PREFILTER_FEATURES,
    N_WINDOW_FEATURES,
    PairPrefilter,
    prefilter_features,
    window_table,
)
from cgnn_jax.train.loop import make_mesh
from cgnn_jax.train.stage1 import (
    module_map_edge_set,
    prefilter_threshold,
    train_prefilter,
)
from configs.default import stage12


@pytest.fixture(scope="module")
def events(map_events):
    return map_events


@pytest.fixture(scope="module")
def trained(events, tmp_path_factory, untrained_stage1_params):
    """A stage 1 with a module map of event 0, a random edge filter and a first pass trained
    briefly on event 0's candidates, cut at a recall of 0.95 of its true edges."""
    config = stage12()
    config.filter.hidden = (8, 8)
    config.filter.prefilter_hidden = 8
    config.filter.prefilter_steps = 300
    config.filter.batch_edges = 1024
    config.filter.negative_rate = 1.0
    config.graph.window_floor = 20.0  # wide windows: many false candidates to drop
    config.loop.checkpoint_every = 10_000
    pe = prepare_event(events[0])
    emb_params, filter_params = untrained_stage1_params(config, pe)
    mmap = build_module_map(events[:1])
    _, edges = module_map_edge_set(config, mmap, [pe])
    work = tmp_path_factory.mktemp("prefilter")
    w = float((1 - edges.y.mean()) / edges.y.mean())
    table = window_table(ModuleMap.from_json(mmap.to_json()))  # as the checkpoint holds it
    params = jax.device_get(
        train_prefilter(
            config, edges, w, work, jax.random.PRNGKey(2), make_mesh(), lambda *a: 0, table
        )
    )
    t = prefilter_threshold(config, params, edges, 0.95, table)
    learned = {"module_map": mmap.to_json(), "filter_threshold": 0.5, "prefilter_threshold": t}
    return Stage1(config, emb_params, filter_params, learned, params), edges


def test_features_are_the_pair_features_and_more(events):
    pe = prepare_event(events[0])
    cols = jnp.asarray(pair_columns(pe.hf))
    s = jnp.arange(0, 50, dtype=jnp.int32)
    t = jnp.arange(50, 100, dtype=jnp.int32)
    f = np.asarray(prefilter_features(cols, s, t))
    assert f.shape == (50, N_PREFILTER_FEATURES) and np.isfinite(f).all()
    z = np.asarray(pair_features_jnp(cols, s, t))
    np.testing.assert_allclose(f[:, : z.shape[1]], z, rtol=1e-6)
    np.testing.assert_allclose(f[:, z.shape[1] + 1], np.abs(z[:, 5]), rtol=1e-6)


def test_candidate_rows_are_their_module_pairs(events):
    mmap = build_module_map(events[:1])
    ev = events[1]
    keys = module_keys(ev.hits)
    pos = ev.hits[["x", "y", "z"]].to_numpy()
    for margin in (0.1, None):
        s, t, rows = candidate_pairs(keys, pos, mmap, margin, rows=True)
        s2, t2 = candidate_pairs(keys, pos, mmap, margin)
        np.testing.assert_array_equal(s, s2)
        np.testing.assert_array_equal(t, t2)
        assert len(s) > 0 and rows.dtype == np.int32
        np.testing.assert_array_equal(mmap.keys[rows], _pair_key(keys[s], keys[t]))


def test_window_features_place_pairs_in_their_windows(events):
    """A training doublet of the map lies inside its windows: positions in [0, 1] - 0.5."""
    mmap = build_module_map(events[:1])
    pe = prepare_event(events[0])
    keys = hit_module_keys(pe.hf.module_index)
    s, t, rows = candidate_pairs(keys, pe.hf.pos, mmap, 0.0, 0.0, rows=True)
    assert len(s) > 0
    cols = jnp.asarray(pair_columns(pe.hf))
    table = window_table(mmap)
    f = np.asarray(prefilter_features(cols, jnp.asarray(s), jnp.asarray(t), table[rows]))
    assert f.shape == (len(s), N_PREFILTER_FEATURES + N_WINDOW_FEATURES)
    w = f[:, N_PREFILTER_FEATURES:]
    np.testing.assert_allclose(w[:, 0], np.log1p(mmap.count[rows]) / 5, rtol=1e-5)
    # (float32 rounding moves a pair at the edge of a narrow window by up to a few %)
    assert np.all(w[:, 1:] >= -0.55) and np.all(w[:, 1:] <= 0.55)
    assert np.mean(np.abs(w[:, 1:]) <= 0.5 + 1e-3) > 0.99
    # the same quantities as the map's own
    v = doublet_quantities(events[0].hits, s, t)
    for q in range(len(QUANTITIES)):
        inv, off = table[rows, 1 + 2 * q], table[rows, 2 + 2 * q]
        ok = inv > 0
        want = np.clip(v[ok, q] * inv[ok] - off[ok], -3, 4) - 0.5
        d = np.abs(w[ok, 1 + q] - want)
        assert np.median(d) < 1e-3 and np.quantile(d, 0.99) < 0.05, QUANTITIES[q]


def test_elementwise_network_is_the_dense_one():
    model = PairPrefilter(hidden=5)
    f = jax.random.normal(jax.random.PRNGKey(0), (40, N_PREFILTER_FEATURES))
    params = jax.device_get(model.init(jax.random.PRNGKey(1), f))
    p = params["params"]
    p["norm_mean"] = np.linspace(-1, 1, N_PREFILTER_FEATURES).astype(np.float32)
    p["norm_scale"] = np.linspace(0.5, 2, N_PREFILTER_FEATURES).astype(np.float32)
    got = np.asarray(model.apply(params, f))
    u = (np.asarray(f) - p["norm_mean"]) * p["norm_scale"]
    want = np.maximum(u @ p["w1"] + p["b1"], 0) @ p["w2"][:, 0] + p["b2"][0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_first_pass_keeps_its_recall_and_drops_candidates(events, trained):
    stage, edges = trained
    t = stage.learned["prefilter_threshold"]
    pos = np.flatnonzero(edges.y)
    q = prefilter_logits(
        stage.first_pass.model,
        stage.prefilter_params,
        edges.cols,
        edges.senders,
        edges.receivers,
        stage.first_pass.window_table,
        edges.rows,
    )
    assert np.mean(q[pos] > t) >= 0.95  # the cut chosen for this recall on this set
    assert np.sum(edges.y == 0) > 300
    assert np.mean(q[edges.y == 0] > t) < 0.5  # and it drops most negatives
    # on another event's candidates: a subset, most of the true ones kept
    pe = prepare_event(events[1])
    s, r = stage.embedding_graph(pe)
    ks, kr = stage.first_pass.keep(pe, s, r)
    assert 0 < len(ks) < len(s)
    cand = set(zip(s.tolist(), r.tolist(), strict=True))
    assert set(zip(ks.tolist(), kr.tolist(), strict=True)) <= cand


def test_refined_graph_is_a_subset_of_the_candidates(events, trained):
    stage, _ = trained
    pe = prepare_event(events[1])
    s, r = stage.embedding_graph(pe)
    rs, rr, _ = stage.refined_graph(pe, s, r, threshold=0.0)
    und = {(min(a, b), max(a, b)) for a, b in zip(s.tolist(), r.tolist(), strict=True)}
    got = {(min(a, b), max(a, b)) for a, b in zip(rs.tolist(), rr.tolist(), strict=True)}
    ks, kr = stage.first_pass.keep(pe, s, r)
    kept = {(min(a, b), max(a, b)) for a, b in zip(ks.tolist(), kr.tolist(), strict=True)}
    assert got and got <= kept < und
    # without the first pass: every candidate scored
    plain = Stage1(stage.config, stage.emb_params, stage.filter_params, stage.learned)
    ps, _, _ = plain.refined_graph(pe, s, r, threshold=0.0)
    assert len(ps) > len(rs)


def test_checkpoint_round_trip(events, trained, tmp_path):
    stage, _ = trained
    stage.save(tmp_path)
    back = Stage1.restore(tmp_path)
    assert back.first_pass is not None
    assert back.learned["prefilter_threshold"] == pytest.approx(
        stage.learned["prefilter_threshold"]
    )
    pe = prepare_event(events[1])
    a = stage.refined_graph(pe, threshold=0.0)
    b = back.refined_graph(pe, threshold=0.0)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6)
    # a stage 1 saved without a first pass restores without one
    plain = Stage1(stage.config, stage.emb_params, stage.filter_params, stage.learned)
    plain.save(tmp_path / "plain")
    back = Stage1.restore(tmp_path / "plain")
    assert back.prefilter_params is None and back.first_pass is None


def test_stage2_checkpoint_keeps_the_first_pass(trained, tmp_path):
    from cgnn_jax.inference import Stage2

    stage, _ = trained
    Stage2(stage.config, {"w": np.zeros(3, np.float32)}, stage).save(tmp_path)
    back = Stage2.restore(tmp_path).stage1
    assert back.first_pass is not None
    a = jax.tree_util.tree_leaves(stage.prefilter_params)
    b = jax.tree_util.tree_leaves(back.prefilter_params)
    assert len(a) == len(b) and all(np.allclose(u, v) for u, v in zip(a, b, strict=True))


def test_fit_prefilter_cuts_for_the_filters_true_edges(events, trained, tmp_path):
    """train_stage1's step: the first pass trained on the filter's edge set, its cut keeping
    ``filter.prefilter_recall`` of the true edges above the filter's cut, the filter's budget
    cut chosen again on what it keeps."""
    from cgnn_jax.inference.stage1 import edge_probabilities_fused
    from cgnn_jax.train.stage1 import fit_prefilter

    stage, _ = trained
    plain = Stage1(stage.config, stage.emb_params, stage.filter_params, dict(stage.learned))
    pe = prepare_event(events[0])
    x, edges = module_map_edge_set(plain.config, plain.module_map, [pe])
    plain.learned["filter_threshold"] = 0.3
    s, r = plain.embedding_graph(pe)
    p = edge_probabilities_fused(plain.filter_model, plain.filter_params, pe.hf, s, r)
    params, t0, t1 = fit_prefilter(
        plain, x, edges, [(pe, s, r, p)], tmp_path, jax.random.PRNGKey(3), make_mesh(), print
    )
    assert np.isfinite(t0) and -1.0 <= t1 < 1.0
    done = Stage1(plain.config, plain.emb_params, plain.filter_params, {**plain.learned}, params)
    done.learned["prefilter_threshold"] = t0
    q = done.first_pass.logits(pe, s, r)
    from cgnn_jax.train.stage1 import consecutive_labels

    y = consecutive_labels(pe, s, r) & (p > 0.3)
    assert y.sum() > 0
    # (the fused features of these scores differ from the training set's by ~1e-6)
    assert np.mean(q[y] > t0) >= plain.config.filter.prefilter_recall - 0.01
