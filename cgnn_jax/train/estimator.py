"""A scikit-learn-style estimator: learned hierarchical clustering of any labelled point clouds.

:class:`ClusteringGNN` chains the library's learned stages on a generic point cloud
``x [n, d]`` and trains them end to end:

1. a per-point MLP embedding (:class:`~cgnn_jax.models.embedding.HitEmbedding`) of the
   standardised features ``[n, d] -> [n, embed_dim]``;
2. a kNN graph built in the input space (kd-tree, :func:`~cgnn_jax.graph.neighbors.neighbor_graph`,
   on the host, once per cloud: every point receives messages from its ``k`` nearest others);
3. the edge-weighted GNN (:class:`~cgnn_jax.models.gnn.EdgeWeightedGNN`) on
   ``[standardised x, embedding]`` -> cluster space ``h [n, embed_dim]`` (a residual correction of
   the embedding);
4. the Split and Stop modules (:mod:`cgnn_jax.models.split_stop`; by default the Split starts
   from each cluster's principal axis in ``h``) in the unrolled divisive recursion
   (:func:`~cgnn_jax.cluster.recursion.unrolled_clustering`).

Training loss per cloud: :func:`~cgnn_jax.cluster.objective.clustering_loss` (split entropy + stop
BCE over a full training tree) ``+ hinge_weight *`` the hinge embedding loss on the squared
``h``-distances of the graph edges and of ``n_random_pairs`` random pairs (drawn in the train step
from its ``rng``: the graph's edges are mostly within a cluster, the random pairs give the
negatives between far-apart clusters); a pair is positive when both points carry the same
non-noise label.

Static shapes: each cloud is padded to a node budget from
:func:`~cgnn_jax.utils.padding.bucket_size` (powers of two, at least 64: few compilations) and to
``k x`` that many edges, with node and edge masks; clouds of one budget are stacked into
batches, so a fit compiles the train step once per budget present. Padding changes no result.
Training runs on the library's one loop (:mod:`cgnn_jax.train.loop`): a ``TrainState``, the
jitted step ``(state, batch, rng) -> (state, metrics)`` of :func:`batch_loss`, cached per
configuration (a second estimator with the same settings reuses it), and ``fit``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from cgnn_jax.cluster.objective import clustering_loss
from cgnn_jax.cluster.recursion import unrolled_clustering
from cgnn_jax.cluster.targets import dense_particle_labels
from cgnn_jax.cluster.tree import ClusterTree, build_tree
from cgnn_jax.graph.batch import padded_graph
from cgnn_jax.graph.neighbors import neighbor_graph
from cgnn_jax.models.embedding import HitEmbedding
from cgnn_jax.models.gnn import EdgeWeightedGNN
from cgnn_jax.models.split_stop import Split, Stop
from cgnn_jax.train import loop
from cgnn_jax.train.losses import hinge_embedding_loss
from cgnn_jax.utils.padding import bucket_size

__all__ = ["ClusteringGNN", "adjusted_rand_index"]

_MIN_BUCKET = 64
_PER_OCTAVE = 1

Batch = dict[str, Any]


def node_budget(n: int) -> int:
    """Padded node count of a cloud of ``n`` points (one spare node for jraph's padding graph)."""
    return bucket_size(n + 1, per_octave=_PER_OCTAVE, minimum=_MIN_BUCKET)


def auto_depth(n: int) -> int:
    """Default number of recursion levels for clouds of up to ``n`` points: ``ceil(log2 n) + 4``."""
    return math.ceil(math.log2(max(int(n), 1))) + 4


def adjusted_rand_index(
    labels_true: np.ndarray, labels_pred: np.ndarray, noise: str = "ignore"
) -> float:
    """Adjusted Rand index of a predicted labelling ``[n]`` against the truth ``[n]``.

    Negative labels are noise. A predicted noise point is always a cluster of its own (a
    clusterer is not rewarded for lumping points into one "noise" cluster). True noise points:

    * ``noise="ignore"`` (default): left out, as TrackML's score gives noise hits weight 0 (and
      :func:`~cgnn_jax.cluster.objective.clustering_loss` does not ask for them to be isolated);
    * ``noise="singletons"``: each is a true cluster of its own (so they must be isolated too).
    """
    t, p = np.asarray(labels_true).copy(), np.asarray(labels_pred).copy()
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"labellings of shapes {t.shape} and {p.shape}; need equal [n]")
    if noise not in ("ignore", "singletons"):
        raise ValueError(f"noise must be 'ignore' or 'singletons', got {noise!r}")
    if noise == "ignore":
        keep = t >= 0
        t, p = t[keep], p[keep]
    for a in (t, p):
        neg = a < 0
        a[neg] = a.max(initial=0) + 1 + np.arange(neg.sum())
    if len(t) == 0:
        return 1.0
    return float(adjusted_rand_score(t, p))


