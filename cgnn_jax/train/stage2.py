"""Stage 2 training: the edge-weighted GNN on stage-1 graphs, data-parallel over devices.

For each training event the GNN input is ``concat[hit features, stage-1 embedding]`` on the input
graph (stage 1's refined or embedding graph, ``config.gnn.input_graph``), with a pool of
*evaluation edges* (the stage-1 embedding graph ∪ random same-particle and random pairs). Events
are cut into η–φ sector sub-graphs with overlap margins so that training memory is bounded
whatever the event size, all padded to one node / edge budget (one compilation)
(:mod:`cgnn_jax.train.data`). Each step draws ``#devices x graphs_per_device`` sub-graphs and a
fresh balanced sample of their evaluation edges and minimises the mean over sub-graphs of the
hinge embedding loss on the squared distances of the GNN outputs.

Sharding (:func:`cgnn_jax.train.loop.make_train_step`): the batch (stacked padded sub-graphs,
``[B, ...]``) is sharded along the mesh axis ``'data'``, the train state replicated; the loss is
the mean over the whole batch, so XLA's partitioner inserts the all-reduce of the gradients and
the result equals one device processing the whole batch. Multi-host: call
:func:`maybe_initialize_distributed` first; each process feeds its local part of the batch.

The trained :class:`~cgnn_jax.inference.stage2.Stage2` (with its stage 1) is saved to
``<workdir>/stage2``; the run resumes from ``<workdir>/train/gnn``.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from cgnn_jax.inference.pipeline import restore_stage1
from cgnn_jax.inference.stage1 import Stage1
from cgnn_jax.inference.stage2 import (
    STAGE2_DIR,
    STAGE2_KIND,
    Stage2,
    gnn_inputs,
    input_graph,
    input_threshold,
)
from cgnn_jax.models import EdgeWeightedGNN, create_model
from cgnn_jax.train.data import (
    TrainingEvents,
    epoch_batch_at,
    eval_per_graph,
    event_subgraphs,
    pad_subgraphs,
    subgraph_budget,
    trainable_subgraphs,
)
from cgnn_jax.train.loop import (
    TrainState,
    fit,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
    shard_batch,
)
from cgnn_jax.train.losses import balanced_bce, hinge_embedding_loss

__all__ = [
    "STAGE2_DIR",
    "STAGE2_KIND",
    "Stage2",
    "batch_loss",
    "gnn_inputs",
    "graph_loss",
    "input_graph",
    "make_mesh",
    "maybe_initialize_distributed",
    "replicate",
    "shard_batch",
    "train_stage2",
]

WEIGHT_DECAY = 1e-5


def maybe_initialize_distributed() -> bool:
    """``jax.distributed.initialize()`` when a multi-process launch is detected; returns whether.

    Detected: ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``), or a
    SLURM job step with more than one task (``SLURM_NTASKS > 1``; jax reads the rest from SLURM).
    A no-op in a plain single-process run, and when already initialised.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        kw: dict[str, Any] = {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"]}
        if env.get("JAX_NUM_PROCESSES"):
            kw["num_processes"] = int(env["JAX_NUM_PROCESSES"])
        if env.get("JAX_PROCESS_ID"):
            kw["process_id"] = int(env["JAX_PROCESS_ID"])
        jax.distributed.initialize(**kw)
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_JOB_ID"):
        jax.distributed.initialize()
        return True
    return False


# --------------------------------------------------------------------------- loss


def edge_labels(b: dict) -> jnp.ndarray:
    """``[E]`` bool truth of the input edges of one padded graph: same particle (not noise)."""
    lab = b["label"]
    s, r = b["graph"].senders, b["graph"].receivers
    return (lab[s] == lab[r]) & (lab[s] > 0) & b["edge_mask"]


def graph_loss(
    model: EdgeWeightedGNN, params: Any, b: dict, margin: float, edge: dict | None = None
) -> tuple[jnp.ndarray, dict]:
    """Loss of one padded graph ``b`` (:meth:`PaddedGraph.arrays` + ``label``): the hinge
    embedding loss of the outputs and, with ``edge`` (``weight``, ``aux_weight``, ``pos_weight``,
    ``hinge_weight``), the binary cross-entropy of the last layer's edge weights ``a_ij`` against
    the edges' truth plus ``aux_weight`` x that of every earlier layer (:class:`InteractionGNN`).
    Returns ``(loss, metrics)``."""
    if edge is None:
        out = model.apply(params, b["graph"], b["edge_mask"], b["node_mask"])
        logits = []
    else:
        out, logits = model.apply(
            params, b["graph"], b["edge_mask"], b["node_mask"], return_logits=True
        )
    d2 = jnp.sum((out[b["eval_senders"]] - out[b["eval_receivers"]]) ** 2, axis=-1)
    hinge = hinge_embedding_loss(d2, b["eval_y"], b["eval_mask"], margin)
    if edge is None:
        return hinge, {"hinge": hinge}
    y = edge_labels(b)
    pw = float(edge["pos_weight"])
    bces = [balanced_bce(lg, y, b["edge_mask"], pw) for lg in logits]
    aux = sum(bces[:-1]) / max(len(bces) - 1, 1)
    loss = (
        float(edge["hinge_weight"]) * hinge
        + float(edge["weight"]) * bces[-1]
        + float(edge["aux_weight"]) * aux
    )
    return loss, {"hinge": hinge, "edge_bce": bces[-1], "aux_bce": aux}


def edge_loss_config(c: ml_collections.ConfigDict) -> dict | None:
    """The edge-loss weights of a ``config.gnn`` block (None for the thesis's GNN, which has
    no edge loss)."""
    if c.get("arch", "edge_weighted") != "interaction":
        return None
    return {
        "weight": c.get("edge_weight", 1.0),
        "aux_weight": c.get("aux_weight", 0.5),
        "pos_weight": c.get("pos_weight", 1.0),
        "hinge_weight": c.get("hinge_weight", 1.0),
    }


def batch_loss(
    model: EdgeWeightedGNN, params: Any, batch: dict, margin: float, edge: dict | None = None
) -> tuple[jnp.ndarray, dict]:
    """Mean of the per-graph losses (and metrics) of a stacked batch ``[B, ...]``.

    A batch of one graph (``graphs_per_device = 1`` on one device, the default) is not vmapped:
    XLA's CPU code for the batched gathers and scatters of a vmap over one graph made a training
    step 1.6x slower (2.06 vs 1.25 s at 20k nodes / 197k edges; ``docs/experiments.md``)."""
    if jax.tree_util.tree_leaves(batch)[0].shape[0] == 1:
        return graph_loss(
            model, params, jax.tree_util.tree_map(lambda a: a[0], batch), margin, edge
        )
    losses, ms = jax.vmap(lambda b: graph_loss(model, params, b, margin, edge))(batch)
    return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, ms)


