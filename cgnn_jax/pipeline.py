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
   unrolled level by level in one jit (stage 3); the leaves are the tracks.

Parameters (``Pipeline.params``): ``embedding`` and ``filter`` (stage 1, build the graph),
``input_embedding`` and ``gnn`` (stage 2), ``split`` and ``stop`` (stage 3).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cgnn_jax.cluster.recursion import unrolled_clustering
from cgnn_jax.graph.batch import padded_graph
from cgnn_jax.io.event import Event
from cgnn_jax.models.gnn import EdgeWeightedGNN, create_gnn
from cgnn_jax.models.split_stop import Split, Stop
from cgnn_jax.train.checkpoint import CheckpointError, restore_checkpoint, save_checkpoint
from cgnn_jax.train.data import PreparedEvent, prepare_event
from cgnn_jax.train.stage1 import Stage1, create_embedding
from cgnn_jax.utils.padding import bucket_size, pad_rows

PIPELINE_KIND = "pipeline"
PIPELINE_DIR = "pipeline"  # <workdir>/pipeline/checkpoints
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained" / "default"


def cluster_defaults() -> ml_collections.ConfigDict:
    """The ``config.cluster`` block (stage 3) with its defaults."""
    c = ml_collections.ConfigDict()
    c.split_hidden = (32, 32)
    c.stop_hidden = (32, 32)
    c.split_init_scale = 1.0  # initial scale of the Split MLP's output layer
    c.prior_dims = 0  # > 0: Split adds a learned gain x the principal-axis projection of h[:, :k]
    c.prior_gain = 4.0
    c.prior_columns = ()  # or explicit columns of h for the prior (overrides prior_dims)
    c.stop_aggregate = "mean"  # or "max"
    c.inputs = "gnn+features"  # or "gnn": what Split/Stop see
    c.max_depth = 40  # levels at inference (full events; O(log n) are used)
    c.train_depth = 20  # levels of the training trees (sector sub-graphs)
    c.sectors = (3, 6)  # η–φ sectors of the training sub-graphs (~6k hits each at μ = 200)
    c.min_size = 3
    c.stop_threshold = 0.5
    c.stop_weight = 1.0
    c.hinge_weight = 1.0  # GNN hinge loss beside the clustering losses (end to end)
    c.learning_rate = 3e-3
    c.e2e_learning_rate = 3e-4
    c.clip_norm = 1.0
    c.graphs_per_device = 1
    c.epochs = 20  # stage 3 (Split/Stop only)
    c.e2e_epochs = 10  # end to end (input embedding, GNN, Split, Stop)
    c.patience = 10  # epochs without validation gain before the learning rate is cut x0.1
    c.val_events = 1
    c.iterative_rounds = 0  # > 0: reconstruct() re-clusters low-confidence clusters (iterative)
    c.iterative_cutoff = 0.5
    return c


def create_split_stop(cc: ml_collections.ConfigDict) -> tuple[Split, Stop]:
    split = Split(
        tuple(cc.split_hidden),
        float(cc.get("split_init_scale", 1.0)),
        int(cc.get("prior_dims", 0)),
        float(cc.get("prior_gain", 4.0)),
        tuple(int(c) for c in (cc.get("prior_columns", None) or ())),
    )
    return split, Stop(tuple(cc.stop_hidden), cc.get("stop_aggregate", "mean"))


def cluster_features(gnn_out: jnp.ndarray, x: jnp.ndarray, inputs: str) -> jnp.ndarray:
    """``h [N, D]`` seen by Split/Stop: the GNN output, with the hit features if ``inputs`` says."""
    if inputs == "gnn":
        return gnn_out
    if inputs == "gnn+features":
        return jnp.concatenate([gnn_out, x], axis=-1)
    raise ValueError(f"config.cluster.inputs={inputs!r}; valid: 'gnn', 'gnn+features'")