# --------------------------------------------------------------------------- functional core


@dataclasses.dataclass(frozen=True)
class _Arch:
    """The network's hashable architecture (a static argument under jit)."""

    embed_hidden: tuple[int, ...]
    embed_dim: int
    gnn_layers: int
    gnn_hidden: int
    split_hidden: tuple[int, ...]
    stop_hidden: tuple[int, ...]
    split_prior: bool = True

    def modules(self) -> tuple[HitEmbedding, EdgeWeightedGNN, Split, Stop]:
        return (
            HitEmbedding(self.embed_hidden, self.embed_dim),
            EdgeWeightedGNN(
                num_layers=self.gnn_layers,
                hidden=self.gnn_hidden,
                out_dim=self.embed_dim,
                degree_norm=True,
                residual_dim=self.embed_dim,
            ),
            Split(self.split_hidden, prior_dims=self.embed_dim if self.split_prior else 0),
            Stop(self.stop_hidden),
        )


@dataclasses.dataclass(frozen=True)
class _Train:
    """Hashable loss settings of the train step (the learning rate and step count live in the
    optimiser state, so fits of different lengths share one compiled step)."""

    max_depth: int
    min_size: int
    hinge_weight: float
    stop_weight: float
    n_random_pairs: int = 256


def _graph(b: Batch, nodes: jnp.ndarray) -> jraph.GraphsTuple:
    n = jnp.asarray([nodes.shape[0]], jnp.int32)
    e = jnp.asarray([b["senders"].shape[0]], jnp.int32)
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=b["senders"],
        receivers=b["receivers"],
        n_node=n,
        n_edge=e,
        globals=None,
    )


def init_params(arch: _Arch, n_features: int, key: jax.Array) -> dict[str, Any]:
    """Parameters ``{"embed", "gnn", "split", "stop"}`` of the four modules (shape-independent)."""
    emb, gnn, split, stop = arch.modules()
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = 4
    x = jnp.zeros((n, n_features), jnp.float32)
    nodes = jnp.zeros((n, n_features + arch.embed_dim), jnp.float32)
    idx = jnp.arange(n, dtype=jnp.int32)
    b = {"senders": idx, "receivers": idx[::-1]}
    mask = jnp.ones(n, bool)
    h = jnp.zeros((n, arch.embed_dim), jnp.float32)
    return {
        "embed": emb.init(k1, x),
        "gnn": gnn.init(k2, _graph(b, nodes), mask, mask),
        "split": split.init(k3, h, idx, mask, n),
        "stop": stop.init(k4, h, idx, mask, n),
    }


def embed(arch: _Arch, params: dict[str, Any], b: Batch) -> jnp.ndarray:
    """Cluster-space coordinates ``h [N, embed_dim]`` of one padded cloud (0 on padding).

    ``b``: ``nodes [N, d]`` standardised features, ``senders/receivers [E]``, ``node_mask [N]``,
    ``edge_mask [E]``.
    """
    emb, gnn, _, _ = arch.modules()
    keep = b["node_mask"][:, None]
    x = jnp.where(keep, b["nodes"], 0.0)
    e = jnp.where(keep, emb.apply(params["embed"], x), 0.0)
    nodes = jnp.concatenate([x, e], -1)
    return gnn.apply(params["gnn"], _graph(b, nodes), b["edge_mask"], b["node_mask"])


def _segment_fns(arch: _Arch, params: dict[str, Any]):
    _, _, split, stop = arch.modules()

    def split_fn(h, seg, mask, n):
        return split.apply(params["split"], h, seg, mask, n)

    def stop_fn(h, seg, mask, n):
        return stop.apply(params["stop"], h, seg, mask, n)

    return split_fn, stop_fn


