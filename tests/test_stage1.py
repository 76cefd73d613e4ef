"""Stage 1: neighbour graphs, padding invariance, losses, checkpoints, and a tiny training run."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cgnn_jax.graph import neighbor_graph
from cgnn_jax.inference.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    read_meta,
    restore_checkpoint,
    save_checkpoint,
    write_manifest,
)
from cgnn_jax.inference.stage1 import edge_probabilities, embed
from cgnn_jax.metrics import edge_purity_recall
from cgnn_jax.models import EdgeFilter, HitEmbedding
from cgnn_jax.train.losses import balanced_bce, hinge_embedding_loss
from cgnn_jax.utils.padding import bucket_size
from tests.helpers import assert_reordered_close


def _brute(points, k, radius, mode):
    d = cdist(points, points)
    np.fill_diagonal(d, np.inf)
    edges = set()
    for i in range(len(points)):
        order = np.argsort(d[i], kind="stable")
        if mode == "radius":
            nb = np.flatnonzero(d[i] <= radius)
        else:
            nb = order[:k]
            if mode == "knn_radius":
                nb = nb[d[i, nb] <= radius]
        for j in nb:
            edges.add((i, int(j)))
            edges.add((int(j), i))
    return edges


@pytest.mark.parametrize("mode", ["knn", "radius", "knn_radius"])
def test_neighbor_graph_matches_brute_force(mode):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 3)).astype(np.float32)
    s, r = neighbor_graph(pts, mode, k=5, radius=0.5)
    got = set(zip(s.tolist(), r.tolist(), strict=True))
    assert got == _brute(pts, 5, 0.5, mode)
    assert (s != r).all()
    assert len(got) == len(s)  # no duplicates


def test_neighbor_graph_errors_and_tiny():
    with pytest.raises(ValueError, match="mode"):
        neighbor_graph(np.zeros((3, 2)), "nope")
    s, r = neighbor_graph(np.zeros((1, 2)))
    assert len(s) == len(r) == 0


def test_bucket_sizes_are_few_and_bounded():
    sizes = {bucket_size(n) for n in range(1000, 200_000, 997)}
    assert len(sizes) <= 4 * 8 + 2
    for n in (1, 1500, 110_000, 131_072, 131_073):
        b = bucket_size(n)
        assert b >= n and b <= max(1.25 * n, 1024)


def test_padding_changes_no_embedding():
    model = HitEmbedding(hidden=(16, 16), dim=4)
    x = np.random.default_rng(1).normal(size=(777, 6)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6)))
    direct = np.asarray(model.apply(params, x))
    padded = embed(model, params, x)  # pads 777 -> bucket, then strips
    assert_reordered_close(padded, direct, 16, depth=3)  # 3 layers of width <= 16
    assert padded.shape == (777, 4)


def test_edge_filter_chunking_changes_nothing():
    model = EdgeFilter(hidden=(8, 8))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 5)).astype(np.float32)
    z = rng.normal(size=(1000, 3)).astype(np.float32)
    s, r = rng.integers(0, 50, 1000), rng.integers(0, 50, 1000)
    params = model.init(
        jax.random.PRNGKey(0),
        jnp.asarray(x),
        jnp.asarray(z[:1]),
        jnp.zeros(1, jnp.int32),
        jnp.ones(1, jnp.int32),
    )
    whole = edge_probabilities(model, params, x, z, s, r, chunk=1 << 20)
    parts = edge_probabilities(model, params, x, z, s, r, chunk=128)
    direct = np.asarray(jax.nn.sigmoid(model.apply(params, x, z, s, r)))
    assert_reordered_close(whole, direct, 8, depth=3)  # 3 layers of width <= 8
    assert_reordered_close(parts, direct, 8, depth=3)


def test_losses_by_hand():
    d2 = jnp.array([0.25, 4.0, 0.5, 2.0, 9.0])
    y = jnp.array([1, 1, 0, 0, 0])
    m = jnp.array([1, 1, 1, 1, 0])
    # positives: mean(0.25, 4) = 2.125; negatives: mean(max(0, 1-0.5), max(0, 1-2)) = 0.25
    np.testing.assert_allclose(hinge_embedding_loss(d2, y, m, 1.0), 2.375, rtol=1e-6)
    logits = jnp.array([0.0, 0.0])
    np.testing.assert_allclose(
        balanced_bce(logits, jnp.array([1, 0]), jnp.array([1, 1])), np.log(2), rtol=1e-6
    )


def test_checkpoint_roundtrip_and_failures(tmp_path):
    state = {"a": jnp.arange(4.0), "b": {"c": jnp.ones((2, 3))}}
    save_checkpoint(tmp_path / "ck", 7, state, kind="stage1", config={"x": 1})
    got, meta = restore_checkpoint(tmp_path / "ck", kind="stage1")
    np.testing.assert_array_equal(got["b"]["c"], np.ones((2, 3)))
    assert meta["config"] == {"x": 1} and meta["step"] == 7
    with pytest.raises(CheckpointError, match="expected 'gnn'"):
        restore_checkpoint(tmp_path / "ck", kind="gnn")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        restore_checkpoint(tmp_path / "missing")

    # Another format version: fails on the metadata, before any array is read.
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "ck", old)

    meta_path = _json_file(old / "7" / "meta")
    m = json.loads(meta_path.read_text())
    m["version"] = 0
    meta_path.write_text(json.dumps(m))
    write_manifest(old / "7")  # as the other version would have written it: not damaged
    with pytest.raises(CheckpointError, match="format version 0"):
        read_meta(old)

    foreign = tmp_path / "foreign"
    shutil.copytree(tmp_path / "ck", foreign)
    p = _json_file(foreign / "7" / "meta")
    p.write_text(json.dumps({"format": "something-else"}))
    write_manifest(foreign / "7")
    with pytest.raises(CheckpointError, match="not a cgnn_jax checkpoint"):
        restore_checkpoint(foreign)

    # Truncated: the array data is gone.
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "ck", broken)
    for f in (broken / "7" / "state").rglob("*"):
        if f.is_file() and "meta" not in f.name.lower():
            f.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"damaged checkpoint.*truncated"):
        restore_checkpoint(broken)
    write_manifest(broken / "7")  # damaged before its checksums were taken: orbax's error
    with pytest.raises(CheckpointError, match="cannot restore"):
        restore_checkpoint(broken)


def test_version1_checkpoint_reads_its_threshold_as_learned(tmp_path):
    """Version 1 wrote the learned threshold into the config; it is read back as learned."""
    from cgnn_jax.inference import Stage1
    from configs.experiments.stage1 import get_config

    c = get_config()
    params = {"w": jnp.ones(2)}
    Stage1(c, params, params, {"filter_threshold": 0.25}).save(tmp_path)
    meta_path = _json_file(tmp_path / "stage1" / "checkpoints" / "0" / "meta")
    m = json.loads(meta_path.read_text())
    assert m["version"] == FORMAT_VERSION == 2 and m["learned"]["filter_threshold"] == 0.25
    del m["learned"]
    m["version"] = 1
    m["config"]["filter"]["threshold"] = 0.125
    del m["config"]["graph"]["approx"]  # version-1 code read it with a default of 0
    meta_path.write_text(json.dumps(m))
    write_manifest(tmp_path / "stage1" / "checkpoints" / "0")
    old = Stage1.restore(tmp_path)
    assert old.threshold == 0.125 and old.config.graph.approx == 0.0


def _json_file(d):
    """The JSON file orbax writes for a JsonSave item (a file, or one inside a folder)."""
    if d.is_file():
        return d
    files = [f for f in d.rglob("*") if f.is_file()]
    for f in files:
        try:
            json.loads(f.read_text())
            if "format" in f.read_text():
                return f
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
    raise AssertionError(f"no JSON metadata file in {d}: {files}")


def test_tiny_training_learns_a_useful_graph(tmp_path):
    from cgnn_jax.inference import Stage1, prepare_event
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.train.stage1 import train_stage1
    from configs.experiments.stage1 import get_config
    from tests.helpers import shrink_stage1

    c = shrink_stage1(get_config())
    model = train_stage1(c, tmp_path, log=lambda *_: None)
    restored = Stage1.restore(tmp_path)
    ev = prepare_event(simulate_event(12345, mu=10))
    s, r = restored.embedding_graph(ev)
    np.testing.assert_array_equal(s, model.embedding_graph(ev)[0])
    q = edge_purity_recall(s, r, ev.pid)
    # A random graph with the same number of edges has purity ~ sum k(k-1) / n^2.
    _, cnt = np.unique(ev.pid[ev.pid != 0], return_counts=True)
    random_purity = (cnt * (cnt - 1)).sum() / ev.n**2
    assert q["purity"] > 20 * random_purity
    assert q["recall"] > 0.2
    s2, r2, p2 = restored.refined_graph(ev, s, r)
    q2 = edge_purity_recall(s2, r2, ev.pid)
    assert q2["purity"] > q["purity"]
    # the threshold is learned (checkpoint metadata); the config keeps its given value
    assert "filter_threshold" in restored.learned and c.filter.threshold == 0.5
    assert restored.threshold == model.threshold
    assert (p2 > restored.threshold).all()


def test_choose_threshold_meets_purity_with_most_recall():
    from cgnn_jax.train.stage1 import choose_threshold

    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.2
    p = np.clip(0.5 * y + 0.6 * rng.random(20_000), 0, 1)
    t = choose_threshold(p, y, 0.7)
    keep = p > t
    assert y[keep].mean() >= 0.7
    lower = p > t - 0.02  # any lower threshold breaks the purity target
    assert y[lower].mean() < 0.7 or lower.sum() == keep.sum()


def test_consecutive_recall_by_hand():
    from cgnn_jax.metrics import consecutive_pairs, consecutive_recall

    pos = np.array([[10.0, 0, 0], [30.0, 0, 0], [20.0, 0, 0], [5.0, 0, 0], [40.0, 0, 0]])
    pid = np.array([1, 1, 1, 0, 2])
    a, b = consecutive_pairs(pos, pid)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == {(0, 2), (2, 1), (2, 0), (1, 2)}
    s, r = np.array([0, 2, 1]), np.array([2, 1, 0])
    assert consecutive_recall(s, r, pos, pid) == 0.5


def test_rerun_restores_instead_of_retraining(tmp_path, monkeypatch):
    import cgnn_jax.train.stage1 as stage1_mod
    from cgnn_jax.inference import Stage1
    from cgnn_jax.train import train_and_evaluate
    from configs.experiments.stage1 import get_config

    c = get_config()
    params = {"w": jnp.ones(2)}
    Stage1(c, params, params).save(tmp_path)

    def boom(*a, **k):
        raise AssertionError("retrained although a checkpoint exists")

    monkeypatch.setattr(stage1_mod, "train_stage1", boom)
    messages = []
    out = train_and_evaluate(c, tmp_path, log=messages.append)
    np.testing.assert_array_equal(out["stage1"].emb_params["w"], np.ones(2))
    assert "already trained" in messages[0]


def test_consecutive_positives_are_track_neighbours():
    from cgnn_jax.inference import prepare_event
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.train.data import pair_data
    from cgnn_jax.train.stage1 import sample_pairs

    ev = prepare_event(simulate_event(7, mu=5))
    data = pair_data([ev])
    arrays = {k: jnp.asarray(v) for k, v in vars(data).items()}
    arrays["hard_s"], arrays["hard_r"] = jnp.zeros(1, jnp.int32), jnp.ones(1, jnp.int32)
    dist = np.linalg.norm(ev.hf.pos, axis=1)
    # within a particle, by_particle runs outwards
    bp = data.by_particle
    same = data.pid[bp[1:]] == data.pid[bp[:-1]]
    assert (np.diff(dist[bp])[same] >= 0).all()
    i, j, y, mask = (
        np.asarray(a) for a in sample_pairs(arrays, jax.random.PRNGKey(0), 512, 0.0, 1.0)
    )
    pos = np.arange(len(i)) < 256
    assert (y | ~mask)[pos].all() and (i[pos] != j[pos]).any()
    for a, b in zip(i[pos & mask], j[pos & mask], strict=True):
        hits = np.flatnonzero(ev.pid == ev.pid[a])
        rank = {h: r for r, h in enumerate(hits[np.argsort(dist[hits], kind="stable")])}
        assert abs(rank[a] - rank[b]) == 1
    # without the option, positives reach across the whole track
    i, j, *_ = (np.asarray(a) for a in sample_pairs(arrays, jax.random.PRNGKey(0), 4096, 0.0))
    gaps = np.abs(data.rank[i[:2048]] - data.rank[j[:2048]])
    assert gaps.max() > 2


def test_knn_ceilings_reward_an_embedding_that_separates_tracks():
    from cgnn_jax.analysis.graph_quality import knn_ceilings

    rng = np.random.default_rng(0)
    pid = np.repeat(np.arange(1, 41), 5)
    weight = np.full(len(pid), 1.0 / len(pid))
    good = 10.0 * rng.normal(size=(40, 3))[pid - 1] + 0.01 * rng.normal(size=(len(pid), 3))
    bad = rng.normal(size=(len(pid), 3))
    (g,) = knn_ceilings(good, pid, weight, [4], "knn")
    (b,) = knn_ceilings(bad, pid, weight, [4], "knn")
    assert g["ceiling"] == pytest.approx(1.0) and g["k"] == 4
    assert b["ceiling"] < 0.9
    assert g["edges_per_hit"] >= 4
