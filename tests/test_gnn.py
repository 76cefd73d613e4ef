"""Stage 2: the edge-weighted GNN layer, padding invariance, sector sub-graphs, data-parallel
sharding (2 CPU devices, in a subprocess), and a tiny end-to-end training with a checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from cgnn_jax.graph.batch import (
    balanced_sample,
    eval_edge_pool,
    padded_graph,
    sector_members,
    sector_subgraphs,
    stack_graphs,
    true_pairs,
)
from cgnn_jax.models.gnn import EdgeWeightedConv, EdgeWeightedGNN
from cgnn_jax.train.stage2 import batch_loss, graph_loss
from tests.helpers import assert_reordered_close

ROOT = Path(__file__).resolve().parents[1]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_layer_matches_dense_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5, 3)).astype(np.float32)
    senders = np.array([0, 1, 2, 3, 4, 1, 0], np.int32)
    receivers = np.array([1, 0, 1, 1, 3, 2, 0], np.int32)  # includes a self loop 0 -> 0
    mask = np.array([1, 1, 1, 1, 1, 1, 0], bool)  # the last edge is padding
    layer = EdgeWeightedConv(features=4, kernel_hidden=6)
    params = layer.init(jax.random.PRNGKey(0), v, senders, receivers, mask)
    out, a = layer.apply(params, v, senders, receivers, mask)

    p = jax.tree_util.tree_map(np.asarray, params["params"])
    dense_a = np.zeros((5, 5))
    want_a = []
    for s, r, m in zip(senders, receivers, mask, strict=True):
        h = np.maximum(np.concatenate([v[r], v[s]]) @ p["kernel_hidden"]["kernel"]
                       + p["kernel_hidden"]["bias"], 0)  # fmt: skip
        w = _sigmoid(h @ p["kernel_out"]["kernel"] + p["kernel_out"]["bias"])[0] if m else 0.0
        want_a.append(w)
        dense_a[r, s] += w  # A[i, j]: message j -> i
    want = np.maximum(
        np.concatenate([dense_a @ v, v], 1) @ p["update"]["kernel"] + p["update"]["bias"], 0
    )
    np.testing.assert_allclose(np.asarray(a), want_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
    assert float(a[-1]) == 0.0


def _random_event(n=300, e=1500, f=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    s, r = rng.integers(0, n, e), rng.integers(0, n, e)
    pid = rng.integers(0, 40, n)
    pool = eval_edge_pool(s, r, pid, n, rng)
    ev = balanced_sample(*pool, 256, rng)
    return x, s, r, ev


def test_padding_never_changes_the_result():
    x, s, r, ev = _random_event()
    model = EdgeWeightedGNN(num_layers=2, hidden=16, kernel_hidden=8, out_dim=4)
    small = padded_graph(x, s, r, ev, budget=(1024, 2048), n_eval=256)
    large = padded_graph(x, s, r, ev, budget=(2048, 4096), n_eval=384)
    params = model.init(jax.random.PRNGKey(1), small.graph, small.edge_mask, small.node_mask)
    # non-zero biases so that padding nodes would leak if they were not masked
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)
    outs, losses = [], []
    for g in (small, large):
        out, ws = model.apply(params, g.graph, g.edge_mask, g.node_mask, return_weights=True)
        outs.append(np.asarray(out)[: len(x)])
        assert not np.asarray(out)[len(x) :].any()
        assert all(not np.asarray(w)[len(s) :].any() for w in ws)
        losses.append(float(graph_loss(model, params, g.arrays(), 1.0)[0]))
    assert_reordered_close(outs[1], outs[0], len(s), depth=2)  # 2 layers summing <= 1500 edges
    assert_reordered_close(losses[1], losses[0], len(s), depth=3)
    # the stacked batch loss is the mean of the per-graph losses
    x2, s2, r2, ev2 = _random_event(seed=1)
    other = padded_graph(x2, s2, r2, ev2, budget=(1024, 2048), n_eval=256)
    both = stack_graphs([small, other])
    want = (losses[0] + float(graph_loss(model, params, other.arrays(), 1.0)[0])) / 2
    assert_reordered_close(float(batch_loss(model, params, both, 1.0)[0]), want, len(s), depth=3)
    # a batch of one graph (not vmapped) gives that graph's loss, metrics and gradient
    one = stack_graphs([small])
    got, ms = batch_loss(model, params, one, 1.0)
    assert set(ms) == {"hinge"} and np.shape(got) == ()
    assert_reordered_close(float(got), losses[0], len(s), depth=3)
    g1 = jax.grad(lambda p: batch_loss(model, p, one, 1.0)[0])(params)
    g2 = jax.grad(lambda p: graph_loss(model, p, small.arrays(), 1.0)[0])(params)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_sectors_cover_every_hit_once_in_core_and_keep_induced_edges():
    rng = np.random.default_rng(3)
    n = 2000
    pos = rng.normal(size=(n, 3)) * [300, 300, 1000]
    sectors = sector_members(pos, 2, 4, eta_margin=0.1, phi_margin=0.1)
    core = np.stack([c for _, c in sectors])
    member = np.stack([m for m, _ in sectors])
    assert (core.sum(0) == 1).all()  # every hit in exactly one core
    assert (member >= core).all() and member.sum() > n  # margins overlap
    s, r = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    pid = rng.integers(0, 100, n)
    pool = eval_edge_pool(s, r, pid, n, rng)
    subs = sector_subgraphs(np.zeros((n, 2)), pos, s, r, pool, 2, 4, 0.1, 0.1)
    assert len(subs) == 8
    for sub, (m, c) in zip(subs, sectors, strict=True):
        idx = sub["nodes_index"]
        assert np.array_equal(idx, np.flatnonzero(m))
        want = {(a, b) for a, b in zip(s, r, strict=True) if m[a] and m[b]}
        got = set(zip(idx[sub["senders"]].tolist(), idx[sub["receivers"]].tolist(), strict=True))
        assert got == want
        es, er, ey = sub["eval"]
        assert c[idx[es]].all()
        same = (pid[idx[es]] == pid[idx[er]]) & (pid[idx[es]] != 0) & (es != er)
        np.testing.assert_array_equal(ey, same)
    # each evaluation pair is used by exactly one sector (its sender's core)
    total = sum(len(sub["eval"][0]) for sub in subs)
    home = np.argmax(core, axis=0)  # the sector whose core holds each hit
    a, b = pool[0], pool[1]
    assert total == int(member[home[a], b].sum())


def test_true_pairs_are_true():
    rng = np.random.default_rng(0)
    pid = np.array([0, 1, 1, 2, 3, 3, 3, 0])
    a, b = true_pairs(pid, 500, rng)
    assert (pid[a] == pid[b]).all() and (pid[a] != 0).all() and (a != b).all()
    assert set(np.unique(pid[a])) == {1, 3}


SHARDING_CODE = textwrap.dedent(
    """
    import numpy as np, jax, optax
    from cgnn_jax.graph.batch import balanced_sample, eval_edge_pool, padded_graph, stack_graphs
    from cgnn_jax.models.gnn import EdgeWeightedGNN
    from cgnn_jax.train.loop import (TrainState, make_mesh, make_train_step, replicate,
                                     shard_batch)
    from cgnn_jax.train.stage2 import gnn_loss, graph_loss
    from tests.helpers import assert_reordered_close
    assert len(jax.devices()) == 2, jax.devices()
    graphs = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        n = (300, 250)[seed]
        x = rng.normal(size=(n, 7)).astype(np.float32)
        s, r = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
        pid = rng.integers(0, 40, n)
        ev = balanced_sample(*eval_edge_pool(s, r, pid, n, rng), 256, rng)
        graphs.append(padded_graph(x, s, r, ev, budget=(1024, 2048), n_eval=256))
    batch = stack_graphs(graphs)
    model = EdgeWeightedGNN(num_layers=2, hidden=16, kernel_hidden=8, out_dim=4)
    params = model.init(jax.random.PRNGKey(0), graphs[0].graph, graphs[0].edge_mask,
                        graphs[0].node_mask)
    params = jax.device_get(params)  # numpy: the step donates its (device) inputs
    # SGD: the update is lr x the gradient, so this compares the sharded gradient itself (Adam's
    # first update is lr x sign(g), which flips for a g within float32 reordering error of 0)
    tx = optax.sgd(1e-2)
    state0 = TrainState.new(params, tx)
    key = jax.random.PRNGKey(1)
    res = {}
    for name, devs in (("two", jax.devices()), ("one", jax.devices()[:1])):
        mesh = make_mesh(devs)
        step = make_train_step(gnn_loss(model, 1.0), tx, mesh)
        b = shard_batch(mesh, batch)
        if name == "two":
            assert len({sh.device for sh in b["graph"].nodes.addressable_shards}) == 2
            assert b["graph"].nodes.addressable_shards[0].data.shape[0] == 1
        state, m = step(replicate(mesh, state0), b, key)
        assert int(state.step) == 1
        res[name] = (jax.device_get(state.params), float(m["loss"]))
    want = np.mean([float(graph_loss(model, params, g.arrays(), 1.0)[0]) for g in graphs])
    assert_reordered_close(res["two"][1], want, 1500, depth=3)  # 2 layers + loss over 1500 edges
    assert_reordered_close(res["one"][1], want, 1500, depth=3)
    for two, one, p0 in zip(*(jax.tree_util.tree_leaves(t) for t in (res["two"][0], res["one"][0],
                                                                   params)), strict=True):
        assert_reordered_close(two - p0, one - p0, 1500, depth=3)  # the updates, i.e. gradients
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), res["two"][0], params)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4
    print("SHARDING_OK")
    """
)


def test_two_device_step_matches_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SHARDING_CODE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDING_OK" in proc.stdout


def test_maybe_initialize_distributed_is_a_noop_without_env(monkeypatch):
    from cgnn_jax.train.stage2 import maybe_initialize_distributed

    for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert maybe_initialize_distributed() is False


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory, two_runs):
    from cgnn_jax.inference import Stage1
    from cgnn_jax.train.stage2 import train_stage2
    from configs.experiments.stage2 import get_config
    from tests.helpers import shrink_stage1

    tmp = tmp_path_factory.mktemp("stage2")
    c = shrink_stage1(get_config())
    stage1 = Stage1.restore(two_runs[0])  # the test run's configs/test.py stage 1
    c.gnn.num_layers = 2
    c.gnn.hidden = 16
    c.gnn.kernel_hidden = 8
    c.gnn.out_dim = 4
    c.gnn.steps = 300
    c.gnn.learning_rate = 3e-3
    c.gnn.sectors = (1, 2)
    c.gnn.eval_edges_per_event = 2048
    c.loop.log_every = 10
    c.gnn.input_graph = "embedding"
    model = train_stage2(c, tmp, stage1, log=lambda *_: None)
    return tmp, model


def test_tiny_training_lowers_the_loss_and_restores(trained):
    from cgnn_jax.analysis.gnn_quality import gnn_quality_event
    from cgnn_jax.inference import Stage2, prepare_event
    from cgnn_jax.sim import simulate_event

    tmp, model = trained
    log = pd.read_csv(tmp / "train" / "gnn" / "metrics.csv")
    losses = log["loss"].to_numpy()  # each row: the mean over 10 steps
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:3]) and losses[-1] < losses[0], losses

    restored = Stage2.restore(tmp)
    ev = prepare_event(simulate_event(12345, mu=10))
    out = model.embed(ev)
    assert out.shape == (ev.n, 4) and np.isfinite(out).all()
    np.testing.assert_allclose(restored.embed(ev), out, rtol=1e-5, atol=1e-5)
    s, r, ws = restored.edge_weights(ev)
    assert len(ws) == 2 and len(r) == len(s) and all(len(w) == len(s) for w in ws)
    assert all(((w > 0) & (w < 1)).all() for w in ws)

    rows = {row["space"]: row for row in gnn_quality_event(restored, ev)}
    # held-out event: the GNN separates same-particle pairs better than the stage-1 embedding
    assert rows["gnn"]["hinge_loss"] < rows["stage1"]["hinge_loss"], rows
    assert rows["gnn"]["auc"] > 0.6, rows
    assert 0 < rows["gnn"]["purity"] <= 1 and 0 < rows["gnn"]["recall"] <= 1


def test_init_checkpoint_starts_from_a_trained_gnn(trained):
    """``gnn.init_checkpoint``: a trained stage 2's GNN parameters, checked against the fresh
    initialisation's shapes (a clear error naming the parameter when they do not fit)."""
    import jax

    from cgnn_jax.train.stage2 import initial_gnn_params

    tmp, model = trained
    fresh = jax.tree_util.tree_map(np.zeros_like, model.params)
    got = initial_gnn_params(tmp, fresh)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(got), leaves(model.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    wider = jax.tree_util.tree_map(lambda a: np.zeros((*a.shape, 2), a.dtype), model.params)
    with pytest.raises(ValueError, match=r"init_checkpoint.*does not fit this config"):
        initial_gnn_params(tmp, wider)


def test_residual_output_starts_at_the_stage1_embedding():
    import jax
    import jax.numpy as jnp
    import jraph

    from cgnn_jax.models.gnn import EdgeWeightedGNN

    rng = np.random.default_rng(0)
    nodes = jnp.asarray(rng.normal(size=(6, 5)).astype(np.float32))
    g = jraph.GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=jnp.array([0, 1, 2, 3]),
        receivers=jnp.array([1, 2, 3, 4]),
        n_node=jnp.array([6]),
        n_edge=jnp.array([4]),
        globals=None,
    )
    model = EdgeWeightedGNN(num_layers=2, hidden=8, kernel_hidden=4, out_dim=3, residual_dim=3)
    em, nm = jnp.ones(4, bool), jnp.ones(6, bool)
    params = model.init(jax.random.PRNGKey(0), g, em, nm)
    np.testing.assert_allclose(model.apply(params, g, em, nm), nodes[:, -3:], atol=1e-6)


