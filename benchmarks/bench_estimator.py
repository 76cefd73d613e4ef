"""ClusteringGNN on toy clouds (variable number of clusters) vs DBSCAN and oracle KMeans.

Trains :class:`cgnn_jax.ClusteringGNN` on ``--train`` clouds of
:func:`cgnn_jax.sim.toy_clouds.make_clouds` and reports, on ``--test`` held-out clouds, the mean
adjusted Rand index (:func:`cgnn_jax.train.estimator.adjusted_rand_index`: true noise left out, and true
noise as singletons) next to

* DBSCAN (scikit-learn) with ``eps`` and ``min_samples`` tuned on the training clouds (grid
  search of the mean training ARI);
* KMeans given the true number of clusters of each cloud (an oracle the others do not get),

plus the fit time (compilation included) and the per-cloud predict time (median over the test
clouds, after one warm-up cloud per padding bucket, so without compilation). The estimator runs
with its defaults except ``steps``: 2000 here rather than 500, as the held-out ARI on this task
still climbs well past 500 steps.

    .venv/bin/python benchmarks/bench_estimator.py [--train 200 --test 50 --steps 2000 --dim 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import DBSCAN, KMeans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

from cgnn_jax.sim.toy_clouds import make_clouds
from cgnn_jax.train.estimator import ClusteringGNN, adjusted_rand_index, node_budget


def mean_ari(pred: list[np.ndarray], labels: list[np.ndarray], noise: str = "ignore") -> float:
    """Mean ARI over clouds (:func:`cgnn_jax.train.estimator.adjusted_rand_index`)."""
    return float(
        np.mean([adjusted_rand_index(y, p, noise) for y, p in zip(labels, pred, strict=True)])
    )


def both(pred: list[np.ndarray], labels: list[np.ndarray]) -> str:
    return f"{mean_ari(pred, labels):.3f} / {mean_ari(pred, labels, 'singletons'):.3f}"


def tune_dbscan(
    clouds: list[np.ndarray], labels: list[np.ndarray], n_tune: int = 60
) -> tuple[float, int, float]:
    """``(eps, min_samples, train ARI)`` maximising the mean ARI on (up to ``n_tune``) training clouds."""
    cl, lb = clouds[:n_tune], labels[:n_tune]
    best = (0.0, 0, -np.inf)
    for ms in (2, 3, 5, 8):
        for eps in np.geomspace(0.05, 2.0, 20):
            ari = mean_ari([DBSCAN(eps=eps, min_samples=ms).fit_predict(x) for x in cl], lb)
            if ari > best[2]:
                best = (float(eps), ms, ari)
    return best


def k_error(pred: list[np.ndarray], labels: list[np.ndarray], min_size: int = 3) -> float:
    """Mean ``|K_pred - K_true|``, counting predicted clusters of at least ``min_size`` points."""
    errs = []
    for p, y in zip(pred, labels, strict=True):
        cnt = np.bincount(p[p >= 0]) if (p >= 0).any() else np.zeros(0, int)
        errs.append(abs(int((cnt >= min_size).sum()) - (int(y.max()) + 1)))
    return float(np.mean(errs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--max-clusters", type=int, default=30)
    ap.add_argument("--cluster-size", type=int, nargs=2, default=(6, 16))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    gen = {
        "dim": args.dim,
        "n_clusters": (2, args.max_clusters),
        "cluster_size": tuple(args.cluster_size),
    }
    xtr, ytr = make_clouds(args.train, seed=args.seed, **gen)
    xte, yte = make_clouds(args.test, seed=args.seed + 1, **gen)
    sizes = [len(x) for x in xtr]
    print(f"# {machine()}")
    print(
        f"# toy clouds dim={args.dim}, 2..{args.max_clusters} clusters (blobs, arcs) of "
        f"{args.cluster_size[0]}..{args.cluster_size[1]} points + 5% noise; {args.train} train / "
        f"{args.test} held-out clouds, n = {min(sizes)}..{max(sizes)} (median {int(np.median(sizes))})"
    )
    print(
        "# ARI: mean adjusted Rand index per held-out cloud, true noise left out / true noise "
        "as singletons; |dK|: mean |#clusters of >= 3 points - true K|"
    )

    est = ClusteringGNN(
        steps=args.steps, batch_size=args.batch_size, seed=args.seed, verbose=args.verbose
    )
    t = time.perf_counter()
    est.fit(xtr, ytr)
    fit_s = time.perf_counter() - t
    seen: set[int] = set()
    for x in xte:  # warm-up: compile predict once per padding bucket
        if node_budget(len(x)) not in seen:
            seen.add(node_budget(len(x)))
            est.predict(x)
    pred, times = [], []
    for x in xte:
        t = time.perf_counter()
        pred.append(est.predict(x))
        times.append(time.perf_counter() - t)
    train_ari = est.score(xtr[: args.test], ytr[: args.test])

    t = time.perf_counter()
    eps, ms, db_train = tune_dbscan(xtr, ytr)
    tune_s = time.perf_counter() - t
    t = time.perf_counter()
    db_pred = [DBSCAN(eps=eps, min_samples=ms).fit_predict(x) for x in xte]
    db_s = (time.perf_counter() - t) / len(xte)
    t = time.perf_counter()
    km_pred = [
        KMeans(n_clusters=int(y.max()) + 1, n_init=4, random_state=0).fit_predict(x)
        for x, y in zip(xte, yte, strict=True)
    ]
    km_s = (time.perf_counter() - t) / len(xte)

    print(f"{'method':<26} {'held-out ARI':>14} {'|dK|':>6} {'predict/cloud':>14}  notes")
    print(
        f"{'ClusteringGNN':<26} {both(pred, yte):>14} {k_error(pred, yte):>6.2f} "
        f"{1e3 * statistics.median(times):>11.1f} ms  fit {fit_s:.1f} s ({args.steps} steps x "
        f"{args.batch_size} clouds, compilation included), train ARI {train_ari:.3f}"
    )
    print(
        f"{'DBSCAN (tuned eps)':<26} {both(db_pred, yte):>14} {k_error(db_pred, yte):>6.2f} "
        f"{1e3 * db_s:>11.1f} ms  eps={eps:.3f} min_samples={ms} (train ARI {db_train:.3f}, "
        f"grid search {tune_s:.1f} s)"
    )
    print(
        f"{'KMeans (true k: oracle)':<26} {both(km_pred, yte):>14} {k_error(km_pred, yte):>6.2f} "
        f"{1e3 * km_s:>11.1f} ms  given each cloud's true number of clusters"
    )


if __name__ == "__main__":
    main()
