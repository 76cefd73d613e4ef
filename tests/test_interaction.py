"""The interaction GNN (supervised a_ij), confident-edge components and the graph-consistent
Split, and checkpoints that restore on another device kind."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from cgnn_jax.cluster.components import edge_components, group_mean
from cgnn_jax.cluster.recursion import group_representatives, unrolled_clustering
from cgnn_jax.graph.batch import balanced_sample, eval_edge_pool, padded_graph
from cgnn_jax.metrics.ceilings import components
from cgnn_jax.models.gnn import InteractionGNN
from cgnn_jax.train.stage2 import edge_labels, graph_loss
from cgnn_jax.utils.padding import pad_rows
from tests.helpers import assert_reordered_close


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    ct = pd.crosstab(a, b) > 0
    return bool((ct.sum(axis=1) == 1).all() and (ct.sum(axis=0) == 1).all())


def test_edge_components_match_scipy_and_ignore_dropped_edges():
    rng = np.random.default_rng(0)
    f = jax.jit(edge_components, static_argnums=3)
    for n, e in ((40, 30), (500, 450), (800, 1200)):
        s, r = rng.integers(0, n, e), rng.integers(0, n, e)
        keep = rng.random(e) < 0.7
        got = np.asarray(f(s, r, keep, n))
        assert _same_partition(got, components(s[keep], r[keep], n))
        assert (got <= np.arange(n)).all()  # the id is the smallest index in the component
        assert (got[got] == got).all()
    # a long chain given in reverse order still ends in one component
    n = 300
    s = np.arange(n - 1)[::-1].copy()
    assert (np.asarray(f(s, s + 1, np.ones(n - 1, bool), n)) == 0).all()


def test_group_mean_is_the_mean_over_real_points():
    p = np.array([0.1, 0.9, 0.5, 0.3, 7.0], np.float32)
    g = np.array([0, 0, 2, 2, 4], np.int32)
    mask = np.array([1, 1, 1, 1, 0], bool)
    got = np.asarray(group_mean(p, g, mask))
    np.testing.assert_allclose(got[:4], [0.5, 0.5, 0.4, 0.4], rtol=1e-6)
    assert got[4] == 7.0  # padding keeps its value


def _random_split(h, seg, mask, n):
    # a deterministic, point-dependent split: sign of a fixed projection
    w = jax.numpy.linspace(1.0, -1.0, h.shape[1])
    return jax.nn.sigmoid(h @ w)


def test_groups_are_never_separated_and_padding_changes_nothing():
    rng = np.random.default_rng(1)
    n, d = 200, 3
    h = rng.normal(size=(n, d)).astype(np.float32)
    comp = rng.integers(0, 40, n)
    first = pd.Series(np.arange(n)).groupby(comp).transform("min").to_numpy().astype(np.int32)

    def run(size):
        hp = np.zeros((size, d), np.float32)
        hp[:n] = h
        mask = np.arange(size) < n
        gp = np.arange(size, dtype=np.int32)
        gp[:n] = first
        no_stop = lambda h_, seg, m, k: jax.numpy.zeros(k)  # noqa: E731
        out = unrolled_clustering(_random_split, no_stop, hp, mask, 40, 2, 0.5, gp)
        return {k: np.asarray(v) for k, v in out.items()}

    outs = run(256), run(512)
    a, b = (o["cluster"][:n] for o in outs)
    # every group sits in one final cluster
    assert (pd.Series(a).groupby(first).nunique() == 1).all()
    assert len(np.unique(a)) > len(np.unique(first)) // 2  # and the tree did split them
    assert _same_partition(a, b)
    # a cluster made of one group is a leaf: never marked as split (active)
    o = outs[0]
    for lev in range(o["active"].shape[0]):
        seg = o["segment"][lev][:n]
        one_group = pd.Series(first).groupby(seg).nunique() == 1
        assert not o["active"][lev][one_group.index[one_group.to_numpy()]].any()


def test_median_rule_on_group_representatives_builds_the_same_tree():
    # a split that is degenerate for most clusters (the median rule does the work), with ties
    # in p across groups (saturated sigmoid): the group-level sort must order and cut exactly
    # as the point-level one, on the whole array and in compact blocks
    rng = np.random.default_rng(3)
    n, size, d = 900, 1024, 3
    h = np.zeros((size, d), np.float32)
    h[:n] = rng.normal(size=(n, d))
    mask = np.arange(size) < n
    comp = rng.integers(0, 300, n)
    gp = np.arange(size, dtype=np.int32)
    gp[:n] = pd.Series(np.arange(n)).groupby(comp).transform("min").to_numpy()

    def biased(h_, seg, m, k):
        z = h_ @ jax.numpy.linspace(1.0, -1.0, d) + 4.0
        return jax.nn.sigmoid(jax.numpy.where(h_[:, 0] > 0.5, 30.0, z))

    no_stop = lambda h_, seg, m, k: jax.numpy.zeros(k)  # noqa: E731
    reps = pad_rows(group_representatives(gp), 512, value=size)
    assert (reps[reps < size] == np.unique(gp, return_index=True)[1]).all()
    for compact in (False, True):
        a, b = (
            {
                k: np.asarray(v)
                for k, v in unrolled_clustering(
                    biased, no_stop, h, mask, 30, 2, 0.5, gp, compact=compact, group_reps=r
                ).items()
            }
            for r in (None, reps)
        )
        assert len(np.unique(a["cluster"][:n])) > 100  # the tree did split
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _event(n=300, e=1500, f=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    s, r = rng.integers(0, n, e), rng.integers(0, n, e)
    pid = rng.integers(0, 40, n)
    ev = balanced_sample(*eval_edge_pool(s, r, pid, n, rng), 256, rng)
    return x, s, r, ev, pid


def test_interaction_gnn_padding_and_edge_loss():
    x, s, r, ev, pid = _event()
    model = InteractionGNN(num_layers=2, hidden=16, out_dim=4, distance_dims=3)
    small = padded_graph(x, s, r, ev, budget=(1024, 2048), n_eval=256)
    large = padded_graph(x, s, r, ev, budget=(2048, 4096), n_eval=384)
    params = model.init(jax.random.PRNGKey(0), small.graph, small.edge_mask, small.node_mask)
    params = jax.tree_util.tree_map(lambda a: a + 0.05, params)  # padding would leak if unmasked
    outs, losses = [], []
    edge = {"weight": 1.0, "aux_weight": 0.5, "pos_weight": 2.0, "hinge_weight": 1.0}
    for g in (small, large):
        out, ws = model.apply(params, g.graph, g.edge_mask, g.node_mask, return_weights=True)
        assert len(ws) == 2
        assert not np.asarray(out)[len(x) :].any()
        assert all(not np.asarray(w)[len(s) :].any() for w in ws)
        outs.append(np.asarray(out)[: len(x)])
        b = g.arrays()
        b["label"] = np.zeros(g.graph.nodes.shape[0], np.int32)
        b["label"][: len(x)] = pid + 1
        y = np.asarray(edge_labels(b))
        assert y.sum() == (pid[s] == pid[r]).sum() and not y[len(s) :].any()
        loss, m = graph_loss(model, params, b, 1.0, edge)
        assert np.isfinite(float(loss)) and set(m) == {"hinge", "edge_bce", "aux_bce"}
        losses.append(float(loss))
    assert_reordered_close(outs[1], outs[0], len(s), depth=3)
    assert_reordered_close(losses[1], losses[0], len(s), depth=4)


def test_checkpoint_restores_onto_the_local_device(tmp_path):
    from cgnn_jax.inference.checkpoint import _local_target, restore_checkpoint, save_checkpoint

    state = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": np.ones(4, np.int32)}
    save_checkpoint(tmp_path / "ck", 0, state, kind="test", config={})
    target = _local_target(tmp_path / "ck", 0)
    leaves = jax.tree_util.tree_leaves(target)
    assert {tuple(t.shape) for t in leaves} == {(2, 3), (4,)}
    assert all(t.sharding.device_set == {jax.local_devices()[0]} for t in leaves)
    got, meta = restore_checkpoint(tmp_path / "ck", kind="test")
    np.testing.assert_array_equal(np.asarray(got["a"]["w"]), state["a"]["w"])
    assert meta["kind"] == "test"


def test_detached_output_head_trains_no_layer():
    """``detach_output``: a loss on the output reaches the head alone; without it, every layer."""
    x, s, r, ev, _ = _event()
    g = padded_graph(x, s, r, ev, budget=(1024, 2048), n_eval=256)

    def grads(detach):
        model = InteractionGNN(
            num_layers=2, hidden=8, out_dim=4, output_hidden=6, detach_output=detach
        )
        params = model.init(jax.random.PRNGKey(0), g.graph, g.edge_mask, g.node_mask)
        f = lambda p: jax.numpy.sum(model.apply(p, g.graph, g.edge_mask, g.node_mask) ** 2)  # noqa: E731
        return jax.grad(f)(params)["params"]

    for detach in (True, False):
        gr = grads(detach)
        assert "output" in gr and any(np.abs(a).max() > 0 for a in jax.tree.leaves(gr["output"]))
        layers = [a for k, v in gr.items() if k != "output" for a in jax.tree.leaves(v)]
        assert any(np.abs(a).max() > 0 for a in layers) != detach


def test_median_rule_splits_two_groups_whatever_their_sizes():
    """A degenerate split (every point to one side) of a cluster of whole groups is replaced by
    a cut between groups: a big group and a small one always end up apart (a cut at the median
    position, inside the big group, used to move everything to one side, forever)."""
    for sizes in ((10, 2), (2, 10), (1, 1), (5, 5), (1, 8, 1)):
        n = sum(sizes)
        gid = np.repeat(np.cumsum((0, *sizes[:-1])), sizes).astype(np.int32)
        # every p_right > 0.5 (degenerate), the groups ordered by p
        h = np.repeat(np.arange(len(sizes), dtype=np.float32) / len(sizes), sizes)[:, None]
        split = lambda h_, seg, m, k: 0.6 + 0.1 * h_[:, 0]  # noqa: E731
        no_stop = lambda h_, seg, m, k: jax.numpy.zeros(k)  # noqa: E731
        out = unrolled_clustering(split, no_stop, h, np.ones(n, bool), 8, 2, 0.5, gid)
        cl = np.asarray(out["cluster"])
        assert _same_partition(cl, gid), (sizes, cl)
