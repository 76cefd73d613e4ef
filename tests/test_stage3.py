"""Stage 3 training: jit stop targets vs the numpy reference, sort-free groups, the objective,
the tree file, and a tiny stage 3 + end-to-end training that checkpoints, resumes and restores."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cgnn_jax.cluster import pair_group_ids, stop_labels, tree_to_table, unrolled_clustering
from cgnn_jax.cluster.losses import tree_groups
from cgnn_jax.cluster.objective import clustering_loss
from cgnn_jax.cluster.targets import dense_particle_labels, stop_targets
from cgnn_jax.cluster.tree import TreeFormatError, build_tree, read_tree, write_tree
from cgnn_jax.models.split_stop import Split, Stop
from tests.helpers import assert_reordered_close


def _blobs(k: int, per: int, n_pad: int, seed: int = 0, noise: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(k, 3)) * 4
    pid = np.repeat(np.arange(1, k + 1), per)
    x = c[pid - 1] + rng.normal(size=(len(pid), 3)) * 0.2
    if noise:
        x = np.r_[x, rng.normal(size=(noise, 3)) * 4]
        pid = np.r_[pid, np.zeros(noise, int)]
    n = len(x)
    h = np.zeros((n + n_pad, 3), np.float32)
    h[:n] = x
    mask = np.arange(n + n_pad) < n
    label = np.zeros(n + n_pad, np.int32)
    label[:n] = dense_particle_labels(pid, np.ones(n, bool))
    return h, mask, label, np.r_[pid, np.zeros(n_pad, int)]


def _random_split(h, seg, mask, n):
    # a fixed, data-dependent split: the sign of a random projection around the cluster mean
    w = jnp.array([0.7, -0.4, 0.2])
    s = h @ w
    cnt = jnp.maximum(jax.ops.segment_sum(mask.astype(jnp.float32), seg, num_segments=n), 1)
    mean = jax.ops.segment_sum(jnp.where(mask, s, 0), seg, num_segments=n) / cnt
    return jax.nn.sigmoid(3 * (s - mean[seg]))


def test_stop_targets_match_numpy_reference_and_groups_match_sort():
    h, mask, label, pid = _blobs(12, 7, 20, seed=1, noise=5)
    out = unrolled_clustering(
        _random_split, lambda h, s, m, n: jnp.zeros(n), jnp.asarray(h), jnp.asarray(mask), 8, 3, 2.0
    )
    valid = jnp.asarray(mask & (label > 0))
    groups = np.asarray(tree_groups(out["segment"], jnp.asarray(label), valid))
    for lev in range(out["segment"].shape[0]):  # same partition as the sort-based ids
        ref = np.asarray(pair_group_ids(out["segment"][lev], jnp.asarray(label), valid))
        v = np.asarray(valid)
        a, b = groups[lev][v], ref[v]
        assert len(np.unique(a)) == len(np.unique(b)) == len(np.unique(np.c_[a, b], axis=0))
    tg = stop_targets(out, jnp.asarray(label), 3)
    npout = {k: np.asarray(v) for k, v in out.items()}
    table = stop_labels(tree_to_table(npout), npout, pid, 3)
    table = table[(table.level < 8) & (table["size"] >= 3)]
    got = np.asarray(tg["label"])[table.level.to_numpy(), table.segment.to_numpy()]
    np.testing.assert_array_equal(got, table.stop_label.to_numpy())
    node = np.asarray(tg["node"])
    assert node.sum() == len(table)  # exactly the decision nodes are trained
    root_rec = table[table.level == 0].rec_score.iloc[0]
    np.testing.assert_allclose(float(np.max(tg["rec"][0])), root_rec, rtol=1e-5)


def test_objective_trains_split_and_stop_and_padding_changes_nothing():
    h, mask, label, _ = _blobs(16, 8, 0, seed=2)
    split, stop = Split((16, 16)), Stop((16, 16))
    n = len(h)
    seg = jnp.zeros(n, jnp.int32)
    params = {
        "split": split.init(jax.random.PRNGKey(0), h, seg, mask, n),
        "stop": stop.init(jax.random.PRNGKey(1), h, seg, mask, n),
    }

    def loss(p, h, mask, label):
        return clustering_loss(
            lambda *a: split.apply(p["split"], *a),
            lambda *a: stop.apply(p["stop"], *a),
            h, mask, label, 10,
        )  # fmt: skip

    # padding: same loss with 40 padding points appended
    hp, mp, lp = (
        np.r_[h, np.full((40, 3), 9.0, np.float32)],
        np.r_[mask, np.zeros(40, bool)],
        np.r_[label, np.zeros(40, np.int32)],
    )
    l1, m1 = loss(params, h, mask, label)
    l2, _m2 = loss(params, hp, mp, lp)
    assert_reordered_close(float(l2), float(l1), len(h) + 40, depth=10)  # <= 10 levels

    tx = optax.adam(1e-2)
    opt = tx.init(params)

    @jax.jit
    def step(p, o):
        (_v, m), g = jax.value_and_grad(loss, has_aux=True)(p, h, mask, label)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, m

    for _ in range(80):
        params, opt, m = step(params, opt)
    assert float(m["split_loss"]) < float(m1["split_loss"]) - 0.1
    assert float(m["stop_loss"]) < float(m1["stop_loss"])
    assert float(m["best_score"]) > float(m1["best_score"])


def test_tree_file_round_trip_and_errors(tmp_path):
    h, mask, _label, _ = _blobs(6, 5, 2)
    out = unrolled_clustering(
        _random_split, lambda h, s, m, n: jnp.zeros(n), jnp.asarray(h), jnp.asarray(mask), 6
    )
    tree = build_tree(out, np.arange(30) + 100, event_id=7)
    assert tree.hit_node.shape == (30, 7)
    p = write_tree(tree, tmp_path / "event000000007-tree.npz")
    t2 = read_tree(p)
    assert t2.event_id == 7 and t2.depth == 6
    np.testing.assert_array_equal(t2.hit_node, tree.hit_node)
    # leaves are the flat clustering
    cl = np.asarray(out["cluster"])[:30]
    assert len(np.unique(np.c_[cl, t2.leaves], axis=0)) == len(np.unique(cl))
    # every hit's node at level l is a descendant of (or equal to) its node at level l - 1
    parent = t2.nodes.parent.to_numpy()
    for lev in range(1, 7):
        a, b = t2.hit_node[:, lev - 1], t2.hit_node[:, lev]
        assert np.all((a == b) | (parent[b] == a))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(p.read_bytes()[:100])
    with pytest.raises(TreeFormatError, match=r"bad\.npz"):
        read_tree(bad)
    np.savez(tmp_path / "v.npz", format=np.array("cgnn_jax.tree"), version=np.array(99))
    with pytest.raises(TreeFormatError, match="version 99"):
        read_tree(tmp_path / "v.npz")


@pytest.fixture(scope="module")
def tiny_pipeline(two_runs, tmp_path_factory):
    """``(config, workdir, stage2)``: a copy of the test run's ``configs/test.py`` training."""
    from cgnn_jax.inference import Stage2
    from configs.test import get_config

    tmp = tmp_path_factory.mktemp("stage3") / "workdir"
    shutil.copytree(two_runs[0], tmp)
    return get_config(), tmp, Stage2.restore(tmp)