def cloud_loss(
    arch: _Arch, tr: _Train, params: dict[str, Any], b: Batch, rng: jax.Array
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """End-to-end loss of one padded cloud (``b`` as in :func:`embed`, plus ``label [N]`` int32
    dense cluster index, 0 = noise or padding) -> ``(loss, metrics)``."""
    mask = b["node_mask"]
    label = b["label"]
    h = embed(arch, params, b)
    split_fn, stop_fn = _segment_fns(arch, params)
    l_clu, metrics = clustering_loss(
        split_fn, stop_fn, h, mask, label, tr.max_depth, tr.min_size, tr.stop_weight
    )
    # hinge on the graph edges and on random pairs of real points (indices < n_real: padding last)
    n_real = jnp.maximum(jnp.sum(mask.astype(jnp.int32)), 1)
    k1, k2 = jax.random.split(rng)
    ri = jax.random.randint(k1, (tr.n_random_pairs,), 0, n_real)
    rj = jax.random.randint(k2, (tr.n_random_pairs,), 0, n_real)
    s = jnp.concatenate([b["senders"], ri])
    r = jnp.concatenate([b["receivers"], rj])
    pair_mask = jnp.concatenate([b["edge_mask"], ri != rj])
    y = (label[s] == label[r]) & (label[s] > 0)
    d2 = jnp.sum((h[s] - h[r]) ** 2, -1)
    l_hinge = hinge_embedding_loss(d2, y, pair_mask)
    metrics = {**metrics, "clustering_loss": l_clu, "hinge_loss": l_hinge}
    return l_clu + tr.hinge_weight * l_hinge, metrics


def batch_loss(arch: _Arch, tr: _Train):
    """``(params, batch, rng) -> (loss, metrics)``: the mean :func:`cloud_loss` of a stacked
    batch ``[B, ...]`` of padded clouds, for :func:`cgnn_jax.train.loop.make_train_step`."""

    def loss_fn(params, batch, rng):
        rngs = jax.random.split(rng, batch["label"].shape[0])
        losses, metrics = jax.vmap(lambda b, k: cloud_loss(arch, tr, params, b, k))(batch, rngs)
        return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)

    return loss_fn


def estimator_optimizer(learning_rate: float = 1.0, steps: int = 1) -> optax.GradientTransformation:
    """Adam on a learning rate cosine-decayed to 5 % over ``steps``, gradients clipped to global
    norm 1 (:func:`cgnn_jax.train.loop.make_optimizer`: the rate and length are optimiser state)."""
    return loop.make_optimizer(learning_rate, steps, clip_norm=1.0, final_fraction=0.05)


@functools.lru_cache(maxsize=32)
def estimator_train_step(arch: _Arch, tr: _Train):
    """``(tx, step)``: the update rule and the jitted step ``(state, batch, rng) -> (state,
    metrics)``, cached per configuration (a second estimator with the same settings reuses the
    compiled step: the learning rate and step count live in the optimiser state)."""
    tx = estimator_optimizer()
    return tx, loop.make_train_step(batch_loss(arch, tr), tx)


@functools.partial(jax.jit, static_argnames=("arch", "max_depth", "min_size"))
def cluster_padded(
    params: dict[str, Any], b: Batch, *, arch: _Arch, max_depth: int, min_size: int
) -> dict[str, jnp.ndarray]:
    """The :func:`~cgnn_jax.cluster.recursion.unrolled_clustering` output of one padded cloud."""
    h = embed(arch, params, b)
    split_fn, stop_fn = _segment_fns(arch, params)
    return unrolled_clustering(split_fn, stop_fn, h, b["node_mask"], max_depth, min_size, 0.5)


# --------------------------------------------------------------------------- the estimator


