"""The whole clustering GNN as one object: restore a checkpoint, reconstruct events, look inside.

    from cgnn_jax import Pipeline
    pipe = Pipeline.restore()                  # the pretrained default model shipped in the package
    track_id = pipe.reconstruct(event)         # [n_hits] int64, one track id per hit
    track_id, tree = pipe.reconstruct(event, return_tree=True)   # + the cluster tree
    parts = pipe.stage_outputs(event)          # every stage's output, for analysis in a notebook

Stages, on a whole event:

1. hit features -> embedding MLP -> kd-tree kNN graph in the embedding -> edge filter (stage 1);
2. the edge-weighted GNN on the refined graph, its input ``[hit features, input embedding]``
   (stage 2; the input embedding starts as the stage-1 embedding and is tuned end to end);
3. Split/Stop on ``h = [GNN output, hit features]`` (or the GNN output alone), the recursion
   unrolled level by level in one jit (stage 3); the leaves are the tracks;
4. with ``cluster.extend_iterations > 0``, the hits left in tracks of at most
   ``cluster.extend_free_max`` hits join the track whose helix road crosses them
   (:mod:`cgnn_jax.cluster.extend`; geometry, not learned; :meth:`Pipeline.extend`).

Parameters (``Pipeline.params``): ``embedding`` and ``filter`` (stage 1, build the graph),
``input_embedding`` and ``gnn`` (stage 2), ``split`` and ``stop`` (stage 3).

A pipeline may carry a **dense variant** (:attr:`Pipeline.dense`): stages 2-3 trained for events
of another density (e.g. full mu = 200 events, ten times the hits of a 10 %-track event) on the
same stage 1. :meth:`Pipeline.for_hits` picks it for events of at least ``dense_min_hits`` hits;
:meth:`Pipeline.reconstruct` and :meth:`Pipeline.stage_outputs` do so themselves. It is saved in
the same checkpoint (parameters under ``params["dense"]``, its config and what training chose under
the metadata's ``"dense"``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jraph
import ml_collections
import numpy as np

from cgnn_jax.cluster.components import edge_components
from cgnn_jax.cluster.extend import DEFAULTS as EXTEND_DEFAULTS
from cgnn_jax.cluster.extend import extend_tracks
from cgnn_jax.cluster.merge import layer_merge
from cgnn_jax.cluster.recursion import (
    atom_rows,
    group_representatives,
    rows_to_points,
    unrolled_clustering,
)
from cgnn_jax.cluster.tracks import dense_track_ids
from cgnn_jax.graph.batch import padded_graph
from cgnn_jax.inference.checkpoint import CheckpointError, restore_checkpoint, save_checkpoint
from cgnn_jax.inference.events import PreparedEvent, prepare_event
from cgnn_jax.inference.stage1 import Stage1
from cgnn_jax.inference.stage2 import input_threshold
from cgnn_jax.io.event import Event
from cgnn_jax.models import EdgeWeightedGNN, HitEmbedding, Split, Stop, create_model
from cgnn_jax.utils.jax_cache import cached_call
from cgnn_jax.utils.padding import bucket_size, pad_rows, padded_points
from cgnn_jax.utils.trees import same_leaves, shape_mismatch

PIPELINE_KIND = "pipeline"
PIPELINE_DIR = "pipeline"  # <workdir>/pipeline/checkpoints
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "default"
PARAM_GROUPS = ("embedding", "filter", "input_embedding", "gnn", "split", "stop")
STAGE1_GROUPS = ("embedding", "filter")  # shared by a pipeline and its dense variant
VARIANT_GROUPS = ("input_embedding", "gnn", "split", "stop")  # a dense variant's own
DENSE_KEY = "dense"
STAGE1_LEARNED = ("filter_threshold", "zone_map")  # what stage 1's training chose (shared too)


def cluster_features(gnn_out: jnp.ndarray, x: jnp.ndarray, inputs: str) -> jnp.ndarray:
    """``h [N, D]`` seen by Split/Stop: the GNN output, with the hit features if ``inputs`` says."""
    if inputs == "gnn":
        return gnn_out
    if inputs == "gnn+features":
        return jnp.concatenate([gnn_out, x], axis=-1)
    raise ValueError(f"config.cluster.inputs={inputs!r}; valid: 'gnn', 'gnn+features'")


def gnn_forward(
    emb_model,
    gnn_model: EdgeWeightedGNN,
    p_emb: Any,
    p_gnn: Any,
    graph,
    edge_mask,
    node_mask,
    return_weights: bool = False,
):
    """GNN output ``[N, out]`` of a padded graph whose nodes are the hit features ``[N, F]``;
    with ``return_weights``, also the last layer's edge weights ``a_ij [E]``."""
    x = graph.nodes
    e = emb_model.apply(p_emb, x) * node_mask[:, None]
    g = graph._replace(nodes=jnp.concatenate([x, e], axis=-1))
    if not return_weights:
        return gnn_model.apply(p_gnn, g, edge_mask, node_mask)
    out, weights = gnn_model.apply(p_gnn, g, edge_mask, node_mask, return_weights=True)
    return out, weights[-1]