def test_tiny_stage3_e2e_trains_resumes_and_restores(tiny_pipeline):
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.inference.checkpoint import restore_checkpoint
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.train.loop import finished_epochs
    from cgnn_jax.train.stage3 import train_stage3

    c, tmp, s2 = tiny_pipeline
    pipe = Pipeline.restore(tmp)
    # e2e trained the GNN (its checkpoint's current params moved), never the graph-building
    # stage 1; the pipeline keeps the best-on-validation params of each phase
    e2e_state, meta = restore_checkpoint(tmp / "train" / "e2e" / "checkpoints")
    # (configs/test.py detaches the GNN's output head: e2e's losses move that head, not the layers)
    assert any(
        not np.allclose(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(e2e_state["params"]["gnn"]),
            jax.tree_util.tree_leaves(s2.params),
            strict=True,
        )
    )
    for a, b in zip(
        jax.tree_util.tree_leaves(pipe.params["gnn"]),
        jax.tree_util.tree_leaves(e2e_state["best_params"]["gnn"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # the start was validated too (epoch 0), then every epoch
    assert [h["epoch"] for h in meta["history"]] == list(range(c.cluster.e2e_epochs + 1))
    for a, b in zip(
        jax.tree_util.tree_leaves(pipe.params["embedding"]),
        jax.tree_util.tree_leaves(s2.stage1.emb_params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert (tmp / "train" / "stage3" / "metrics.csv").read_text().count("\n") >= 2
    assert finished_epochs(tmp / "train" / "stage3") == c.cluster.epochs
    # a re-run of finished phases restores them (no data, no training) and saves the pipeline again
    logs: list[str] = []
    again = train_stage3(c, tmp, s2, log=logs.append)
    assert sum("already trained" in s for s in logs) == 2, logs
    for a, b in zip(
        jax.tree_util.tree_leaves(again.params), jax.tree_util.tree_leaves(pipe.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)

    ev = simulate_event(3, 10.0, event_id=3)
    restored = Pipeline.restore(tmp)
    tid, tree = restored.reconstruct(ev, return_tree=True)
    assert tid.shape == (len(ev.hits),) and tid.min() >= 1
    np.testing.assert_array_equal(tid, Pipeline.restore(tmp).reconstruct(ev))  # deterministic
    # the tree's leaves are the tracks
    assert len(np.unique(np.c_[tid, tree.leaves], axis=0)) == len(np.unique(tid))
    np.testing.assert_array_equal(tree.hit_id, ev.hits.hit_id.to_numpy())
    parts = restored.stage_outputs(ev)
    assert parts["gnn"].shape == (len(ev.hits), c.gnn.out_dim)


def test_a_stage1_taken_from_a_whole_model_carries_no_stop_cut(tiny_pipeline):
    # a model trained on the stage 1 of a whole pipeline (config.stage1_checkpoint = a model)
    # validates and runs at its own config's Stop cut, not at the cut the other model calibrated
    import dataclasses

    from cgnn_jax.inference import Pipeline
    from cgnn_jax.train.stage3 import pipeline_from_stage2

    c, tmp, s2 = tiny_pipeline
    pipe = Pipeline.restore(tmp)
    pipe = dataclasses.replace(
        pipe, meta={**pipe.meta, "learned": {**pipe.learned, "stop_threshold": 0.77}}
    )
    assert pipe.stage3.stop_threshold == 0.77
    s1 = pipe.stage1
    assert "stop_threshold" not in s1.learned
    assert s1.learned.keys() == pipe.learned.keys() - {"stop_threshold"}
    new = pipeline_from_stage2(c, dataclasses.replace(s2, stage1=s1))
    assert new.stage3.stop_threshold == float(c.cluster.stop_threshold) != 0.77


def test_iterative_reclustering_keeps_confident_clusters(tiny_pipeline):
    from cgnn_jax.cluster.iterative import iterative_recluster, leaf_confidence
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.sim import simulate_event

    _, tmp, _ = tiny_pipeline
    pipe = Pipeline.restore(tmp)
    parts = pipe.stage_outputs(simulate_event(4, 10.0, event_id=4))
    h, out, tid = parts["h"], parts["clustering"], parts["track_id"]
    n = len(h)
    conf = leaf_confidence(out, n, 3)
    assert conf.shape == (n,) and np.all((conf >= 0) & (conf <= 1))
    same = iterative_recluster(pipe.stage3, h, out, tid, rounds=1, cutoff=0.0)  # nothing below 0
    assert len(np.unique(np.c_[same, tid], axis=0)) == len(np.unique(tid))
    cut = float(np.median(conf)) if np.median(conf) > 0 else 0.5
    new = iterative_recluster(pipe.stage3, h, out, tid, rounds=2, cutoff=cut)
    keep = conf >= cut
    # confident clusters are untouched: same partition of their points, no point joins them
    a, b = tid[keep], new[keep]
    assert len(np.unique(np.c_[a, b], axis=0)) == len(np.unique(a))
    assert not np.isin(new[~keep], b).any()


def test_reconstruct_dataset_resumes_from_parts(tiny_pipeline, tmp_path):
    from cgnn_jax.cluster.tree import read_tree
    from cgnn_jax.inference import Pipeline, PipelineMethod, reconstruct_dataset
    from cgnn_jax.io import write_event
    from cgnn_jax.sim import simulate_event

    _, tmp, _ = tiny_pipeline
    data = tmp_path / "data"
    for i in (1, 2):
        write_event(simulate_event(10 + i, 5.0, event_id=i), data)
    pipe = Pipeline.restore(tmp)
    parts = tmp_path / "parts"
    method = PipelineMethod(None, tmp_path / "trees", pipe)
    sub = reconstruct_dataset(data, method, progress=False, parts_dir=parts)
    assert sorted(sub.event_id.unique()) == [1, 2]
    assert read_tree(tmp_path / "trees" / "event000000002-tree.npz").event_id == 2
    files = sorted(parts.rglob("event*.csv.gz"))  # parts/run-<key>/event<ID>-<input hash>.csv.gz
    assert len(files) == 2
    stamp = {f.name: f.stat().st_mtime_ns for f in files}
    files[0].unlink()  # as if killed before event 1 was written
    again = reconstruct_dataset(data, PipelineMethod(pipe=pipe), progress=False, parts_dir=parts)
    assert sorted(again.event_id.unique()) == [1, 2]
    assert files[1].stat().st_mtime_ns == stamp[files[1].name]  # skipped
    np.testing.assert_array_equal(again.track_id.to_numpy(), sub.track_id.to_numpy())


def test_reconstruct_dataset_in_worker_processes_matches_serial(tiny_pipeline, tmp_path):
    from cgnn_jax.inference import Pipeline, PipelineMethod, reconstruct_dataset
    from cgnn_jax.io import write_event
    from cgnn_jax.sim import simulate_event

    _, tmp, _ = tiny_pipeline
    data = tmp_path / "data"
    for i in (1, 2):
        write_event(simulate_event(20 + i, 5.0, event_id=i), data)
    serial = reconstruct_dataset(data, PipelineMethod(pipe=Pipeline.restore(tmp)), progress=False)
    par = reconstruct_dataset(data, PipelineMethod(tmp), progress=False, workers=2)
    key = ["event_id", "hit_id"]
    a, b = (
        serial.sort_values(key).reset_index(drop=True),
        par.sort_values(key).reset_index(drop=True),
    )
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