def test_mixed_density_training_events():
    """``data.gnn_mix_events``: stage 2's extra events at another track fraction, seeded apart
    from the main ones; none by default."""
    from cgnn_jax.train.data import TrainingEvents
    from configs.default import get_config

    c = get_config()
    c.data.mu = 10.0
    assert TrainingEvents(c, lambda *_: None).gnn_mix == []
    c.data.gnn_mix_events = 2
    c.data.gnn_mix_fraction = 0.2
    c.data.gnn_train_events = 2
    c.data.gnn_track_fraction = 1.0
    ev = TrainingEvents(c, lambda *_: None)
    mix, main = ev.gnn_mix, ev.gnn_train
    assert len(mix) == 2 and ev.gnn_mix is mix  # simulated once
    assert sum(e.n for e in mix) < 0.5 * sum(e.n for e in main)  # a fifth of the tracks
    assert {e.event_id for e in mix}.isdisjoint(e.event_id for e in main)


@pytest.mark.parametrize(("mix_cut", "want"), [(None, 0.005), (-1.0, None), (0.2, 0.2)])
def test_mixed_events_input_graph_at_their_own_cut(tmp_path, mix_cut, want):
    """``gnn.mix_input_threshold``: the mixed events' input graph at their own filter cut (< 0:
    stage 1's learned one, ``None``), the main events' at ``gnn.input_threshold``; unset: both."""
    from cgnn_jax.train.stage2 import train_stage2
    from configs.default import mix

    c = mix()
    c.gnn.mix_input_threshold = mix_cut
    cuts = []

    class Done(Exception):
        pass

    class Events:
        gnn_train, gnn_mix = [], []

        def graphs(self, stage1, group, kind, threshold=None):
            cuts.append(threshold)
            if len(cuts) == 2:
                raise Done
            return []

    with pytest.raises(Done):
        train_stage2(c, tmp_path, stage1=object(), log=lambda *_: None, events=Events())
    assert cuts == [pytest.approx(0.005), want if want is None else pytest.approx(want)]
