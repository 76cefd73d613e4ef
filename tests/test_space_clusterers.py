"""Clusterers of embedded points (cgnn_jax.baselines.space) on small synthetic blobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.baselines import (
    canonical_labels,
    dbscan_space,
    edge_components,
    hdbscan_space,
    knn_components,
    tune_cut,
)
from cgnn_jax.graph.neighbors import neighbor_graph

D = 12


def blobs(
    n_blobs: int = 30, size: int = 8, sigma: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n_blobs`` tight Gaussian blobs of ``size`` points in 12-D, centres >= ~1 apart.

    Returns:
      ``(h [n, 12] float32, truth [n] int64 blob index)``, rows shuffled.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3.0, 3.0, (n_blobs, D))
    truth = np.repeat(np.arange(n_blobs), size)
    h = centres[truth] + sigma * rng.normal(size=(len(truth), D))
    perm = rng.permutation(len(truth))
    return h[perm].astype(np.float32), truth[perm]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(canonical_labels(a), canonical_labels(b))


def assert_valid(labels: np.ndarray, n: int) -> None:
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.min() == 0
    # consecutive, in order of first appearance
    _, first = np.unique(labels, return_index=True)
    assert np.array_equal(labels[np.sort(first)], np.arange(labels.max() + 1))


def knn_edges(h: np.ndarray, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    s, r = neighbor_graph(h, mode="knn", k=k, symmetric=False)
    return s, r


CLUSTERERS = {
    "dbscan": lambda h, **kw: dbscan_space(h, eps=0.2, **kw),
    "hdbscan": lambda h, **kw: hdbscan_space(h, min_cluster_size=3, **kw),
    "edges": lambda h, **kw: edge_components(h, *knn_edges(h), cut=0.2, **kw),
    "knn": lambda h, **kw: knn_components(h, k=6, cut=0.2, **kw),
}


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_separated_blobs_recovered_exactly(name):
    h, truth = blobs()
    labels = CLUSTERERS[name](h)
    assert_valid(labels, len(h))
    assert same_partition(labels, truth)


def test_canonical_labels_noise_to_singletons_first_appearance_order():
    out = canonical_labels(np.array([7, -1, 7, 3, -1, 3, 9]))
    assert out.tolist() == [0, 1, 0, 2, 3, 2, 4]
    assert canonical_labels(np.zeros(0, np.int64)).shape == (0,)
    assert canonical_labels(np.full(3, -1)).tolist() == [0, 1, 2]


def test_zero_cut_gives_all_singletons():
    h, _ = blobs(n_blobs=5)
    n = len(h)
    assert np.array_equal(edge_components(h, *knn_edges(h), cut=0.0), np.arange(n))
    assert np.array_equal(knn_components(h, k=6, cut=0.0), np.arange(n))
    # DBSCAN's eps is inclusive; with min_samples=2 and distinct points all are noise
    assert np.array_equal(dbscan_space(h, eps=0.0), np.arange(n))
    assert dbscan_space(np.repeat(h[:2], 2, 0), eps=0.0).tolist() == [0, 0, 1, 1]  # duplicates


def test_large_cut_merges_every_connected_point():
    h, _ = blobs(n_blobs=5)
    # a chain 0-1-2-...-(n-1): one component when every edge is kept
    s = np.arange(len(h) - 1)
    assert np.all(edge_components(h, s, s + 1, cut=np.inf) == 0)
    # direction is ignored: the reversed chain too
    assert np.all(edge_components(h, s + 1, s, cut=np.inf) == 0)


def test_edge_cut_is_strict_and_per_edge():
    h = np.array([[0.0], [1.0], [3.0], [3.5]], np.float32)
    s, r = np.array([0, 1, 2]), np.array([1, 2, 3])  # lengths 1, 2, 0.5
    assert edge_components(h, s, r, cut=1.0).tolist() == [0, 1, 2, 2]
    assert edge_components(h, s, r, cut=1.01).tolist() == [0, 0, 1, 1]
    assert edge_components(h, s, r, cut=2.01).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="endpoints"):
        edge_components(h, np.array([0]), np.array([4]), cut=1.0)


def test_dbscan_noise_and_hdbscan_outliers_are_singletons():
    h, truth = blobs(n_blobs=6)
    far = np.array([[50.0] * D, [-50.0] * D], np.float32)  # two isolated outliers
    hx = np.concatenate([h, far])
    for labels in (dbscan_space(hx, eps=0.2), hdbscan_space(hx)):
        assert_valid(labels, len(hx))
        assert same_partition(labels[: len(h)], truth)
        assert len({*labels[-2:].tolist()}) == 2
        assert not np.isin(labels[-2:], labels[: len(h)]).any()
    # min_samples=1 on DBSCAN: same, outliers are clusters of one
    assert same_partition(dbscan_space(hx, eps=0.2, min_samples=1), dbscan_space(hx, eps=0.2))


def test_hdbscan_too_few_points_all_singletons():
    h = np.zeros((2, D), np.float32)
    assert hdbscan_space(h, min_cluster_size=3).tolist() == [0, 1]
    assert dbscan_space(np.zeros((0, D), np.float32), eps=0.1).shape == (0,)


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_order_invariance(name):
    h, _ = blobs(n_blobs=10, seed=1)
    perm = np.random.default_rng(3).permutation(len(h))
    if name == "edges":  # permute the same edge set
        s, r = knn_edges(h)
        inv = np.argsort(perm)
        a = edge_components(h, s, r, cut=0.2)
        b = edge_components(h[perm], inv[s], inv[r], cut=0.2)
    else:
        a = CLUSTERERS[name](h)
        b = CLUSTERERS[name](h[perm])
    assert same_partition(a[perm], b)


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_padding_invariance(name):
    h, truth = blobs(n_blobs=10, seed=2)
    n, pad = len(h), 13
    # padding rows sit inside the real points' region: without the mask they would join
    hp = np.concatenate([h, np.repeat(h[:1], pad, 0)])
    mask = np.arange(n + pad) < n
    if name == "edges":
        s, r = knn_edges(h)
        # extra short edges touching padding (padding-real, padding-padding) must be dropped
        ps = np.concatenate([s, n + np.arange(pad), n + np.arange(pad - 1)])
        pr = np.concatenate([r, np.zeros(pad, np.int64), n + 1 + np.arange(pad - 1)])
        a = edge_components(h, s, r, cut=0.2)
        b = edge_components(hp, ps, pr, cut=0.2, mask=mask)
    else:
        a = CLUSTERERS[name](h)
        b = CLUSTERERS[name](hp, mask=mask)
    assert_valid(b, n + pad)
    assert np.array_equal(b[:n], a)
    assert same_partition(a, truth)
    assert np.array_equal(b[n:], a.max() + 1 + np.arange(pad))


def test_tune_cut_picks_the_separating_cut():
    events = []
    for seed in range(2):
        h, truth = blobs(n_blobs=12, seed=seed)
        hit_id = np.arange(1, len(h) + 1) * 10 + seed
        truth_df = pd.DataFrame(
            {"hit_id": hit_id, "particle_id": truth + 1, "weight": np.full(len(h), 1.0 / len(h))}
        )
        s, r = knn_edges(h, k=10)  # k > blob size: edges between blobs too
        events.append((h, hit_id, truth_df, {"senders": s, "receivers": r}))
    grid = [0.0, 0.2, 100.0]
    best, table = tune_cut(edge_components, events, grid)
    assert best == 0.2
    assert list(table.columns) == ["cut", "score", "std", "seconds", "event_0", "event_1"]
    np.testing.assert_allclose(table["score"], [0.0, 1.0, 0.0])  # singletons, exact, merged
    # eps for dbscan (no per-event arguments) and fixed keyword arguments
    best, table = tune_cut(dbscan_space, [(*e[:3], None) for e in events], grid, min_samples=1)
    assert best == 0.2 and "eps" in table.columns
    np.testing.assert_allclose(table["score"], [0.0, 1.0, 0.0])
    best, _ = tune_cut(knn_components, [(*e[:3], {}) for e in events], grid[:2], k=6)
    assert best == 0.2
    # an explicit parameter name (HDBSCAN has no radius)
    best, table = tune_cut(
        hdbscan_space, [(*e[:3], None) for e in events], [3, 50], "min_cluster_size"
    )
    assert best == 3 and table["score"].iloc[0] == 1.0
    with pytest.raises(ValueError, match="at least one"):
        tune_cut(edge_components, [], grid)
    with pytest.raises(ValueError, match="hit ids"):
        tune_cut(edge_components, [(events[0][0], events[0][1][:-1], *events[0][2:])], grid)
