"""The scikit-learn-style ClusteringGNN on toy clouds with a variable number of clusters.

Kept small (clouds of < 64 points: one padding bucket, one compilation of each jitted function
shared by every test) so the whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import cgnn_jax
from cgnn_jax.cluster.tree import ClusterTree
from cgnn_jax.sim.toy_clouds import make_cloud, make_clouds
from cgnn_jax.train.estimator import (
    ClusteringGNN,
    adjusted_rand_index,
    cloud_loss,
    node_budget,
)
from tests.helpers import assert_reordered_close

GEN = {"n_clusters": (2, 5), "cluster_size": (6, 10)}  # n <= 53: node budget 64
SMALL = {"embed_hidden": (32, 32), "gnn_hidden": 32, "split_hidden": (32,), "stop_hidden": (32,)}


@pytest.fixture(scope="module")
def data():
    xtr, ytr = make_clouds(60, seed=0, **GEN)
    xte, yte = make_clouds(40, seed=1, **GEN)
    assert max(len(x) for x in xtr + xte) < 64
    return xtr, ytr, xte, yte


@pytest.fixture(scope="module")
def fitted(data):
    xtr, ytr, _, _ = data
    return ClusteringGNN(**SMALL, steps=400, batch_size=4, seed=0).fit(xtr, ytr)


def test_make_clouds_shapes_labels_and_seed():
    xs, ys = make_clouds(5, seed=3, dim=3, n_clusters=(2, 30))
    assert len(xs) == len(ys) == 5
    for x, y in zip(xs, ys, strict=True):
        assert x.ndim == 2 and x.shape[1] == 3 and y.shape == (len(x),)
        k = y.max() + 1
        assert 2 <= k <= 30
        assert set(np.unique(y[y >= 0])) == set(range(k))  # every cluster has points
        assert 0 < (y < 0).sum() < 0.1 * len(y)  # a few noise points
        assert np.isfinite(x).all()
    xs2, ys2 = make_clouds(5, seed=3, dim=3, n_clusters=(2, 30))
    for a, b in zip(xs + ys, xs2 + ys2, strict=True):
        np.testing.assert_array_equal(a, b)
    x, y = make_cloud(0, shapes=("arc",), noise=0.0, n_clusters=(4, 4))
    assert y.min() == 0 and y.max() == 3
    with pytest.raises(ValueError, match="shapes"):
        make_cloud(0, shapes=("cube",))


def test_adjusted_rand_index_noise_conventions():
    t = np.array([0, 0, 1, 1, -1, -1])
    assert adjusted_rand_index(t, np.array([5, 5, 7, 7, 9, 9])) == 1.0  # true noise ignored
    assert adjusted_rand_index(t, np.array([5, 5, 7, 7, 9, 9]), "singletons") < 1.0
    assert adjusted_rand_index(t, np.array([5, 5, 7, 7, 8, 9]), "singletons") == 1.0
    # predicted noise points are singletons, never one shared cluster
    assert adjusted_rand_index(np.array([0, 0, 1, 1]), np.array([-1, -1, 1, 1])) < 1.0
    with pytest.raises(ValueError, match="shapes"):
        adjusted_rand_index(t, t[:3])


def test_trained_beats_untrained_and_one_cluster(fitted, data):
    xtr, ytr, xte, yte = data
    trained = fitted.score(xte, yte)
    untrained = ClusteringGNN(**SMALL, steps=0, seed=0).fit(xtr, ytr).score(xte, yte)
    one_cluster = np.mean([adjusted_rand_index(y, np.zeros_like(y)) for y in yte])
    print(
        f"held-out ARI: trained {trained:.3f}, untrained {untrained:.3f}, one cluster {one_cluster:.3f}"
    )
    assert np.isfinite(fitted.loss_curve_).all()
    assert fitted.loss_curve_[-50:].mean() < fitted.loss_curve_[:10].mean()
    assert trained > 0.6, trained
    assert trained > untrained + 0.25, (trained, untrained)
    assert trained > one_cluster + 0.5, (trained, one_cluster)


def test_predict_labels_and_tree(fitted, data):
    _, _, xte, _ = data
    x = xte[0]
    labels = fitted.predict(x)
    assert labels.shape == (len(x),) and np.issubdtype(labels.dtype, np.integer)
    k = labels.max() + 1
    assert labels.min() == 0 and set(np.unique(labels)) == set(range(k))
    tree = fitted.tree_
    assert isinstance(tree, ClusterTree)
    np.testing.assert_array_equal(tree.hit_id, np.arange(len(x)))
    assert len(np.unique(tree.labels_at(0))) == 1  # the root holds every point
    # the leaves are the predicted clusters (same partition, other ids)
    pairs = set(zip(tree.leaves.tolist(), labels.tolist(), strict=True))
    assert len(pairs) == len(np.unique(tree.leaves)) == k


def test_fit_is_reproducible_with_seed(data):
    xtr, ytr, _, _ = data
    kw = {**SMALL, "steps": 5, "batch_size": 4}
    a = ClusteringGNN(**kw, seed=7).fit(xtr, ytr)
    b = ClusteringGNN(**kw, seed=7).fit(xtr, ytr)
    c = ClusteringGNN(**kw, seed=8).fit(xtr, ytr)
    for pa, pb in zip(jax.tree.leaves(a.params_), jax.tree.leaves(b.params_), strict=True):
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    assert any(
        not np.array_equal(pa, pc)
        for pa, pc in zip(jax.tree.leaves(a.params_), jax.tree.leaves(c.params_), strict=True)
    )
    labels = a.fit_predict(xtr[:3], ytr[:3])
    assert len(labels) == 3 and all(len(p) == len(x) for p, x in zip(labels, xtr, strict=False))


def test_padding_changes_nothing(fitted, data):
    xtr, ytr, _, _ = data
    x, y = xtr[0], ytr[0]
    n = len(x)
    small, big = node_budget(n), node_budget(n) + 37
    lab_a, out_a = fitted._cluster(x)
    lab_b, out_b = fitted._cluster(x, n_nodes=big)
    np.testing.assert_array_equal(lab_a, lab_b)
    np.testing.assert_array_equal(out_a["cluster"][:n], out_b["cluster"][:n])
    np.testing.assert_array_equal(out_a["segment"][:, :n], out_b["segment"][:, :n])
    levels = out_a["p_right"].shape[0]
    assert_reordered_close(out_b["p_right"][:, :n], out_a["p_right"][:, :n], n, depth=levels)

    # the training loss and its gradient do not see the padding either
    arch, tr = fitted._arch(), fitted._train_config()

    @jax.jit
    def loss_grad(params, b, rng):
        return jax.value_and_grad(lambda p: cloud_loss(arch, tr, p, b, rng)[0])(params)

    rng = jax.random.PRNGKey(3)
    la, ga = loss_grad(fitted.params_, fitted._padded(x, y, small), rng)
    lb, gb = loss_grad(fitted.params_, fitted._padded(x, y, big), rng)
    assert_reordered_close(lb, la, n, depth=levels)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        assert_reordered_close(b, a, n, depth=levels)
    assert float(la) > 0 and all(jnp.isfinite(g).all() for g in jax.tree.leaves(ga))


def test_clear_errors(fitted, data):
    xtr, ytr, _, _ = data
    with pytest.raises(NotFittedError, match="not fitted"):
        ClusteringGNN().predict(xtr[0])
    with pytest.raises(ValueError, match="3 point clouds but 2 label arrays"):
        ClusteringGNN().fit(xtr[:3], ytr[:2])
    with pytest.raises(ValueError, match=r"labels\[1\]: .* labels for .* points"):
        ClusteringGNN().fit(xtr[:2], [ytr[0], ytr[1][:-1]])
    bad = xtr[1].copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"point_clouds\[1\]: NaN or inf"):
        ClusteringGNN().fit([xtr[0], bad], ytr[:2])
    inf = xtr[0].copy()
    inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        fitted.predict(inf)
    with pytest.raises(ValueError, match="2-D"):
        fitted.predict(xtr[0][:, 0])
    with pytest.raises(ValueError, match="3 features, but the estimator was fitted on 2"):
        fitted.predict(np.zeros((5, 3)))
    with pytest.raises(
        ValueError, match=r"point_clouds\[1\]: 3 features, but point_clouds\[0\] has 2"
    ):
        ClusteringGNN().fit([xtr[0], np.zeros((5, 3))], [ytr[0], np.zeros(5, int)])
    with pytest.raises(ValueError, match="wrap a single cloud"):
        ClusteringGNN().fit(xtr[0], ytr[0])
    with pytest.raises(ValueError, match="empty"):
        ClusteringGNN().fit([], [])
    with pytest.raises(ValueError, match="integers"):
        ClusteringGNN().fit(xtr[:1], [ytr[0] + 0.5])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ClusteringGNN(k=0).fit(xtr[:1], ytr[:1])


def test_sklearn_conventions_and_export(fitted):
    assert cgnn_jax.ClusteringGNN is ClusteringGNN
    est = clone(fitted)
    assert est.get_params() == fitted.get_params()
    assert not hasattr(est, "params_")
    assert fitted.n_features_in_ == 2
    assert "ClusteringGNN(" in repr(fitted)