MERGE_MODES = ("components", "layers")


def atom_mode(cluster_config) -> str | None:
    """How the graph-consistent Split's atoms are made: ``"components"`` (connected components
    of ``a_ij > cluster.component_cut``), ``"layers"`` (:func:`layer_merge` of the edges with
    ``a_ij > cluster.merge_threshold``), or None (no atoms: the thesis's Split)."""
    mode = str(cluster_config.get("merge", "components"))
    if mode not in MERGE_MODES:
        raise ValueError(f"config.cluster.merge={mode!r}; valid: {', '.join(MERGE_MODES)}")
    if mode == "components" and float(cluster_config.get("component_cut", 0.0)) <= 0:
        return None
    return mode


TREE_ROWS = ("points", "atoms")


def tree_rows(cluster_config) -> str:
    """What a row of the inference tree is (``cluster.tree_rows``): ``"points"`` (every hit,
    each atom's ``p`` the mean of its hits'), or ``"atoms"`` (one weighted row per atom,
    :func:`cgnn_jax.cluster.recursion.atom_rows`: ~2.3x fewer rows on a full event)."""
    mode = str(cluster_config.get("tree_rows", "points"))
    if mode not in TREE_ROWS:
        raise ValueError(f"config.cluster.tree_rows={mode!r}; valid: {', '.join(TREE_ROWS)}")
    return mode


def atom_cut(cluster_config) -> float:
    """The edge-score cut below which edges never join atoms (for the atoms' mode)."""
    if atom_mode(cluster_config) == "layers":
        return float(cluster_config.get("merge_threshold", 0.5))
    return float(cluster_config.get("component_cut", 0.0))


def atoms(
    cluster_config,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    a: jnp.ndarray,
    edge_mask: jnp.ndarray,
    layer: jnp.ndarray,
    n: int,
) -> jnp.ndarray | None:
    """``[n]`` the atoms of the graph-consistent Split (jit-compatible; None without atoms): the
    connected components of the edges with ``a_ij > cluster.component_cut``, or, with
    ``cluster.merge = "layers"``, the layer-constrained merge (:func:`layer_merge`) of the edges
    with ``a_ij > cluster.merge_threshold`` (``layer [n]``: detector-layer index per node)."""
    mode = atom_mode(cluster_config)
    if mode is None:
        return None
    keep = edge_mask & (a > atom_cut(cluster_config))
    if mode == "components":
        return jax.lax.stop_gradient(edge_components(senders, receivers, keep, n))
    max_shared = int(cluster_config.get("merge_max_shared", 1))
    return jax.lax.stop_gradient(layer_merge(senders, receivers, a, keep, layer, n, max_shared))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _atoms_jit(cluster_key, n, senders, receivers, a, edge_mask, layer):
    return atoms(
        ml_collections.ConfigDict(dict(cluster_key)), senders, receivers, a, edge_mask, layer, n
    )


def _atoms_key(cluster_config) -> tuple:
    """The hashable part of the cluster config that :func:`atoms` reads (a static jit argument)."""
    keys = ("merge", "component_cut", "merge_threshold", "merge_max_shared")
    return tuple((k, cluster_config[k]) for k in keys if k in cluster_config)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gnn_jit(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask):
    if isinstance(graph, dict):  # its fields (a plain pytree, for the traced-program cache)
        graph = jraph.GraphsTuple(**graph)
    return gnn_forward(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask, True)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))  # stop_threshold traced: no recompile
