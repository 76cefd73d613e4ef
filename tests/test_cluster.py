"""Stage 3: Split/Stop modules, the unrolled recursion, the split loss and the stop labels."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cgnn_jax.cluster import (
    pair_group_ids,
    split_loss,
    stop_labels,
    tree_to_table,
    unrolled_clustering,
)
from cgnn_jax.models.split_stop import (
    ClusterStatsMLP,
    Split,
    Stop,
    aggregate_votes,
    segment_mean_var,
)
from tests.helpers import assert_reordered_close


def _never_stop(h, seg, mask, n):
    return jnp.zeros(n)


def _n_clusters(seg: np.ndarray, mask: np.ndarray) -> int:
    return len(np.unique(seg[mask]))


def test_segment_stats_match_groupby_and_ignore_padding():
    rng = np.random.default_rng(0)
    n, pad, d, s = 40, 8, 3, 5
    x = rng.normal(size=(n + pad, d)).astype(np.float32)
    seg = np.r_[rng.integers(0, s, n), rng.integers(0, s, pad)].astype(np.int32)
    mask = np.r_[np.ones(n, bool), np.zeros(pad, bool)]
    mean, var, cnt = segment_mean_var(jnp.asarray(x), jnp.asarray(seg), jnp.asarray(mask), s)
    df = pd.DataFrame(x[:n]).assign(seg=seg[:n]).groupby("seg")
    ref_mean = df.mean().reindex(range(s)).to_numpy()
    ref_var = df.var(ddof=0).reindex(range(s)).to_numpy()
    np.testing.assert_allclose(mean, ref_mean, atol=1e-5)
    np.testing.assert_allclose(var, ref_var, atol=1e-5)
    np.testing.assert_array_equal(cnt, np.bincount(seg[:n], minlength=s))

    # the module's outputs on real points do not depend on the padding points' features
    model = ClusterStatsMLP((8, 8))
    params = model.init(jax.random.PRNGKey(0), x, seg, mask, s)
    y1 = model.apply(params, x, seg, mask, s)
    x2 = x.copy()
    x2[n:] = 1e3
    y2 = model.apply(params, x2, seg, mask, s)
    assert_reordered_close(y2[:n], y1[:n], n + pad, depth=3)
    np.testing.assert_array_equal(y2[n:], 0.0)
    y3 = model.apply(params, x[:n], seg[:n], mask[:n], s)
    assert_reordered_close(y3, y1[:n], n + pad, depth=3)

    votes = jnp.asarray(rng.uniform(size=n + pad).astype(np.float32))
    agg = aggregate_votes(votes, seg, mask, s, "max")
    ref = pd.Series(np.asarray(votes)[:n]).groupby(seg[:n]).max().reindex(range(s), fill_value=0)
    np.testing.assert_allclose(agg, ref.to_numpy(), atol=1e-6)


def test_two_blobs_split_in_one_level():
    rng = np.random.default_rng(1)
    h = np.r_[rng.normal(-5, 0.3, (10, 2)), rng.normal(5, 0.3, (12, 2)), np.zeros((4, 2))]
    mask = np.r_[np.ones(22, bool), np.zeros(4, bool)]

    def split_fn(h, seg, mask, n):
        return (h[:, 0] > 0).astype(jnp.float32)

    out = unrolled_clustering(split_fn, _never_stop, jnp.asarray(h), jnp.asarray(mask), 1)
    c = np.asarray(out["cluster"])
    assert set(c[:10]) == {0} and set(c[10:22]) == {10}
    np.testing.assert_array_equal(c[22:], -1)
    assert np.asarray(out["active"])[0, 0] and np.asarray(out["active"]).sum() == 1


def test_median_rule_halves_constant_split():
    n = 32
    h = jnp.zeros((n, 2))
    mask = jnp.ones(n, bool)

    def const(h, seg, mask, n):
        return jnp.full(h.shape[0], 0.9)

    out = unrolled_clustering(const, _never_stop, h, mask, max_depth=6, min_size=3)
    segs, m = np.asarray(out["segment"]), np.ones(n, bool)
    counts = [_n_clusters(segs[lev], m) for lev in range(7)]
    assert counts == [1, 2, 4, 8, 16, 16, 16]  # size 2 < min_size: frozen
    assert np.all(np.bincount(np.asarray(out["cluster"]))[np.unique(out["cluster"])] == 2)
    table = tree_to_table(out)
    assert len(table) == 31 and table["leaf"].sum() == 16
    assert (table["parent"] == -1).sum() == 1
    kids = table[table["parent"] >= 0]
    np.testing.assert_array_equal(
        kids.groupby("parent")["size"].sum().to_numpy(),
        table.loc[table["split"], "size"].to_numpy(),
    )
    np.testing.assert_allclose(table.loc[table["level"] < 6, "split_prob"], 0.9, atol=1e-6)


def test_stop_immediately():
    h = jnp.ones((10, 2))

    def always_stop(h, seg, mask, n):
        return jnp.ones(n)

    def split_fn(h, seg, mask, n):
        return jnp.arange(h.shape[0]) % 2 * 1.0

    out = unrolled_clustering(split_fn, always_stop, h, jnp.ones(10, bool), max_depth=3)
    np.testing.assert_array_equal(out["cluster"], 0)
    assert not np.asarray(out["active"]).any()
    table = tree_to_table(out)
    assert len(table) == 1 and table["stop_prob"].iloc[0] == 1.0


def test_jit_compiles_once_with_flax_modules():
    traces = []
    split, stop = Split((8,)), Stop((8,))
    h0, m0 = jnp.zeros((16, 3)), jnp.ones(16, bool)
    s0 = jnp.zeros(16, jnp.int32)
    ps = split.init(jax.random.PRNGKey(0), h0, s0, m0, 16)
    pt = stop.init(jax.random.PRNGKey(1), h0, s0, m0, 16)

    def split_fn(h, seg, mask, n):
        traces.append(1)
        return split.apply(ps, h, seg, mask, n)

    def stop_fn(h, seg, mask, n):
        return 0.0 * stop.apply(pt, h, seg, mask, n)  # never stops: exercise the splits

    run = jax.jit(
        functools.partial(unrolled_clustering, split_fn, stop_fn, max_depth=3, min_size=2)
    )
    rng = np.random.default_rng(2)
    for k in (12, 14):
        h = rng.normal(size=(16, 3)).astype(np.float32)
        mask = np.arange(16) < k
        out = run(jnp.asarray(h), jnp.asarray(mask))
        assert _n_clusters(np.asarray(out["cluster"]), mask) == 8  # 3 levels, sizes >= 2 split
    assert len(traces) == 1


def _loss(p, seg, pid, valid):
    seg, pid, valid = jnp.asarray(seg), jnp.asarray(pid), jnp.asarray(valid)
    group = pair_group_ids(seg, pid, valid)
    n = len(seg)
    return split_loss(jnp.asarray(p, jnp.float32), seg, group, valid, n, n)


def test_split_loss():
    seg = np.zeros(12, np.int32)
    pid = np.r_[np.full(5, 7), np.full(5, 9), 0, 0]
    valid = pid != 0
    perfect = np.r_[np.full(5, 1.0), np.full(5, 0.0), 0.3, 0.8]  # noise is ignored
    cut = np.r_[1, 1, 1, 0, 0, np.full(5, 0.0), 0.3, 0.8]
    lp = float(_loss(perfect, seg, pid, valid)[1])
    lc = float(_loss(cut, seg, pid, valid)[1])
    assert lp == pytest.approx(0.0, abs=1e-4)
    assert lc > lp + 0.3
    # undecided points (p = 0.5) are penalised too
    assert float(_loss(np.full(12, 0.5), seg, pid, valid)[1]) > 0.5
    # two segments, one perfect and one cut: per-segment losses
    seg2 = np.r_[np.zeros(10, np.int32), np.ones(10, np.int32)]
    pid2 = np.r_[np.full(5, 1), np.full(5, 2), np.full(5, 1), np.full(5, 2)]
    p2 = np.r_[np.full(5, 1.0), np.full(5, 0.0), cut[:10]]
    per, _ = _loss(p2, seg2, pid2, np.ones(20, bool))
    assert per[0] == pytest.approx(0.0, abs=1e-4) and per[1] == pytest.approx(lc, abs=1e-5)
    # gradient is finite at saturated probabilities
    g = jax.grad(lambda p: _loss(p, seg, pid, valid)[1])(jnp.asarray(perfect, jnp.float32))
    assert np.all(np.isfinite(g))


def test_pair_group_ids_dense():
    seg = jnp.array([0, 0, 3, 3, 0, 3, 1], jnp.int32)
    pid = jnp.array([5, 6, 5, 5, 5, 0, 6])
    valid = pid != 0
    g = np.asarray(pair_group_ids(seg, pid, valid))
    keep = np.r_[0:5, 6]
    keys = list(zip(np.asarray(seg)[keep].tolist(), np.asarray(pid)[keep].tolist(), strict=True))
    gv = g[keep]
    for a in range(6):
        for b in range(6):
            assert (gv[a] == gv[b]) == (keys[a] == keys[b])
    assert g[5] not in gv and g.max() < len(seg)


def test_stop_labels_on_hand_tree():
    # particles A (x < 0) and B (x > 0), 4 points each; split at the cluster mean of x
    x = np.array([-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0])
    pid = np.r_[np.full(4, 1), np.full(4, 2)]

    def split_fn(h, seg, mask, n):
        mean, _, _ = segment_mean_var(h, seg, mask, n)
        return (h[:, 0] > mean[seg, 0]).astype(jnp.float32)

    out = unrolled_clustering(
        split_fn, _never_stop, jnp.asarray(x[:, None]), jnp.ones(8, bool), 2, min_size=3
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    table = stop_labels(tree_to_table(out), out, pid)
    assert len(table) == 7
    root = table[table["level"] == 0].iloc[0]
    lvl1 = table[table["level"] == 1]
    lvl2 = table[table["level"] == 2]
    # root: precision 1/2, recall 1 -> s = 0.5; children perfect (s = 1, w = 1/2) -> split
    assert root["score"] == pytest.approx(0.5) and root["stop_label"] == 0
    assert root["rec_score"] == pytest.approx(1.0)
    # particles: s = 1 beats their children (size 2 < 3: s = 0) -> stop
    np.testing.assert_allclose(lvl1["score"], 1.0)
    np.testing.assert_array_equal(lvl1["stop_label"], 1)
    np.testing.assert_allclose(lvl2["score"], 0.0)
    np.testing.assert_array_equal(lvl2["stop_label"], 1)


def test_median_rule_sends_the_higher_half_right():
    x = jnp.asarray(np.random.default_rng(3).permutation(10).astype(np.float32))[:, None]

    def all_right(h, seg, mask, n):
        return 0.6 + 0.01 * h[:, 0]  # every point > 0.5: degenerate split

    out = unrolled_clustering(all_right, _never_stop, x, jnp.ones(10, bool), max_depth=1)
    c, xs = np.asarray(out["cluster"]), np.asarray(x[:, 0])
    assert _n_clusters(c, np.ones(10, bool)) == 2
    np.testing.assert_array_equal(np.sort(xs[c == c[np.argmax(xs)]]), np.arange(5, 10))


def _variance_split(h, seg, mask, n):
    """Split each cluster across its mean along its widest axis (sharp sigmoid)."""
    mean, var, _ = segment_mean_var(h, seg, mask, n)
    ax = jnp.argmax(var[seg], axis=-1)
    x = jnp.take_along_axis(h - mean[seg], ax[:, None], axis=-1)[:, 0]
    return jax.nn.sigmoid(20.0 * x)


def _tight_stop(h, seg, mask, n):
    _, var, _ = segment_mean_var(h, seg, mask, n)
    return (var.sum(-1) < 0.02).astype(h.dtype)


@pytest.mark.parametrize("with_groups", [False, True])
def test_compact_levels_build_the_same_tree(with_groups):
    # 4096 padded points: the compact levels run on blocks of 1024 and 256... once few points
    # are still in play; the tree (ids, sizes, decisions) must be the whole-array one
    rng = np.random.default_rng(7)
    n_real, n = 3900, 4096
    centres = rng.uniform(-20, 20, (300, 2))
    blob = rng.integers(0, 300, n_real)
    order = np.argsort(blob, kind="stable")
    blob = blob[order]
    h = np.zeros((n, 2), np.float32)
    h[:n_real] = centres[blob] + rng.normal(0, 0.1, (n_real, 2))
    mask = np.arange(n) < n_real
    groups = None
    if with_groups:  # atoms: pairs of neighbours of one blob, labelled by their smallest index
        g = np.arange(n, dtype=np.int32)
        pair = np.flatnonzero((blob[1:] == blob[:-1]) & (np.arange(1, n_real) % 2 == 1))
        g[pair + 1] = pair
        groups = jnp.asarray(g)
    run = functools.partial(
        unrolled_clustering,
        _variance_split,
        _tight_stop,
        jnp.asarray(h),
        jnp.asarray(mask),
        24,
        3,
        0.5,
        groups,
    )
    full, comp = run(compact=False), run(compact=True)
    for k in ("cluster", "segment", "active", "size"):
        np.testing.assert_array_equal(np.asarray(comp[k]), np.asarray(full[k]), err_msg=k)
    assert _n_clusters(np.asarray(full["cluster"]), mask) > 250  # the tree went deep
    # the tree table (each node's Split mean and Stop value where it was decided) is the same
    t_full, t_comp = tree_to_table(full), tree_to_table(comp)
    pd.testing.assert_frame_equal(t_comp, t_full, check_exact=False, atol=1e-5)
