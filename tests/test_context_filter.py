"""Stage 1's context filter: its training, its place in the refined graph, its checkpoint."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgnn_jax.graph.module_map import build_module_map
from cgnn_jax.inference.events import prepare_event
from cgnn_jax.inference.stage1 import (
    Stage1,
    context_columns,
    context_probabilities,
    stage1_context,
)
from cgnn_jax.models import ContextFilter
from cgnn_jax.models.context_filter import N_CONTEXT
from cgnn_jax.train.loop import make_mesh
from cgnn_jax.train.stage1 import fit_context_filter
from configs.default import stage12


@pytest.fixture(scope="module")
def trained(map_events, untrained_stage1_params, tmp_path_factory):
    """``(plain, with_context)``: an untrained toy stage 1 on a one-event module map, and the
    same with two toy context rounds trained on the map's own event (its candidates)."""
    config = stage12()
    config.filter.hidden = (8, 8)
    config.filter.update(context_hidden=(8, 8), context_rounds=2, context_steps=6)
    config.filter.update(batch_edges=256, context_edges_per_hit=1.0)
    config.filter.context_prune_edges_per_hit = 1.3
    config.loop.update(log_every=3, checkpoint_every=3)
    pe = prepare_event(map_events[0])
    emb, filt = untrained_stage1_params(config, pe)
    learned = {"module_map": build_module_map(map_events[:1]).to_json(), "filter_threshold": 0.5}
    plain = Stage1(config, emb, filt, learned)
    wd = tmp_path_factory.mktemp("context")
    mesh = make_mesh()
    done = fit_context_filter(plain, [pe], wd, jax.random.PRNGKey(0), mesh, log=lambda *_: None)
    return plain, done, pe


def test_rounds_and_cuts_are_learned(trained):
    plain, done, pe = trained
    assert set(done.context_params) == {"round_0", "round_1"} and stage1_context(done) is not None
    assert len(done.learned["context_prune_thresholds"]) == 1  # one cut between the two rounds
    assert stage1_context(plain) is None and "context_threshold" not in plain.learned
    s, r, _ = done.refined_graph(pe)
    fwd = set(zip(s.tolist(), r.tolist(), strict=True))
    assert fwd == {(b, a) for a, b in fwd}  # undirected, both directions
    # the cut was learned on this very event for 1 edge per hit (of more candidates)
    everything = done.refined_graph(pe, *done.embedding_graph(pe), threshold=-1.0)
    assert len(everything[0]) / pe.n > 1.3
    assert len(s) / pe.n == pytest.approx(1.0, abs=0.01)
    # an explicit cut reads the edge filter's scores, as without the context filter
    explicit = done.refined_graph(pe, threshold=0.3), plain.refined_graph(pe, threshold=0.3)
    for a, b in zip(*explicit, strict=True):
        np.testing.assert_array_equal(a, b)


def test_context_probabilities_do_not_depend_on_chunks(trained):
    _, done, pe = trained
    s, r = done.embedding_graph(pe)
    p = np.random.default_rng(0).random(len(s)).astype(np.float32)
    params = done.context_params["round_0"]
    whole = context_probabilities(stage1_context(done).model, params, pe.hf, s, r, p)
    parts = context_probabilities(stage1_context(done).model, params, pe.hf, s, r, p, chunk=1000)
    np.testing.assert_allclose(whole, parts, rtol=1e-5, atol=1e-6)
    c = context_columns(pe.hf, s, r, p)
    assert c.shape == (len(s), N_CONTEXT)
    np.testing.assert_allclose(c[:, 0], p)


def test_saved_and_restored_stage1_gives_the_same_graph(trained, tmp_path):
    _, done, pe = trained
    back = Stage1.restore(done.save(tmp_path).parent.parent)
    assert (
        stage1_context(back) is not None
        and back.learned["context_threshold"] == done.learned["context_threshold"]
    )
    for a, b in zip(back.refined_graph(pe), done.refined_graph(pe), strict=True):
        np.testing.assert_array_equal(a, b)


def test_with_stage1_puts_the_context_filter_in_both_variants(trained):
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.inference.variants import with_stage1

    _, done, _ = trained
    base = Pipeline.restore()
    shipped = base.params.get("context")
    new = with_stage1(base, done)
    for p in (new, new.dense):
        assert stage1_context(p.stage1) is not None and p.params["context"] is done.context_params
        assert p.learned["context_threshold"] == done.learned["context_threshold"]
        assert "prefilter" not in p.params  # the toy stage 1 has no first pass
    assert new.params["gnn"] is base.params["gnn"]
    assert new.dense.params["gnn"] is base.dense.params["gnn"]
    # the shipped pipeline keeps its own stage 1 (with its own context rounds, if any)
    assert base.params.get("context") is shipped and shipped is not done.context_params


def test_context_columns_are_standardised_and_not_trained():
    model = ContextFilter(hidden=(4, 4))
    x, z, c = jnp.ones((4, 3)), jnp.ones((2, 5)), jnp.ones((2, N_CONTEXT))
    s, r = jnp.array([0, 1]), jnp.array([2, 3])
    params = model.init(jax.random.PRNGKey(0), x, z, c, s, r)
    g = jax.grad(lambda q: model.apply(q, x, z, c, s, r).sum())(params)["params"]
    assert float(jnp.abs(g["norm_mean"]).sum()) == 0.0
    assert float(jnp.abs(g["norm_scale"]).sum()) == 0.0
    assert float(jnp.abs(g["context"]["kernel"]).sum()) > 0


def test_add_context_filter_trains_onto_a_saved_stage1(trained, tmp_path):
    from types import SimpleNamespace

    from cgnn_jax.train.stage1 import add_context_filter

    plain, _, pe = trained
    config = plain.config.copy_and_resolve_references()
    bare = Stage1(config, plain.emb_params, plain.filter_params, dict(plain.learned))
    with bare.config.unlocked():
        bare.config.filter.context_hidden = ()  # as a stage 1 trained without one
    run = plain.config.copy_and_resolve_references()
    with run.unlocked():
        run.filter.context_rounds = 1
    out = add_context_filter(
        bare, run, tmp_path, log=lambda *_: None, events=SimpleNamespace(train=[pe]), mesh=None
    )
    back = Stage1.restore(tmp_path)
    assert stage1_context(back) is not None and set(back.context_params) == {"round_0"}
    assert tuple(back.config.filter.context_hidden) == (8, 8)  # the run's settings
    assert back.learned["module_map"] == plain.learned["module_map"]  # the rest kept
    for a, b in zip(back.refined_graph(pe), out.refined_graph(pe), strict=True):
        np.testing.assert_array_equal(a, b)