def gnn_loss(model: EdgeWeightedGNN, margin: float, edge: dict | None = None):
    """``(params, batch, rng) -> (loss, metrics)`` for :func:`~cgnn_jax.train.loop.make_train_step`
    (deterministic: the step's randomness, the evaluation-edge sample, is drawn on the host)."""

    def loss_fn(params, batch, rng):
        del rng
        return batch_loss(model, params, batch, margin, edge)

    return loss_fn


def init_params(model: EdgeWeightedGNN, example: dict, rng: jax.Array) -> Any:
    """Parameters from one padded graph's arrays (unstacked)."""
    return model.init(rng, example["graph"], example["edge_mask"], example["node_mask"])


def initial_gnn_params(path: str | Path, like: Any) -> Any:
    """The GNN parameters of the stage-2 or pipeline checkpoint ``path``, to start a training from
    (``gnn.init_checkpoint``); they must have the structure and shapes of ``like`` (the fresh
    initialisation), else ``ValueError`` naming the checkpoint and the first mismatch."""
    from cgnn_jax.inference.checkpoint import CheckpointError
    from cgnn_jax.utils.trees import shape_mismatch

    try:
        params = Stage2.restore(path).params
    except (CheckpointError, FileNotFoundError, ValueError):
        from cgnn_jax.inference import Pipeline

        params = Pipeline.restore(path).params["gnn"]
    mismatch = shape_mismatch(like, params)
    if mismatch is not None:
        raise ValueError(
            f"gnn.init_checkpoint={str(path)!r}: its GNN does not fit this config ({mismatch})"
        )
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, b.dtype), params, like)


# --------------------------------------------------------------------------- training


