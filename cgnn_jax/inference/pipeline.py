"""The whole clustering GNN as one object: restore a checkpoint, reconstruct events, look inside.

    from cgnn_jax import Pipeline
    pipe = Pipeline.restore()                  # the pretrained default model shipped in the package
    track_id = pipe.reconstruct(event)         # [n_hits] int64, one track id per hit
    track_id, tree = pipe.reconstruct(event, return_tree=True)   # + the cluster tree
    parts = pipe.stage_outputs(event)          # every stage's output, for analysis in a notebook

Stages, on a whole event (:attr:`Pipeline.stage1`, :attr:`Pipeline.stage2`,
:attr:`Pipeline.stage3`):

1. hit features -> embedding MLP -> kd-tree kNN graph in the embedding -> edge filter
   (:class:`~cgnn_jax.inference.Stage1`);
2. the edge-weighted GNN on the refined graph, its input ``[hit features, input embedding]``
   (:class:`~cgnn_jax.inference.stage2.GNNStage`; the input embedding starts as the stage-1
   embedding and is tuned end to end);
3. Split/Stop on ``h = [GNN output, hit features]`` (or the GNN output alone), the recursion
   unrolled level by level in one jit (:class:`~cgnn_jax.inference.Stage3`); the leaves are the
   tracks;
4. with ``cluster.extend_iterations > 0``, the hits left in tracks of at most
   ``cluster.extend_free_max`` hits join the track whose helix road crosses them
   (:mod:`cgnn_jax.cluster.extend`; geometry, not learned; :meth:`Stage3.extend`).

Parameters (``Pipeline.params``): ``embedding`` and ``filter`` (stage 1, build the graph),
``input_embedding`` and ``gnn`` (stage 2), ``split`` and ``stop`` (stage 3).

A pipeline may carry a **dense variant** (:attr:`Pipeline.dense`): stages 2-3 trained for events
of another density on the same stage 1 (:mod:`cgnn_jax.inference.variants`).
:meth:`Pipeline.for_hits` picks it for events of at least ``dense_min_hits`` hits;
:meth:`Pipeline.reconstruct` and :meth:`Pipeline.stage_outputs` do so themselves. It is saved in
the same checkpoint (:mod:`cgnn_jax.inference.pipeline_checkpoint`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from cgnn_jax.inference import variants
from cgnn_jax.inference.checkpoint import CheckpointError
from cgnn_jax.inference.events import PreparedEvent, as_prepared
from cgnn_jax.inference.pipeline_checkpoint import restore_pipeline, save_pipeline
from cgnn_jax.inference.stage1 import Stage1
from cgnn_jax.inference.stage2 import GNNStage
from cgnn_jax.inference.stage3 import Stage3
from cgnn_jax.io.event import Event


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

    # ------------------------------------------------------------------ variants
    def with_dense(self, dense: Pipeline | None, min_hits: int = 0) -> Pipeline:
        """This pipeline with ``dense`` as its variant for events of ``>= min_hits`` hits (None:
        without one): :func:`cgnn_jax.inference.variants.with_dense`."""
        return variants.with_dense(self, dense, min_hits)

    def with_cluster_config(self, **values: Any) -> Pipeline:
        """This pipeline (not its dense variant) with ``config.cluster.<key> = value`` for every
        keyword: :func:`cgnn_jax.inference.variants.with_cluster_config`."""
        return variants.with_cluster_config(self, **values)

    def with_gnn(self, gnn_params: Any, stage1_params: dict[str, Any] | None = None) -> Pipeline:
        """This pipeline with other GNN parameters, without a dense variant:
        :func:`cgnn_jax.inference.variants.with_gnn`."""
        return variants.with_gnn(self, gnn_params, stage1_params)

    def for_hits(self, n_hits: int) -> Pipeline:
        """The pipeline that reconstructs an event of ``n_hits`` hits: :attr:`dense` from
        :attr:`dense_min_hits` hits on, else this one."""
        return variants.for_hits(self, n_hits)

    # ------------------------------------------------------------------ stages
    @property
    def learned(self) -> dict:
        """What training chose (``filter_threshold``, ``zone_map``, ``stop_threshold``), kept
        in the checkpoint's metadata."""
        return dict(self.meta.get("learned", {}))

    @property
    def stage1(self) -> Stage1:
        """Stage 1: embedding, kNN graph, edge filter. Its ``learned`` is the pipeline's without
        stage 3's Stop cut, so a stage 1 taken from a whole model (e.g. ``config.stage1_checkpoint``
        = the pretrained one) carries no Stop cut into a new model trained on it."""
        learned = {k: v for k, v in self.learned.items() if k != "stop_threshold"}
        return Stage1(
            self.stage1_config,
            self.params["embedding"],
            self.params["filter"],
            learned,
            self.params.get("prefilter"),  # the first pass over module-map candidates, if any
            self.params.get("context"),  # the context filter's rounds, if any
        )

    @property
    def stage2(self) -> GNNStage:
        """Stage 2: the GNN on stage 1's input graph, with its own input embedding."""
        params = {k: self.params[k] for k in ("input_embedding", "gnn")}
        return GNNStage(self.config, self.stage1, params)

    @property
    def stage3(self) -> Stage3:
        """Stage 3: atoms, the Split/Stop tree, the tracks. Stop's cut is the one calibrated on
        validation events after training (``learned["stop_threshold"]``) when there is one,
        else ``cluster.stop_threshold``."""
        learned = self.learned
        if "stop_threshold" in learned:
            stop_threshold = float(learned["stop_threshold"])
        else:
            stop_threshold = float(self.config.cluster.stop_threshold)
        params = {k: self.params[k] for k in ("split", "stop")}
        return Stage3(self.config, params, stop_threshold)

    def stage_outputs(
        self, event: Event | PreparedEvent, cluster: bool = True, votes: bool = True
    ) -> dict[str, Any]:
        """Every stage's output on one event (numpy), for analysis (without ``cluster``, the
        keys up to ``h``: stages 1-2 and the atoms, not the tree; without ``votes``, Stop's votes
        may be left out, :meth:`Stage3.cluster`).

        Keys: ``features [n, F]``, ``pid [n]``, ``embedding [n, d]``, ``emb_senders/receivers``,
        ``senders/receivers/edge_prob`` (the GNN's input graph), ``gnn [n, out]``,
        ``edge_score [E]`` (the GNN's last ``a_ij`` on the input graph), ``groups [n]`` (the
        graph-consistent Split's atoms, or None), ``h [n, D]``, ``clustering`` (the padded
        :func:`~cgnn_jax.cluster.recursion.unrolled_clustering` output), ``track_id [n]``.
        """
        ev = as_prepared(event)
        pipe = self.for_hits(ev.n)
        if pipe is not self:
            return pipe.stage_outputs(ev, cluster=cluster, votes=votes)
        out: dict[str, Any] = {"features": ev.hf.x, "pid": ev.pid}
        stage2 = self.stage2
        out.update(stage2.graph(ev))
        out["gnn"], out["edge_score"] = stage2.outputs(ev, out["senders"], out["receivers"])
        out.update(
            self.stage3.outputs(
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

    def reconstruct(self, event: Event | PreparedEvent, return_tree: bool = False):
        """Track id ``[n_hits]`` (int64, ``1..K``) of every hit of ``event``, in hit row order;
        with ``return_tree``, also the :class:`cgnn_jax.cluster.tree.ClusterTree` (the dense
        variant's, :meth:`for_hits`, on a dense event: the Split/Stop tree, before any iterative
        re-clustering or track extension, :meth:`Stage3.tracks`)."""
        ev = as_prepared(event)
        pipe = self.for_hits(ev.n)
        iterative = pipe.config.cluster.iterative_rounds > 0
        # Stop's votes are read by the tree and the re-clustering only (see Stage3.cluster)
        out = pipe.stage_outputs(ev, votes=return_tree or iterative)
        tid = pipe.stage3.tracks(ev, out)
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
        return save_pipeline(self, directory, step, extra)

    @classmethod
    def restore(cls, path: str | Path | None = None, step: int | None = None) -> Pipeline:
        """From a checkpoint folder, a training workdir or ``None`` (the pretrained default)."""
        return restore_pipeline(cls, path, step)


def restore_stage1(path: str | Path | None = None) -> Stage1:
    """The stage 1 of any checkpoint: a stage-1 (or stage-2) training workdir or checkpoint, or
    a whole pipeline (e.g. ``cgnn_jax/pretrained/default``), read by its ``kind`` (``None``: the
    shipped pretrained model's)."""
    if path is None:
        return Pipeline.restore().stage1
    try:
        return Stage1.restore(path)
    except (CheckpointError, FileNotFoundError, ValueError) as first:
        try:
            return Pipeline.restore(path).stage1
        except (CheckpointError, FileNotFoundError, ValueError):
            raise first from None