def _cluster_jit(
    split,
    stop,
    max_depth,
    min_size,
    stop_threshold,
    p_split,
    p_stop,
    h,
    mask,
    groups=None,
    reps=None,
    weights=None,
    h_var=None,
):
    return unrolled_clustering(
        lambda *a, **kw: split.apply(p_split, *a, **kw),
        None if stop is None else lambda *a, **kw: stop.apply(p_stop, *a, **kw),
        h,
        mask,
        max_depth,
        min_size,
        stop_threshold,
        groups,
        compact=True,
        group_reps=reps,
        weights=weights,
        h_var=h_var,
    )


def pad_groups(groups: np.ndarray | None, size: int) -> np.ndarray | None:
    """Group ids ``[n]`` padded to ``[size]``; every padding point in a group of its own."""
    if groups is None:
        return None
    out = np.arange(size, dtype=np.int32)
    out[: len(groups)] = groups
    return out


@dataclasses.dataclass
class Pipeline:
    """A trained clustering GNN: every stage's parameters and configs.

    Attributes:
      config: the full config (``data``, ``gnn``, ``cluster``, ...).
      stage1_config: the config stage 1 (embedding, graph, filter) was trained with.
      params: ``{"embedding", "filter", "input_embedding", "gnn", "split", "stop"}``.
      meta: what the checkpoint carried besides (training history, times, ...).
      dense: stages 2-3 for dense events on the same stage 1 (a :class:`Pipeline` with the same
        ``embedding`` and ``filter`` parameters), or None; see :meth:`for_hits`.
      dense_min_hits: the number of hits from which an event is reconstructed by ``dense``.
    """

    config: ml_collections.ConfigDict
    stage1_config: ml_collections.ConfigDict
    params: dict[str, Any]
    meta: dict = dataclasses.field(default_factory=dict)
    dense: Pipeline | None = None
    dense_min_hits: int = 0

    # ------------------------------------------------------------------ density variants
    def with_dense(self, dense: Pipeline | None, min_hits: int = 0) -> Pipeline:
        """This pipeline with ``dense`` as its variant for events of ``>= min_hits`` hits (None:
        without one). ``ValueError`` unless ``dense`` has this pipeline's stage-1 parameters
        (``embedding``, ``filter``); the variant then takes this pipeline's stage-1 config and
        what its stage-1 training chose (:data:`STAGE1_LEARNED`), keeping its own stages 2-3."""
        if dense is None:
            return dataclasses.replace(self, dense=None, dense_min_hits=0)
        if dense.dense is not None:
            raise ValueError("a dense variant cannot carry a variant of its own")
        if int(min_hits) < 1:
            raise ValueError(f"dense_min_hits must be >= 1, got {min_hits}")
        mine = {k: self.params[k] for k in STAGE1_GROUPS}
        if not same_leaves(mine, {k: dense.params[k] for k in STAGE1_GROUPS}):
            raise ValueError("the dense variant has other stage-1 parameters (embedding, filter)")
        # one stage 1: its config and what its training chose (filter cut, zone map) are this
        # pipeline's; the variant keeps its own stages 2-3 and Stop's cut
        meta = dict(dense.meta)
        meta["learned"] = {
            **{k: v for k, v in dense.learned.items() if k not in STAGE1_LEARNED},
            **{k: v for k, v in self.learned.items() if k in STAGE1_LEARNED},
        }
        shared = {k: self.params[k] for k in STAGE1_GROUPS}
        dense = dataclasses.replace(
            dense,
            stage1_config=self.stage1_config,
            params={**dense.params, **shared},
            meta=meta,
        )
        return dataclasses.replace(self, dense=dense, dense_min_hits=int(min_hits))

    def with_cluster_config(self, **values: Any) -> Pipeline:
        """This pipeline (not its dense variant) with ``config.cluster.<key> = value`` for every
        keyword: the inference settings of stage 3 (merge, Stop's configured cut, extension)."""
        config = self.config.copy_and_resolve_references()
        with config.unlocked():
            for k, v in values.items():
                config.cluster[k] = v
        return dataclasses.replace(self, config=config)

    def with_gnn(self, gnn_params: Any, stage1_params: dict[str, Any] | None = None) -> Pipeline:
        """This pipeline with other GNN parameters (e.g. a :class:`~cgnn_jax.inference.Stage2`'s,
        fine-tuned from these), its Split/Stop and Stop's cut kept, without a dense variant.
        ``ValueError`` if they do not fit this GNN's structure and shapes, or if
        ``stage1_params`` (``{"embedding", "filter"}`` the GNN was trained on) are not this
        pipeline's."""
        mismatch = shape_mismatch(self.params["gnn"], gnn_params)
        if mismatch is not None:
            raise ValueError(f"the GNN parameters do not fit this pipeline's GNN ({mismatch})")
        if stage1_params is not None:
            mine = {k: self.params[k] for k in STAGE1_GROUPS}
            its = {k: stage1_params[k] for k in STAGE1_GROUPS}
            if not same_leaves(mine, its):
                raise ValueError("the GNN was trained on another stage 1 (embedding, filter)")
        return dataclasses.replace(
            self, params={**self.params, "gnn": gnn_params}, dense=None, dense_min_hits=0
        )

    def for_hits(self, n_hits: int) -> Pipeline:
        """The pipeline that reconstructs an event of ``n_hits`` hits: :attr:`dense` from
        :attr:`dense_min_hits` hits on, else this one."""
        if self.dense is not None and int(n_hits) >= self.dense_min_hits:
            return self.dense
        return self

    # ------------------------------------------------------------------ models
    @property
    def cluster_config(self) -> ml_collections.ConfigDict:
        """The ``config.cluster`` block (Split / Stop, recursion, stage-3 training)."""
        return self.config.cluster

    @property
    def learned(self) -> dict:
        """What training chose (``filter_threshold``), kept in the checkpoint's metadata."""
        return dict(self.meta.get("learned", {}))

    @property
    def stop_threshold(self) -> float:
        """Stop's cut: the one calibrated on validation events after training
        (``learned["stop_threshold"]``) when there is one, else ``cluster.stop_threshold``."""
        if "stop_threshold" in self.learned:
            return float(self.learned["stop_threshold"])
        return float(self.cluster_config.stop_threshold)

    @property
    def stage1(self) -> Stage1:
        return Stage1(
            self.stage1_config, self.params["embedding"], self.params["filter"], self.learned
        )

    @property
    def emb_model(self) -> HitEmbedding:
        return create_model(self.stage1_config, "embedding")

    @property
    def gnn_model(self) -> EdgeWeightedGNN:
        return create_model(self.config, "gnn")

    @property
    def split_stop(self) -> tuple[Split, Stop]:
        return create_model(self.config, "split"), create_model(self.config, "stop")

    # ------------------------------------------------------------------ stages
    def prepare(self, event: Event | PreparedEvent) -> PreparedEvent:
        return event if isinstance(event, PreparedEvent) else prepare_event(event)

    def graph(self, ev: PreparedEvent) -> dict[str, np.ndarray]:
        """Stage 1: ``embedding [n, d]``, the embedding graph and the refined (GNN input) graph."""
        s1 = self.stage1
        e = s1.embed(ev)
        es, er = s1.embedding_graph(ev, e)
        out = {"embedding": e, "emb_senders": es, "emb_receivers": er}
        if self.config.gnn.input_graph == "refined":
            s, r, p = s1.refined_graph(ev, es, er, threshold=input_threshold(self.config.gnn))
        else:
            s, r, p = es, er, np.ones(len(es), np.float32)
        out.update(senders=s, receivers=r, edge_prob=p)
        return out

    def gnn_output(
        self, ev: PreparedEvent, senders: np.ndarray, receivers: np.ndarray
    ) -> np.ndarray:
        """Stage 2: ``[n, out_dim]``, every hit in the learned cluster space."""
        return self.gnn_stage(ev, senders, receivers)[0]

    def gnn_stage(
        self, ev: PreparedEvent, senders: np.ndarray, receivers: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: ``(out [n, out_dim], a [E])``: every hit in the learned cluster space and the
        last layer's weight ``a_ij`` of every input edge (the edge score)."""
        g = padded_graph(ev.hf.x.astype(np.float32), senders, receivers)
        out, a = cached_call(
            "gnn",
            _gnn_jit,
            (self.emb_model, self.gnn_model),
            (
                self.params["input_embedding"],
                self.params["gnn"],
                g.graph._asdict(),
                g.edge_mask,
                g.node_mask,
            ),
        )
        return np.asarray(out)[: ev.n], np.asarray(a)[: len(senders)]

    def groups(self, ev: PreparedEvent, senders, receivers, edge_score) -> np.ndarray | None:
        """``[n]`` the graph-consistent Split's atoms (:func:`atoms`): the connected components
        of the input edges with ``a_ij > cluster.component_cut``, or their layer-constrained
        merge (``cluster.merge = "layers"``); None without atoms (the thesis's Split)."""
        cc = self.cluster_config
        if atom_mode(cc) is None:
            return None
        # only the edges that can join (a_ij above the cut), padded to size buckets, through
        # the function training uses
        score = np.asarray(edge_score, np.float32)
        sel = np.flatnonzero(score > atom_cut(cc))
        n, e = bucket_size(ev.n), bucket_size(len(sel))
        out = cached_call(
            "atoms",
            _atoms_jit,
            (_atoms_key(cc), n),
            (
                pad_rows(np.asarray(senders, np.int32)[sel], e),
                pad_rows(np.asarray(receivers, np.int32)[sel], e),
                pad_rows(score[sel], e),
                np.arange(e) < len(sel),
                pad_rows(np.asarray(ev.hf.layer_index, np.int32), n),
            ),
        )
        return np.asarray(out)[: ev.n]

    def cluster_inputs(self, ev: PreparedEvent, gnn_out: np.ndarray) -> np.ndarray:
        """``h [n, D]`` seen by Split/Stop."""
        return np.asarray(
            cluster_features(gnn_out, ev.hf.x, self.cluster_config.inputs), np.float32
        )

    def cluster(
        self,
        h: np.ndarray,
        max_depth: int | None = None,
        groups: np.ndarray | None = None,
        stop_threshold: float | None = None,
        votes: bool = True,
    ) -> Mapping[str, np.ndarray]:
        """Stage 3 on points ``h [n, D]``: the :func:`unrolled_clustering` output on the points
        padded to their bucket ``N`` (per-point arrays ``cluster [N]``, ``segment [L+1, N]``...:
        the first ``n`` entries are the points, the rest padding). ``groups [n]``: atoms the tree
        never separates (:meth:`groups`); ``stop_threshold``: Stop's cut (default
        :attr:`stop_threshold`). With ``cluster.tree_rows = "atoms"`` the tree runs on one row
        per atom and the output is mapped back to the points as it is read
        (:func:`~cgnn_jax.cluster.recursion.rows_to_points`). Without ``votes``, at a Stop's cut
        of 1 or more (no vote exceeds it) Stop is not evaluated: the same tree, ``stop`` NaN."""
        cc = self.cluster_config
        if stop_threshold is None:
            stop_threshold = self.stop_threshold
        stop = None if not votes and stop_threshold >= 1.0 else self.split_stop[1]
        if groups is not None and tree_rows(cc) == "atoms":
            return self._cluster_atoms(h, groups, max_depth, stop_threshold, stop)
        hp, mask = padded_points(h)
        gp = pad_groups(groups, len(hp))
        # the groups' first points, padded to a size bucket: the median rule sorts these
        reps = None
        if gp is not None:
            reps = group_representatives(gp)
            reps = pad_rows(reps, bucket_size(len(reps)), value=len(gp))
        out = self._tree(stop, max_depth, stop_threshold, hp, mask, gp, reps)
        return {k: np.asarray(v) for k, v in out.items()}

    def _tree(self, stop, max_depth, stop_threshold, *arrays):
        """:func:`_cluster_jit` through the traced-program cache, with this pipeline's Split and
        ``stop`` (its Stop, or None: not evaluated); ``arrays``: the padded ``h, mask``, then the
        optional ``groups, reps, weights, h_var``."""
        cc = self.cluster_config
        return cached_call(
            "cluster",
            _cluster_jit,
            (self.split_stop[0], stop, int(max_depth or cc.max_depth), int(cc.min_size)),
            (np.float32(stop_threshold), self.params["split"], self.params["stop"], *arrays),
        )

    def _cluster_atoms(
        self, h, groups, max_depth, stop_threshold, stop
    ) -> Mapping[str, np.ndarray]:
        """:meth:`cluster` with one row per atom (``cluster.tree_rows = "atoms"``,
        :func:`atom_rows`), its output mapped back to the points (:func:`rows_to_points`)."""
        r = atom_rows(h, groups)
        hp, mask = padded_points(r["h"])
        weights, h_var = pad_rows(r["weights"], len(hp)), pad_rows(r["h_var"], len(hp))
        out = self._tree(stop, max_depth, stop_threshold, hp, mask, None, None, weights, h_var)
        return rows_to_points(out, r["row"], r["first"], bucket_size(len(h)))

    def stage_outputs(
        self, event: Event | PreparedEvent, cluster: bool = True, votes: bool = True
    ) -> dict[str, Any]:
        """Every stage's output on one event (numpy), for analysis (without ``cluster``, the
        keys up to ``h``: stages 1-2 and the atoms, not the tree; without ``votes``, Stop's votes
        may be left out, :meth:`cluster`).

        Keys: ``features [n, F]``, ``pid [n]``, ``embedding [n, d]``, ``emb_senders/receivers``,
        ``senders/receivers/edge_prob`` (the GNN's input graph), ``gnn [n, out]``,
        ``edge_score [E]`` (the GNN's last ``a_ij`` on the input graph), ``groups [n]`` (the
        graph-consistent Split's atoms, or None), ``h [n, D]``, ``clustering`` (the padded
        :func:`unrolled_clustering` output), ``track_id [n]``.
        """
        ev = self.prepare(event)
        pipe = self.for_hits(ev.n)
        if pipe is not self:
            return pipe.stage_outputs(ev, cluster=cluster, votes=votes)
        out: dict[str, Any] = {"features": ev.hf.x, "pid": ev.pid}
        out.update(self.graph(ev))
        out["gnn"], out["edge_score"] = self.gnn_stage(ev, out["senders"], out["receivers"])
        out.update(
            self.cluster_stage(
                ev,
                out["gnn"],
                out["edge_score"],
                out["senders"],
                out["receivers"],
                cluster=cluster,
                votes=votes,
            )
        )
        return out

    def cluster_stage(
        self,
        ev: PreparedEvent,
        gnn_out: np.ndarray,
        edge_score: np.ndarray,
        senders: np.ndarray,
        receivers: np.ndarray,
        stop_threshold: float | None = None,
        cluster: bool = True,
        votes: bool = True,
    ) -> dict[str, Any]:
        """Stage 3 as :meth:`reconstruct` runs it, from stage 2's output ``gnn_out [n, out]`` and
        edge score ``[E]`` on the input graph ``(senders, receivers)``: ``groups [n]`` (the
        atoms, :meth:`groups`), ``h [n, D]`` (:meth:`cluster_inputs`) and, with ``cluster``,
        ``clustering`` (:meth:`cluster` at ``stop_threshold``) and ``track_id [n]`` (int64,
        ``1..K``; before any iterative re-clustering)."""
        out: dict[str, Any] = {
            "groups": self.groups(ev, senders, receivers, edge_score),
            "h": self.cluster_inputs(ev, gnn_out),
        }
        if cluster:
            out.update(self.track_ids(out["h"], out["groups"], stop_threshold, votes))
        return out

    def track_ids(
        self,
        h: np.ndarray,
        groups: np.ndarray | None = None,
        stop_threshold: float | None = None,
        votes: bool = True,
    ) -> dict[str, Any]:
        """Cluster the points ``h [n, D]`` (:meth:`cluster`): ``{"clustering": <its padded
        output>, "track_id": [n] int64 1..K}``."""
        clustering = self.cluster(h, groups=groups, stop_threshold=stop_threshold, votes=votes)
        return {
            "clustering": clustering,
            "track_id": dense_track_ids(clustering["cluster"][: len(h)]),
        }

    def extend(self, ev: PreparedEvent, track_id: np.ndarray) -> np.ndarray:
        """``[n]`` int64 track ids ``1..K``: ``track_id [n]`` with the hits of tracks of at most
        ``cluster.extend_free_max`` hits given to the tracks whose helix roads cross them
        (:func:`cgnn_jax.cluster.extend.extend_tracks`, ``cluster.extend_iterations`` rounds;
        0 or absent: ``track_id`` unchanged)."""
        cc = self.cluster_config
        iterations = int(cc.get("extend_iterations", 0))
        if iterations <= 0:
            return np.asarray(track_id)
        kw = {k: type(v)(cc.get(f"extend_{k}", v)) for k, v in EXTEND_DEFAULTS.items()}
        return extend_tracks(track_id, ev.hf.pos, ev.hf.layer_index, iterations=iterations, **kw)

    def reconstruct(self, event: Event | PreparedEvent, return_tree: bool = False):
        """Track id ``[n_hits]`` (int64, ``1..K``) of every hit of ``event``, in hit row order;
        with ``return_tree``, also the :class:`cgnn_jax.cluster.tree.ClusterTree` (the dense
        variant's, :meth:`for_hits`, on a dense event: the Split/Stop tree, before any iterative
        re-clustering or track extension, :meth:`extend`)."""
        ev = self.prepare(event)
        pipe = self.for_hits(ev.n)
        iterative = pipe.cluster_config.iterative_rounds > 0
        # Stop's votes are read by the tree and the re-clustering only (see cluster)
        out = pipe.stage_outputs(ev, votes=return_tree or iterative)
        tid = out["track_id"]
        if iterative:
            from cgnn_jax.cluster.iterative import iterative_recluster

            tid = iterative_recluster(pipe, out["h"], out["clustering"], tid, groups=out["groups"])
        tid = pipe.extend(ev, tid)
        if not return_tree:
            return tid
        from cgnn_jax.cluster.tree import build_tree

        hit_id = (
            event.hits["hit_id"].to_numpy() if isinstance(event, Event) else np.arange(len(tid))
        )
        ev_id = int(event.event_id) if isinstance(event, Event) else -1
        return tid, build_tree(out["clustering"], hit_id, ev_id)

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path, step: int = 0, extra: dict | None = None) -> Path:
        """Save as an orbax checkpoint (kind ``"pipeline"``) under ``directory`` (a
        ``checkpoints`` folder; :meth:`restore` also accepts its parents)."""
        own = ("format", "version", "kind", "config", "step")  # written by save_checkpoint
        meta = {k: v for k, v in {**self.meta, **(extra or {})}.items() if k not in own}
        meta["stage1_config"] = self.stage1_config.to_dict()
        params = {k: v for k, v in self.params.items() if k != DENSE_KEY}
        meta.pop(DENSE_KEY, None)
        if self.dense is not None:
            params[DENSE_KEY] = {k: self.dense.params[k] for k in VARIANT_GROUPS}
            meta[DENSE_KEY] = {
                "min_hits": int(self.dense_min_hits),
                "config": self.dense.config.to_dict(),
                "meta": {k: v for k, v in self.dense.meta.items() if k not in own},
            }
        return save_checkpoint(
            Path(directory),
            step,
            params,
            kind=PIPELINE_KIND,
            config=self.config.to_dict(),
            extra=meta,
        )

    @classmethod
    def restore(cls, path: str | Path | None = None, step: int | None = None) -> Pipeline:
        """From a checkpoint folder, a training workdir or ``None`` (the pretrained default)."""
        path = Path(path) if path is not None else PRETRAINED_DIR
        for cand in (path / PIPELINE_DIR / "checkpoints", path / "checkpoints", path):
            if cand.is_dir():
                path = cand
                break
        else:
            hint = (
                " (the pretrained model is made by `make train-default`)"
                if path == PRETRAINED_DIR
                else ""
            )
            raise CheckpointError(f"{path}: no such checkpoint{hint}")
        state, meta = restore_checkpoint(path, step, kind=PIPELINE_KIND)
        config = ml_collections.ConfigDict(meta.pop("config"))
        s1c = ml_collections.ConfigDict(meta.pop("stage1_config"))
        missing = set(PARAM_GROUPS) - set(state)
        if missing:
            raise CheckpointError(f"{path}: pipeline checkpoint lacks parameters {sorted(missing)}")
        state = dict(state)
        dense_params, dense_meta = state.pop(DENSE_KEY, None), meta.pop(DENSE_KEY, None)
        pipe = cls(config, s1c, state, meta)
        if (dense_params is None) != (dense_meta is None):
            raise CheckpointError(f"{path}: its dense variant lacks its parameters or its config")
        if dense_params is None:
            return pipe
        missing = set(VARIANT_GROUPS) - set(dense_params)
        if missing:
            raise CheckpointError(f"{path}: its dense variant lacks parameters {sorted(missing)}")
        dense = cls(
            ml_collections.ConfigDict(dense_meta["config"]),
            s1c,
            {**{k: state[k] for k in STAGE1_GROUPS}, **dict(dense_params)},
            dict(dense_meta.get("meta", {})),
        )
        return pipe.with_dense(dense, int(dense_meta["min_hits"]))
