"""The layer-constrained merge of scored edges (the atoms of ``cluster.merge = "layers"``)."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest

from cgnn_jax.cluster.merge import layer_bits, layer_merge
from cgnn_jax.inference.stage3 import atom_mode, atoms
from cgnn_jax.metrics.ceilings import components

merge = jax.jit(layer_merge, static_argnums=(5, 6))


def reference_merge(s, r, score, keep, layer, n, max_shared):
    """The same rounds in plain numpy, with a boolean [piece, layer] table instead of bits."""
    label = np.arange(n)
    table = np.zeros((n, 64), bool)
    table[np.arange(n), layer] = True
    eid = np.arange(len(s))
    while True:
        ci, cj = label[s], label[r]
        shared = (table[ci] & table[cj]).sum(1)
        valid = keep & (ci != cj) & (shared <= max_shared)
        if not valid.any():
            return label
        best = np.full(n, -np.inf)
        np.maximum.at(best, ci[valid], score[valid])
        np.maximum.at(best, cj[valid], score[valid])
        first = np.full(n, len(s))
        for c in (ci, cj):
            hit = valid & (score == best[c])
            np.minimum.at(first, c[hit], eid[hit])
        mutual = valid & (first[ci] == eid) & (first[cj] == eid)
        lo, hi = np.minimum(ci, cj)[mutual], np.maximum(ci, cj)[mutual]
        table[lo] |= table[hi]
        remap = np.arange(n)
        remap[hi] = lo
        label = remap[label]


def random_graph(rng, n, e, n_layers=48):
    s, r = rng.integers(0, n, e), rng.integers(0, n, e)
    score = rng.random(e).astype(np.float32)
    return s, r, score, rng.integers(0, n_layers, n)


def test_layer_bits_set_one_bit_per_layer_in_the_right_word():
    low, high = (np.asarray(w) for w in layer_bits(np.array([0, 5, 31, 32, 47, 63])))
    assert low.tolist() == [1, 32, 2**31, 0, 0, 0]
    assert high.tolist() == [0, 0, 0, 1, 2**15, 2**31]


@pytest.mark.parametrize("max_shared", [0, 1, 2])
def test_layer_merge_matches_a_numpy_reference(max_shared):
    rng = np.random.default_rng(max_shared)
    for n, e in ((30, 60), (400, 1200), (700, 700)):
        s, r, score, layer = random_graph(rng, n, e)
        keep = rng.random(e) < 0.8
        got = np.asarray(merge(s, r, score, keep, layer, n, max_shared))
        want = reference_merge(s, r, score, keep, layer, n, max_shared)
        np.testing.assert_array_equal(got, want)
        assert (got <= np.arange(n)).all() and (got[got] == got).all()  # ids: smallest member


def test_pieces_never_hold_two_hits_of_one_layer_with_no_sharing_allowed():
    rng = np.random.default_rng(7)
    n, e = 600, 3000
    s, r, score, layer = random_graph(rng, n, e, n_layers=12)
    got = np.asarray(merge(s, r, score, np.ones(e, bool), layer, n, 0))
    pairs = np.unique(np.stack([got, layer], 1), axis=0)
    assert len(pairs) == n  # every (piece, layer) pair holds exactly one hit
    # and it does join: fewer pieces than the graph's singletons, never more than its components
    n_pieces = len(np.unique(got))
    assert len(np.unique(components(s, r, n))) <= n_pieces < n


def test_crossing_tracks_stay_apart_where_components_merge_them():
    # two tracks cross the same 10 layers; along each track edges of score 0.9; between them, at
    # every layer, an edge of score 0.99 (a confident mistake): the components of every edge above
    # 0.5 are one blob, the merge keeps the two tracks
    k = 10
    a, b = np.arange(k), np.arange(k) + k
    s = np.concatenate([a[:-1], b[:-1], a])
    r = np.concatenate([a[1:], b[1:], b])
    score = np.concatenate([np.full(2 * (k - 1), 0.9), np.full(k, 0.99)]).astype(np.float32)
    layer = np.concatenate([np.arange(k), np.arange(k)])
    got = np.asarray(merge(s, r, score, np.ones(len(s), bool), layer, 2 * k, 0))
    assert (got[:k] == 0).all() and (got[k:] == k).all()
    assert len(np.unique(components(s, r, 2 * k))) == 1


def test_padding_changes_no_piece():
    rng = np.random.default_rng(3)
    n, e = 300, 900
    s, r, score, layer = random_graph(rng, n, e)
    keep = rng.random(e) < 0.9
    want = np.asarray(merge(s, r, score, keep, layer, n, 1))
    # padding edges (any endpoints, any score, keep False) after the real ones, padding nodes
    pe, pn = 124, 212
    s2 = np.concatenate([s, rng.integers(0, n + pn, pe)])
    r2 = np.concatenate([r, rng.integers(0, n + pn, pe)])
    score2 = np.concatenate([score, np.ones(pe, np.float32)])
    keep2 = np.concatenate([keep, np.zeros(pe, bool)])
    layer2 = np.concatenate([layer, np.zeros(pn, np.int64)])
    got = np.asarray(merge(s2, r2, score2, keep2, layer2, n + pn, 1))
    np.testing.assert_array_equal(got[:n], want)


def test_atoms_follow_the_configured_mode():
    rng = np.random.default_rng(5)
    n, e = 200, 600
    s, r, score, layer = random_graph(rng, n, e)
    mask = np.ones(e, bool)
    cc = ml_collections.ConfigDict({"merge": "components", "component_cut": 0.0})
    assert atom_mode(cc) is None and atoms(cc, s, r, score, mask, layer, n) is None
    cc.component_cut = 0.7
    got = np.asarray(atoms(cc, s, r, score, mask, layer, n))
    want = components(s[score > 0.7], r[score > 0.7], n)
    assert len(np.unique(got)) == len(np.unique(want))
    cc = ml_collections.ConfigDict(
        {"merge": "layers", "merge_threshold": 0.4, "merge_max_shared": 1}
    )
    got = np.asarray(atoms(cc, s, r, score, mask, layer, n))
    np.testing.assert_array_equal(got, reference_merge(s, r, score, score > 0.4, layer, n, 1))
    cc.merge = "greedy"
    with pytest.raises(ValueError, match="'greedy'"):
        atom_mode(cc)