class ClusteringGNN(BaseEstimator):
    """Learned hierarchical clustering of labelled point clouds (scikit-learn style).

    Learns, from point clouds with known clusters, to cluster new clouds: embedding MLP -> kNN
    graph in the input space -> edge-weighted GNN -> Split/Stop divisive recursion, trained end
    to end (see :mod:`cgnn_jax.train.estimator`). The number of clusters is not given: the Stop module
    decides where to stop splitting.

    Features are standardised with the training clouds' per-feature mean and one isotropic scale
    (the RMS deviation), which keeps the clouds' geometry: give features that share a unit
    (coordinates), or rescale them first.

    Args:
      embed_hidden: hidden widths of the embedding MLP.
      embed_dim: embedding and cluster-space dimension.
      gnn_layers: graph convolutions.
      gnn_hidden: node-state width of the GNN.
      k: neighbours per point of the input graph.
      split_hidden, stop_hidden: hidden widths of the Split and Stop networks.
      split_prior: the Split starts from the principal axis of each cluster in the cluster space
        (``Split(prior_dims=embed_dim)``: principal-direction divisive partitioning plus learned
        corrections); False: the plain MLP Split.
      max_depth: recursion levels; None: ``ceil(log2(max n)) + 4`` over the training clouds (and,
        at predict time, over the cloud if it is larger).
      min_size: clusters smaller than this are never split.
      steps: optimiser steps.
      learning_rate: peak Adam learning rate (cosine decay over ``steps``).
      hinge_weight: weight of the hinge embedding loss.
      stop_weight: weight of the stop loss.
      batch_size: clouds per step (drawn from one padding bucket).
      seed: seeds the initialisation and the batch sampling (same seed, same data -> same
        parameters).
      verbose: show a tqdm progress bar during ``fit``.

    Attributes (after ``fit``):
      params_: the parameter pytree ``{"embed", "gnn", "split", "stop"}``.
      n_features_in_: ``d``.
      max_depth_: the training depth.
      feature_mean_ ``[d]``, feature_scale_: the standardisation.
      loss_curve_: ``[steps]`` training loss per step.
      tree_: the :class:`~cgnn_jax.cluster.tree.ClusterTree` of the last ``predict`` (its
        ``hit_id`` are the row numbers of the cloud).
    """

    def __init__(
        self,
        embed_hidden: Sequence[int] = (64, 64),
        embed_dim: int = 8,
        gnn_layers: int = 2,
        gnn_hidden: int = 32,
        k: int = 8,
        split_hidden: Sequence[int] = (32, 32),
        stop_hidden: Sequence[int] = (32, 32),
        split_prior: bool = True,
        max_depth: int | None = None,
        min_size: int = 3,
        steps: int = 500,
        learning_rate: float = 3e-3,
        hinge_weight: float = 1.0,
        stop_weight: float = 1.0,
        batch_size: int = 4,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.embed_hidden = embed_hidden
        self.embed_dim = embed_dim
        self.gnn_layers = gnn_layers
        self.gnn_hidden = gnn_hidden
        self.k = k
        self.split_hidden = split_hidden
        self.stop_hidden = stop_hidden
        self.split_prior = split_prior
        self.max_depth = max_depth
        self.min_size = min_size
        self.steps = steps
        self.learning_rate = learning_rate
        self.hinge_weight = hinge_weight
        self.stop_weight = stop_weight
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose

    # ----------------------------------------------------------------- validation

    def _check_hyperparameters(self) -> None:
        positive = {
            "embed_dim": self.embed_dim,
            "gnn_hidden": self.gnn_hidden,
            "k": self.k,
            "batch_size": self.batch_size,
        }
        for name, v in positive.items():
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name, v in {"gnn_layers": self.gnn_layers, "steps": self.steps}.items():
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if int(self.min_size) != self.min_size or self.min_size < 1:
            raise ValueError(f"min_size must be a positive integer, got {self.min_size!r}")
        if self.max_depth is not None and (
            int(self.max_depth) != self.max_depth or self.max_depth < 1
        ):
            raise ValueError(
                f"max_depth must be None or a positive integer, got {self.max_depth!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        for name, v in {"hinge_weight": self.hinge_weight, "stop_weight": self.stop_weight}.items():
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        for name, v in {
            "embed_hidden": self.embed_hidden,
            "split_hidden": self.split_hidden,
            "stop_hidden": self.stop_hidden,
        }.items():
            if not isinstance(v, Sequence) or any(
                isinstance(w, bool) or int(w) != w or w < 1 for w in v
            ):
                raise ValueError(f"{name} must be a sequence of positive integers, got {v!r}")

    def _check_cloud(self, x: Any, what: str, n_features: int | None) -> np.ndarray:
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what}: not a numeric array ({e})") from e
        if a.ndim != 2:
            raise ValueError(f"{what}: expected a 2-D array [n, d], got shape {a.shape}")
        if len(a) == 0:
            raise ValueError(f"{what}: empty point cloud (0 points)")
        if a.shape[1] == 0:
            raise ValueError(f"{what}: points have 0 features")
        if n_features is not None and a.shape[1] != n_features:
            source = (
                "the estimator was fitted on"
                if hasattr(self, "n_features_in_")
                else "point_clouds[0] has"
            )
            raise ValueError(f"{what}: {a.shape[1]} features, but {source} {n_features}")
        if not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a).all(1))
            raise ValueError(
                f"{what}: NaN or inf in {len(bad)} point(s) (first rows {bad[:5].tolist()})"
            )
        return a

    def _check_labels(self, y: Any, n: int, what: str) -> np.ndarray:
        a = np.asarray(y)
        if a.ndim != 1:
            raise ValueError(f"{what}: expected a 1-D array [n], got shape {a.shape}")
        if len(a) != n:
            raise ValueError(f"{what}: {len(a)} labels for {n} points")
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"{what}: labels must be integers, got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.floating) and not (
            np.isfinite(a).all() and (a == np.round(a)).all()
        ):
            raise ValueError(
                f"{what}: labels must be integers (-1 = noise), got non-integer values"
            )
        return a.astype(np.int64)

    def _check_data(
        self, point_clouds: Any, labels: Any
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if isinstance(point_clouds, np.ndarray) and point_clouds.ndim == 2:
            raise ValueError(
                "point_clouds: expected a list of [n_i, d] clouds, got one 2-D array; "
                "wrap a single cloud as [x]"
            )
        clouds, labs = list(point_clouds), list(labels)
        if not clouds:
            raise ValueError("point_clouds: empty list (need at least one cloud)")
        if len(labs) != len(clouds):
            raise ValueError(f"{len(clouds)} point clouds but {len(labs)} label arrays")
        d = getattr(self, "n_features_in_", None)
        out_x, out_y = [], []
        for i, (x, y) in enumerate(zip(clouds, labs, strict=True)):
            a = self._check_cloud(x, f"point_clouds[{i}]", d)
            d = a.shape[1] if d is None else d
            out_x.append(a)
            out_y.append(self._check_labels(y, len(a), f"labels[{i}]"))
        return out_x, out_y

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                "this ClusteringGNN is not fitted yet: call fit(point_clouds, labels) first"
            )

    # ----------------------------------------------------------------- data

    def _arch(self) -> _Arch:
        return _Arch(
            tuple(int(w) for w in self.embed_hidden),
            int(self.embed_dim),
            int(self.gnn_layers),
            int(self.gnn_hidden),
            tuple(int(w) for w in self.split_hidden),
            tuple(int(w) for w in self.stop_hidden),
            bool(self.split_prior),
        )

    def _train_config(self) -> _Train:
        return _Train(
            self.max_depth_, int(self.min_size), float(self.hinge_weight), float(self.stop_weight)
        )

    def _padded(
        self, x: np.ndarray, label: np.ndarray | None = None, n_nodes: int | None = None
    ) -> Batch:
        """One standardised, padded cloud: the arrays of :func:`cloud_loss` (numpy).

        ``x [n, d]`` raw features, ``label [n]`` (negative: noise) or None; ``n_nodes``: the node
        budget (default :func:`node_budget`; must exceed ``n``).
        """
        n = len(x)
        z = ((x - self.feature_mean_) / self.feature_scale_).astype(np.float32)
        nb = node_budget(n) if n_nodes is None else int(n_nodes)
        if nb <= n:
            raise ValueError(f"node budget {nb} must exceed the {n} points")
        # every point receives messages from its k nearest others (edges neighbour -> point)
        src, nbr = neighbor_graph(z, mode="knn", k=int(self.k), symmetric=False, workers=1)
        pg = padded_graph(z, nbr, src, budget=(nb, int(self.k) * nb))
        b = {
            "nodes": np.asarray(pg.graph.nodes, np.float32),
            "senders": np.asarray(pg.graph.senders, np.int32),
            "receivers": np.asarray(pg.graph.receivers, np.int32),
            "node_mask": np.asarray(pg.node_mask, bool),
            "edge_mask": np.asarray(pg.edge_mask, bool),
        }
        if label is not None:
            pid = np.zeros(nb, np.int64)
            pid[:n] = np.where(label >= 0, label + 1, 0)
            b["label"] = dense_particle_labels(pid, b["node_mask"])
        return b

    # ----------------------------------------------------------------- API

    def fit(
        self, point_clouds: Sequence[np.ndarray], labels: Sequence[np.ndarray]
    ) -> ClusteringGNN:
        """Train on labelled clouds.

        Args:
          point_clouds: list of ``[n_i, d]`` arrays (same ``d``).
          labels: list of ``[n_i]`` integer cluster labels; negative (``-1``) = noise.
        Returns:
          ``self``.
        """
        self._check_hyperparameters()
        for attr in ("params_", "n_features_in_", "tree_"):
            if hasattr(self, attr):
                delattr(self, attr)
        clouds, labs = self._check_data(point_clouds, labels)
        allx = np.concatenate(clouds)
        self.n_features_in_ = allx.shape[1]
        self.feature_mean_ = allx.mean(0)
        scale = float(np.sqrt(np.mean((allx - self.feature_mean_) ** 2)))
        self.feature_scale_ = scale if scale > 0 else 1.0
        n_max = max(len(x) for x in clouds)
        self.max_depth_ = int(self.max_depth) if self.max_depth is not None else auto_depth(n_max)

        data = [self._padded(x, y) for x, y in zip(clouds, labs, strict=True)]
        buckets: dict[int, list[int]] = {}
        for i, b in enumerate(data):
            buckets.setdefault(len(b["nodes"]), []).append(i)
        keys = sorted(buckets)
        prob = np.array([len(buckets[k]) for k in keys], np.float64)
        prob /= prob.sum()

        arch = self._arch()
        key = jax.random.PRNGKey(int(self.seed))
        key, init_key = jax.random.split(key)
        params = init_params(arch, data[0]["nodes"].shape[1], init_key)
        rule, step_fn = estimator_train_step(arch, self._train_config())
        state = loop.TrainState.new(params, rule).replace(
            opt_state=estimator_optimizer(float(self.learning_rate), int(self.steps)).init(params)
        )
        seed, bs = int(self.seed), int(self.batch_size)

        def batch_at(step: int) -> Batch:
            rng = np.random.default_rng([seed, step])
            members = buckets[keys[rng.choice(len(keys), p=prob)]]
            pick = rng.choice(members, size=bs, replace=len(members) < bs)
            return jax.tree.map(lambda *a: np.stack(a), *[data[i] for i in pick])

        metrics: list = []
        state = loop.fit(
            state,
            step_fn,
            batch_at,
            num_steps=int(self.steps),
            workdir=None,
            rng=key,
            config={},
            log_every=10 if self.verbose else max(int(self.steps), 1),  # reading metrics syncs
            desc="ClusteringGNN.fit",
            log=lambda *_: None,
            progress=bool(self.verbose),
            step_metrics=metrics,
        )
        losses = [m["loss"] for m in metrics]
        self.loss_curve_ = np.asarray(jax.device_get(losses), np.float64).reshape(-1)
        self.params_ = jax.device_get(state.params)
        return self

    def _cluster(
        self, point_cloud: Any, n_nodes: int | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(labels [n], recursion output)`` of one cloud padded to ``n_nodes`` (default bucket)."""
        self._check_fitted()
        x = self._check_cloud(point_cloud, "point_cloud", self.n_features_in_)
        n = len(x)
        depth = (
            self.max_depth_ if self.max_depth is not None else max(self.max_depth_, auto_depth(n))
        )
        b = self._padded(x, None, n_nodes)
        out = cluster_padded(
            self.params_, b, arch=self._arch(), max_depth=depth, min_size=int(self.min_size)
        )
        out = {k: np.asarray(v) for k, v in out.items()}
        _, lab = np.unique(out["cluster"][:n], return_inverse=True)
        return lab.reshape(-1).astype(np.int64), out

    def predict(self, point_cloud: np.ndarray) -> np.ndarray:
        """Cluster one cloud ``[n, d]`` -> labels ``[n]`` in ``0..K-1`` (numbered by first point).

        Also sets ``tree_``, the cloud's :class:`~cgnn_jax.cluster.tree.ClusterTree`.
        """
        labels, out = self._cluster(point_cloud)
        self.tree_: ClusterTree = build_tree(out, np.arange(len(labels)))
        return labels

    def fit_predict(
        self, point_clouds: Sequence[np.ndarray], labels: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """``fit`` on the clouds, then ``predict`` each: a list of ``[n_i]`` labels."""
        clouds = point_clouds if isinstance(point_clouds, np.ndarray) else list(point_clouds)
        self.fit(clouds, labels)
        return [self.predict(x) for x in clouds]

    def score(self, point_clouds: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
        """Mean :func:`adjusted_rand_index` over labelled clouds (true noise points left out)."""
        self._check_fitted()
        clouds, labs = self._check_data(point_clouds, labels)
        return float(
            np.mean(
                [adjusted_rand_index(y, self.predict(x)) for x, y in zip(clouds, labs, strict=True)]
            )
        )
