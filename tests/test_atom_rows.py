"""The inference tree on atom rows (``cluster.tree_rows = "atoms"``): one weighted row per atom,
the output mapped back to the points."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from cgnn_jax.cluster.recursion import (
    atom_rows,
    group_representatives,
    rows_to_points,
    unrolled_clustering,
)
from cgnn_jax.models.split_stop import Split, Stop, segment_mean_var
from cgnn_jax.utils.padding import pad_rows
from tests.helpers import reorder_tol


def _atoms(n: int, n_atoms: int, seed: int):
    """Points in ``n_atoms`` atoms (ids: the atom's smallest point, as the pipeline's are)."""
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, n_atoms, n)
    first = pd.Series(np.arange(n)).groupby(comp).transform("min").to_numpy().astype(np.int32)
    return rng, first


def test_weighted_rows_give_the_statistics_of_their_points():
    rng, groups = _atoms(500, 120, 0)
    h = rng.normal(size=(500, 4)).astype(np.float32)
    seg = (groups % 7).astype(np.int32)  # clusters made of whole atoms
    mask = np.ones(500, bool)
    mean, var, cnt = (np.asarray(a) for a in segment_mean_var(h, seg, mask, 500))
    r = atom_rows(h, groups)
    assert (r["first"] == np.sort(np.unique(groups))).all()  # rows in first-point order
    assert (r["first"][r["row"]] == groups).all() and r["weights"].sum() == 500
    rseg = seg[r["first"]]
    rmask = np.ones(len(rseg), bool)
    m2, v2, c2 = (
        np.asarray(a) for a in segment_mean_var(r["h"], rseg, rmask, 500, r["weights"], r["h_var"])
    )
    tol = reorder_tol(500, 2)
    np.testing.assert_array_equal(cnt, c2)
    np.testing.assert_allclose(m2, mean, rtol=tol, atol=tol * 4)
    np.testing.assert_allclose(v2, var, rtol=tol, atol=tol * 4)
    empty = atom_rows(np.zeros((0, 4), np.float32), np.zeros(0, np.int32))
    assert empty["h"].shape == (0, 4) and len(empty["row"]) == len(empty["first"]) == 0


@pytest.mark.parametrize("compact", [False, True])
def test_atom_rows_build_the_tree_of_the_points(compact):
    # atoms whose points share their features: the point tree (groups, each atom's p the mean
    # of its points') and the row tree must be the same tree, whatever the learned Split/Stop
    n, size, d = 900, 1024, 3
    rng, groups = _atoms(n, 260, 1)
    centres = rng.normal(size=(n, d)).astype(np.float32)
    h = np.zeros((size, d), np.float32)
    h[:n] = centres[groups]
    mask = np.arange(size) < n
    gp = np.arange(size, dtype=np.int32)
    gp[:n] = groups
    split, stop = Split((8, 8), output_scale=3.0), Stop((8,))
    seg0, m0 = np.zeros(8, np.int32), np.ones(8, bool)
    ps = split.init(jax.random.PRNGKey(0), h[:8], seg0, m0, 8)
    pt = stop.init(jax.random.PRNGKey(1), h[:8], seg0, m0, 8)
    out_layer = pt["params"]["mlp"]["Dense_1"]  # spread the votes: some clusters stop, not all
    out_layer["kernel"] = out_layer["kernel"] * 12.0

    def run(x, m, **kw):
        out = unrolled_clustering(
            lambda *a, **k: split.apply(ps, *a, **k),
            lambda *a, **k: stop.apply(pt, *a, **k),
            x,
            m,
            24,
            3,
            0.5,
            compact=compact,
            **kw,
        )
        return {k: np.asarray(v) for k, v in out.items()}

    reps = pad_rows(group_representatives(gp), 512, value=size)
    ref = run(h, mask, groups=gp, group_reps=reps)
    r = atom_rows(h[:n], groups)
    g_size = 512
    rows = run(
        pad_rows(r["h"], g_size),
        np.arange(g_size) < len(r["first"]),
        weights=pad_rows(r["weights"], g_size),
        h_var=pad_rows(r["h_var"], g_size),
    )
    got = rows_to_points(rows, r["row"], r["first"], size)
    assert len(np.unique(ref["cluster"][:n])) > 40  # the tree did split
    assert (ref["stop"] > 0.5).any()  # and Stop froze some clusters
    for k in ("cluster", "segment", "size", "active", "mask"):
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    tol = reorder_tol(n, 3)
    for k in ("p_right", "stop"):
        np.testing.assert_allclose(got[k], ref[k], rtol=tol, atol=tol, err_msg=k)


def test_atom_rows_and_groups_together_are_refused():
    h, mask = np.zeros((8, 2), np.float32), np.ones(8, bool)
    f = lambda h_, seg, m, k, **kw: jax.numpy.zeros(len(h_))  # noqa: E731
    with pytest.raises(ValueError, match="not both"):
        unrolled_clustering(f, f, h, mask, 4, groups=np.arange(8), weights=np.ones(8, np.int32))


@pytest.mark.parametrize("compact", [False, True])
def test_no_stop_builds_the_tree_of_a_cut_no_vote_exceeds(compact):
    # stop_fn None (Stop not evaluated) must give the tree of any Stop at a cut of 1, on atom
    # rows as the shipped model runs it: the same decisions, Stop's votes NaN
    n, d = 700, 3
    rng, groups = _atoms(n, 300, 2)
    h = rng.normal(size=(n, d)).astype(np.float32)
    r = atom_rows(h, groups)
    g = 512
    x, m = pad_rows(r["h"], g), np.arange(g) < len(r["first"])
    w, v = pad_rows(r["weights"], g), pad_rows(r["h_var"], g)
    split, stop = Split((8, 8), output_scale=3.0), Stop((8,))
    seg0, m0 = np.zeros(8, np.int32), np.ones(8, bool)
    ps = split.init(jax.random.PRNGKey(3), x[:8], seg0, m0, 8)
    pt = stop.init(jax.random.PRNGKey(4), x[:8], seg0, m0, 8)

    def run(stop_fn, cut):
        out = unrolled_clustering(
            lambda *a, **k: split.apply(ps, *a, **k),
            stop_fn,
            x,
            m,
            30,
            3,
            cut,
            compact=compact,
            weights=w,
            h_var=v,
        )
        return {k: np.asarray(o) for k, o in out.items()}

    ref = run(lambda *a, **k: stop.apply(pt, *a, **k), 1.0)
    got = run(None, 1.0)
    assert len(np.unique(ref["cluster"][: len(r["first"])])) > 100  # the tree did split
    for k in ("cluster", "segment", "size", "active", "mask"):
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    tol = reorder_tol(n, 3)
    np.testing.assert_allclose(got["p_right"], ref["p_right"], rtol=tol, atol=tol)
    assert np.isnan(got["stop"]).all() and not np.isnan(ref["stop"]).any()
    # and at a lower cut Stop does freeze clusters the run without it splits
    low = run(lambda *a, **k: stop.apply(pt, *a, **k), 0.4)
    assert len(np.unique(low["cluster"])) < len(np.unique(got["cluster"]))


def test_stop_size_input_counts_points_not_rows_nor_padding():
    # Stop(size_input=True) sees log(1 + points of the cluster): the same votes from atoms'
    # weighted rows as from their points, padding counts nothing, and the size moves the vote
    n, d = 60, 3
    rng, groups = _atoms(n, 12, 2)
    # the points of an atom coincide, so its row is exactly them (a row's vote is not the mean
    # of its points' votes otherwise)
    h = rng.normal(size=(n, d)).astype(np.float32)[groups]
    seg = (groups % 2).astype(np.int32)  # two clusters (ids 0 and 1) made of whole atoms
    assert 0 < seg.sum() < n
    stop = Stop((8,), size_input=True)
    params = stop.init(jax.random.PRNGKey(0), h[:8], seg[:8], np.ones(8, bool), 8)
    assert params["params"]["mlp"]["Dense_0"]["kernel"].shape[0] == 3 * (d + 1)
    pts = np.asarray(stop.apply(params, h, seg, np.ones(n, bool), n))[:2]
    # the same points padded to 96 rows (padding in its own segments): the same votes
    hp, mp = pad_rows(h, 96), np.arange(96) < n
    sp = np.concatenate([seg, np.arange(n, 96)]).astype(np.int32)
    np.testing.assert_allclose(
        np.asarray(stop.apply(params, hp, sp, mp, 96))[:2], pts, rtol=1e-5, atol=1e-6
    )
    # one weighted row per atom: the same cluster sizes, so the same votes
    r = atom_rows(h, groups)
    k = len(r["first"])
    rows = stop.apply(
        params, r["h"], seg[r["first"]], np.ones(k, bool), k, weight=r["weights"], h_var=r["h_var"]
    )
    np.testing.assert_allclose(np.asarray(rows)[:2], pts, rtol=1e-4, atol=1e-5)
    # the size is an input: a cluster of the same points counted twice votes differently
    twice = stop.apply(
        params,
        r["h"],
        seg[r["first"]],
        np.ones(k, bool),
        k,
        weight=2 * r["weights"],
        h_var=r["h_var"],
    )
    assert np.abs(np.asarray(twice)[:2] - pts).max() > 1e-4