def _resolve_stage1(config, workdir, stage1, log, events) -> Stage1:
    if stage1 is not None:
        return stage1
    if config.stage1_checkpoint:
        log(f"stage 1 from {config.stage1_checkpoint}")
        return restore_stage1(config.stage1_checkpoint)
    from cgnn_jax.train.stage1 import train_stage1

    log("no stage 1 given: training it first")
    return train_stage1(config, workdir, log=log, events=events)


def train_stage2(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    stage1: Stage1 | None = None,
    log=print,
    mesh=None,
    events: TrainingEvents | None = None,
) -> Stage2:
    """Train the GNN on sector sub-graphs of the training events and save it under ``workdir``.

    Args:
      config: a full config (``gnn``, ``data``, ``loop``, as ``configs/default.py``).
      workdir: output folder; the model goes to ``<workdir>/stage2``, the resumable run to
        ``<workdir>/train/gnn``.
      stage1: the trained stage 1; None: restore ``config.stage1_checkpoint`` or, if that is None
        too, train stage 1 first (into ``workdir``).
      mesh: device mesh (default: all devices, axis ``'data'``).
      events: the run's shared training events (default: simulate ``config.data``).
    Returns:
      the trained :class:`Stage2` (with the stage 1 bundled).
    """
    t0 = time.time()
    workdir = Path(workdir)
    events = events or TrainingEvents(config, log)
    stage1 = _resolve_stage1(config, workdir, stage1, log, events)
    c = config.gnn
    mesh = mesh or make_mesh()
    batch_size = mesh.devices.size * c.graphs_per_device
    local_batch = batch_size // jax.process_count()
    evs, mix = events.gnn_train, events.gnn_mix  # mix: events of another density (or none)
    subs = []
    # the mixed events' input graph at gnn.mix_input_threshold when set (a filter cut that keeps
    # as many edges per hit at their density; < 0: stage 1's learned cut), else gnn.input_threshold
    mix_key = "input_threshold" if c.get("mix_input_threshold") is None else "mix_input_threshold"
    mix_cut = input_threshold(c, mix_key)
    groups = (
        (evs, c.sectors, input_threshold(c)),
        (mix, tuple(c.get("mix_sectors", c.sectors)), mix_cut),
    )
    for group, sectors, cut in groups:
        graphs = events.graphs(stage1, group, c.input_graph, cut)
        for ev, g in zip(group, graphs, strict=True):
            x = gnn_inputs(ev, stage1)
            subs += event_subgraphs(config, ev, x, g, sectors, config.seed)
    subs = trainable_subgraphs(subs)
    data = pad_subgraphs(subs, subgraph_budget(subs), eval_per_graph(config))
    log(
        f"stage 2: {len(data)} sub-graphs of {len(evs) + len(mix)} events, "
        f"{mesh.devices.size} device(s), "
        f"batch {batch_size}, budget {data.budget[0]:,} nodes / {data.budget[1]:,} edges, "
        f"{data.n_eval} evaluation edges each"
    )
    model = create_model(config, "gnn")
    rng, init_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    params = jax.jit(init_params, static_argnums=0)(model, data.graphs[0].arrays(), init_rng)
    if c.get("init_checkpoint", ""):
        params = initial_gnn_params(c.init_checkpoint, params)
        log(f"stage 2: GNN parameters from {c.init_checkpoint}")
    tx = make_optimizer(
        c.learning_rate, max(c.steps, 1), clip_norm=c.clip_norm, weight_decay=WEIGHT_DECAY
    )
    state = fit(
        TrainState.new(params, tx),
        make_train_step(gnn_loss(model, c.margin, edge_loss_config(c)), tx, mesh),
        epoch_batch_at(data, local_batch, c.steps, config.seed, shuffle=False),
        num_steps=c.steps,
        workdir=workdir / "train" / "gnn",
        rng=rng,
        config=config.to_dict(),
        log_every=config.loop.log_every,
        checkpoint_every=config.loop.checkpoint_every,
        mesh=mesh,
        place_batch=functools.partial(shard_batch, mesh),
        desc="gnn",
        log=log,
    )
    model2 = Stage2(config, state.params, stage1)
    # every process calls save (orbax coordinates multi-host saves; the primary writes)
    model2.save(workdir, extra={"train_seconds": time.time() - t0})
    log(f"stage 2 trained in {time.time() - t0:.0f} s; checkpoint in {workdir / STAGE2_DIR}")
    return model2