def gnn_forward(
    emb_model, gnn_model: EdgeWeightedGNN, p_emb: Any, p_gnn: Any, graph, edge_mask, node_mask
) -> jnp.ndarray:
    """GNN output ``[N, out]`` of a padded graph whose nodes are the hit features ``[N, F]``."""
    x = graph.nodes
    e = emb_model.apply(p_emb, x) * node_mask[:, None]
    g = graph._replace(nodes=jnp.concatenate([x, e], axis=-1))
    return gnn_model.apply(p_gnn, g, edge_mask, node_mask)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gnn_jit(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask):
    return gnn_forward(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _cluster_jit(split, stop, max_depth, min_size, stop_threshold, p_split, p_stop, h, mask):
    return unrolled_clustering(
        lambda *a: split.apply(p_split, *a),
        lambda *a: stop.apply(p_stop, *a),
        h,
        mask,
        max_depth,
        min_size,
        stop_threshold,
    )


def dense_track_ids(cluster: np.ndarray) -> np.ndarray:
    """Cluster ids (any ints) -> track ids ``1..K`` in order of first appearance (int64)."""
    _, first, inv = np.unique(cluster, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    return rank[inv.reshape(-1)]


@dataclasses.dataclass
class Pipeline:
    """A trained clustering GNN: every stage's parameters and configs.

    Attributes:
      config: the full config (``data``, ``gnn``, ``cluster``, ...).
      stage1_config: the config stage 1 (embedding, graph, filter) was trained with.
      params: ``{"embedding", "filter", "input_embedding", "gnn", "split", "stop"}``.
      meta: what the checkpoint carried besides (training history, times, ...).
    """

    config: ml_collections.ConfigDict
    stage1_config: ml_collections.ConfigDict
    params: dict[str, Any]
    meta: dict = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ models
    @property
    def cluster_config(self) -> ml_collections.ConfigDict:
        cc = cluster_defaults()
        cc.update(self.config.get("cluster", ml_collections.ConfigDict()))
        return cc

    @property
    def stage1(self) -> Stage1:
        return Stage1(self.stage1_config, self.params["embedding"], self.params["filter"])

    @property
    def emb_model(self):
        return create_embedding(self.stage1_config)

    @property
    def gnn_model(self) -> EdgeWeightedGNN:
        return create_gnn(self.config.gnn)

    @property
    def split_stop(self) -> tuple[Split, Stop]:
        return create_split_stop(self.cluster_config)

    # ------------------------------------------------------------------ stages
    def prepare(self, event: Event | PreparedEvent) -> PreparedEvent:
        return event if isinstance(event, PreparedEvent) else prepare_event(event)

    def graph(self, ev: PreparedEvent) -> dict[str, np.ndarray]:
        """Stage 1: ``embedding [n, d]``, the embedding graph and the refined (GNN input) graph."""
        s1 = self.stage1
        es, er = s1.embedding_graph(ev)
        out = {"embedding": s1.embed(ev), "emb_senders": es, "emb_receivers": er}
        if self.config.gnn.get("input_graph", "refined") == "refined":
            s, r, p = s1.refined_graph(ev, es, er)
        else:
            s, r, p = es, er, np.ones(len(es), np.float32)
        out.update(senders=s, receivers=r, edge_prob=p)
        return out

    def gnn_output(
        self, ev: PreparedEvent, senders: np.ndarray, receivers: np.ndarray
    ) -> np.ndarray:
        """Stage 2: ``[n, out_dim]``, every hit in the learned cluster space."""
        g = padded_graph(ev.hf.x.astype(np.float32), senders, receivers)
        out = _gnn_jit(
            self.emb_model,
            self.gnn_model,
            self.params["input_embedding"],
            self.params["gnn"],
            g.graph,
            g.edge_mask,
            g.node_mask,
        )
        return np.asarray(out)[: ev.n]

    def cluster_inputs(self, ev: PreparedEvent, gnn_out: np.ndarray) -> np.ndarray:
        """``h [n, D]`` seen by Split/Stop."""
        return np.asarray(
            cluster_features(gnn_out, ev.hf.x, self.cluster_config.inputs), np.float32
        )

    def cluster(self, h: np.ndarray, max_depth: int | None = None) -> dict[str, np.ndarray]:
        """Stage 3 on points ``h [n, D]``: the :func:`unrolled_clustering` output, unpadded
        to the first ``n`` points where per point (``cluster [n]``, ``segment [L+1, n]``...)."""
        cc = self.cluster_config
        n = len(h)
        size = bucket_size(n)
        hp = pad_rows(np.asarray(h, np.float32), size)
        mask = np.arange(size) < n
        split, stop = self.split_stop
        out = _cluster_jit(
            split,
            stop,
            int(max_depth or cc.max_depth),
            int(cc.min_size),
            float(cc.stop_threshold),
            self.params["split"],
            self.params["stop"],
            hp,
            mask,
        )
        return {k: np.asarray(v) for k, v in out.items()}

    def stage_outputs(self, event: Event | PreparedEvent) -> dict[str, Any]:
        """Every stage's output on one event (numpy), for analysis.

        Keys: ``features [n, F]``, ``pid [n]``, ``embedding [n, d]``, ``emb_senders/receivers``,
        ``senders/receivers/edge_prob`` (refined graph), ``gnn [n, out]``, ``h [n, D]``,
        ``clustering`` (the padded :func:`unrolled_clustering` output), ``track_id [n]``.
        """
        ev = self.prepare(event)
        out: dict[str, Any] = {"features": ev.hf.x, "pid": ev.pid}
        out.update(self.graph(ev))
        out["gnn"] = self.gnn_output(ev, out["senders"], out["receivers"])
        out["h"] = self.cluster_inputs(ev, out["gnn"])
        out["clustering"] = self.cluster(out["h"])
        out["track_id"] = dense_track_ids(out["clustering"]["cluster"][: ev.n])
        return out

    def reconstruct(self, event: Event | PreparedEvent, return_tree: bool = False):
        """Track id ``[n_hits]`` (int64, ``1..K``) of every hit of ``event``, in hit row order;
        with ``return_tree``, also the :class:`cgnn_jax.cluster.tree.ClusterTree`."""
        out = self.stage_outputs(event)
        tid = out["track_id"]
        if self.cluster_config.get("iterative_rounds", 0) > 0:
            from cgnn_jax.cluster.iterative import iterative_recluster

            tid = iterative_recluster(self, out["h"], out["clustering"], tid)
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
        meta = {**self.meta, **(extra or {}), "stage1_config": self.stage1_config.to_dict()}
        return save_checkpoint(
            Path(directory),
            step,
            self.params,
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
        missing = {"embedding", "filter", "input_embedding", "gnn", "split", "stop"} - set(state)
        if missing:
            raise CheckpointError(f"{path}: pipeline checkpoint lacks parameters {sorted(missing)}")
        return cls(config, s1c, dict(state), meta)


_WORKER_PIPE: Pipeline | None = None


def _init_worker(checkpoint: str | None) -> None:
    global _WORKER_PIPE
    _WORKER_PIPE = Pipeline.restore(checkpoint)


def _part_path(parts_dir: Path, event_id: int) -> Path:
    return parts_dir / f"event{int(event_id):09d}-submission.csv.gz"


def reconstruct_event_to_part(
    pipe: Pipeline, data, event_id: int, parts_dir: Path, tree_dir: str | Path | None
) -> int:
    """Reconstruct one event of ``data`` and write its submission part (and tree) atomically."""
    from cgnn_jax.baselines.reconstruct import submission_frame
    from cgnn_jax.cluster.tree import write_tree
    from cgnn_jax.io import read_event, write_submission

    event = read_event(data, event_id, parts=("hits", "cells"))
    if tree_dir is not None:
        tid, tree = pipe.reconstruct(event, return_tree=True)
        write_tree(tree, Path(tree_dir) / f"event{int(event.event_id):09d}-tree.npz")
    else:
        tid = pipe.reconstruct(event)
    sub = submission_frame(event.event_id, event.hits["hit_id"].to_numpy(), tid)
    write_submission(sub, _part_path(parts_dir, event_id))
    return int(event_id)


def _worker_task(data, event_id: int, parts_dir: Path, tree_dir) -> int:
    assert _WORKER_PIPE is not None
    return reconstruct_event_to_part(_WORKER_PIPE, data, event_id, parts_dir, tree_dir)


def reconstruct_dataset(
    pipe: Pipeline | None,
    data: str | Path,
    tree_dir: str | Path | None = None,
    progress: bool = True,
    parts_dir: str | Path | None = None,
    workers: int = 1,
    checkpoint: str | Path | None = None,
):
    """A submission (``event_id, hit_id, track_id``) for every event of a dataset.

    Every event is reconstructed on its own and its submission part written atomically to
    ``parts_dir`` (``event<ID>-submission.csv.gz``); events whose part already exists are skipped,
    so a killed run resumes where it stopped. The parts are then concatenated (the caller writes
    the final file atomically and may delete ``parts_dir``).

    Args:
      pipe: the pipeline (``None``: restore ``checkpoint``, in each worker process).
      data: a dataset (directory or zip; hits and cells are read, truth is not needed).
      tree_dir: also write each event's cluster tree (``event<ID>-tree.npz``).
      parts_dir: where the per-event parts go (default: a temporary folder, no resuming).
      workers: events reconstructed in parallel processes (each restores ``checkpoint``; on a
        machine with few cores one process already keeps them busy).
      checkpoint: the pipeline checkpoint for the workers (default: the pretrained model).
    """
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import pandas as pd
    from tqdm.auto import tqdm

    from cgnn_jax.io import list_event_ids
    from cgnn_jax.io.read import read_submission

    ids = list_event_ids(data)
    tmp = None
    if parts_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cgnn_parts_")
        parts_dir = tmp.name
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    if tree_dir is not None:
        Path(tree_dir).mkdir(parents=True, exist_ok=True)
    todo = [i for i in ids if not _part_path(parts_dir, i).exists()]
    bar = tqdm(total=len(ids), initial=len(ids) - len(todo), unit="event", disable=not progress)
    try:
        if workers > 1 and len(todo) > 1:
            ctx = multiprocessing.get_context("spawn")  # jax is not fork-safe
            ck = None if checkpoint is None else str(checkpoint)
            with ProcessPoolExecutor(
                min(workers, len(todo)), mp_context=ctx, initializer=_init_worker, initargs=(ck,)
            ) as pool:
                futs = [pool.submit(_worker_task, data, i, parts_dir, tree_dir) for i in todo]
                for f in as_completed(futs):
                    f.result()
                    bar.update(1)
        else:
            pipe = pipe if pipe is not None else Pipeline.restore(checkpoint)
            for i in todo:
                reconstruct_event_to_part(pipe, data, i, parts_dir, tree_dir)
                bar.update(1)
        bar.close()
        frames = [read_submission(_part_path(parts_dir, i)) for i in ids]
        return pd.concat(frames, ignore_index=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
