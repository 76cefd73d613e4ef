"""Stage 2 training: the edge-weighted GNN on stage-1 graphs, data-parallel over devices.

``train_stage2(config, workdir, stage1)`` builds, for each training event, the GNN input
(``concat[hit features, stage-1 embedding]``), the input graph (stage 1's refined or embedding
graph, ``config.gnn.input_graph``) and a pool of *evaluation edges* (the stage-1 embedding graph ∪
random same-particle pairs). Events are cut into η–φ sector sub-graphs with overlap margins
(:func:`cgnn_jax.graph.batch.sector_subgraphs`) so that training memory is bounded whatever the
event size; all sub-graphs are padded to one node / edge budget (one compilation). Each step draws
``#devices x graphs_per_device`` sub-graphs and a fresh balanced sample of their evaluation edges
(``eval_edges_per_event / n_sectors`` per sub-graph, half true, half false) and minimises the mean
over sub-graphs of the hinge embedding loss on the squared distances of the GNN outputs.

Sharding: one ``jax.jit`` train step ``(params, opt_state, batch, rng) -> (params, opt_state,
metrics)`` with explicit ``in_shardings`` / ``out_shardings`` over a ``Mesh`` of all devices with
the axis ``'data'``: the batch (stacked padded sub-graphs, leading axis ``[B]``) is sharded with
``P('data')``, params and optimiser state are replicated (``P()``). The loss is the mean over the
whole (global) batch, so XLA's SPMD partitioner computes per-device partial gradients and inserts
the all-reduce that averages them; the result is the same as one device processing the whole batch.
Multi-host: call :func:`maybe_initialize_distributed` first; each process then feeds its local
part of the batch (:func:`shard_batch` uses ``jax.make_array_from_process_local_data``).

Inference (:meth:`Stage2.embed`) runs on the whole event as one padded graph.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from cgnn_jax.graph.batch import (
    PaddedGraph,
    balanced_sample,
    eval_edge_pool,
    graph_budget,
    padded_graph,
    sector_subgraphs,
    stack_graphs,
)
from cgnn_jax.models.gnn import EdgeWeightedGNN, create_gnn
from cgnn_jax.train.checkpoint import restore_checkpoint, save_checkpoint
from cgnn_jax.train.data import PreparedEvent, prepare_event, simulated_events
from cgnn_jax.train.losses import hinge_embedding_loss
from cgnn_jax.train.stage1 import Stage1, train_stage1

STAGE2_KIND = "stage2"
STAGE2_DIR = (
    "stage2"  # checkpoints under <workdir>/stage2/checkpoints (stage 1: <workdir>/checkpoints)
)


# --------------------------------------------------------------------------- distribution


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


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ``Mesh`` with axis ``'data'`` over ``devices`` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def shard_batch(mesh: Mesh, batch: dict) -> dict:
    """Place a stacked batch ``[B, ...]`` sharded along ``'data'`` (this process's part if
    multi-host: ``B`` is then the local batch)."""
    sharding = NamedSharding(mesh, P("data"))
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, a), batch
    )


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Place a pytree replicated on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


# --------------------------------------------------------------------------- model and loss


def graph_loss(model: EdgeWeightedGNN, params: Any, b: dict, margin: float) -> jnp.ndarray:
    """Hinge embedding loss of one padded graph ``b`` (:meth:`PaddedGraph.arrays`): scalar."""
    out = model.apply(params, b["graph"], b["edge_mask"], b["node_mask"])
    d2 = jnp.sum((out[b["eval_senders"]] - out[b["eval_receivers"]]) ** 2, axis=-1)
    return hinge_embedding_loss(d2, b["eval_y"], b["eval_mask"], margin)


def batch_loss(model: EdgeWeightedGNN, params: Any, batch: dict, margin: float) -> jnp.ndarray:
    """Mean of the per-graph losses of a stacked batch ``[B, ...]``."""
    return jnp.mean(jax.vmap(lambda b: graph_loss(model, params, b, margin))(batch))


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    c = config.gnn
    return optax.chain(
        optax.clip_by_global_norm(c.get("clip_norm", 1.0)),
        optax.adamw(
            optax.cosine_decay_schedule(c.learning_rate, max(c.steps, 1)), weight_decay=1e-5
        ),
    )


def make_train_step(
    model: EdgeWeightedGNN, tx: optax.GradientTransformation, margin: float, mesh: Mesh
):
    """The jitted, sharded train step ``(params, opt_state, batch, rng) -> (params, opt, metrics)``.

    ``batch``: stacked padded graphs ``[B, ...]``, ``B`` a multiple of the mesh size, sharded on
    ``'data'``; params / opt_state / rng replicated. ``rng`` is accepted for the common step
    signature; the model is deterministic (the step's randomness, the evaluation-edge sample, is
    drawn on the host).
    """
    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))

    def step(params, opt_state, batch, rng):
        del rng
        loss, grads = jax.value_and_grad(lambda p: batch_loss(model, p, batch, margin))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return jax.jit(
        step,
        in_shardings=(repl, repl, data, repl),
        out_shardings=(repl, repl, repl),
        donate_argnums=(0, 1),
    )


def init_params(model: EdgeWeightedGNN, example: dict, rng: jax.Array) -> Any:
    """Parameters from one padded graph's arrays (unstacked)."""
    return model.init(rng, example["graph"], example["edge_mask"], example["node_mask"])


@functools.partial(jax.jit, static_argnums=(0, 5))
def _apply(model, params, graph, edge_mask, node_mask, return_weights=False):
    return model.apply(params, graph, edge_mask, node_mask, return_weights=return_weights)


# --------------------------------------------------------------------------- data


def gnn_inputs(ev: PreparedEvent, stage1: Stage1) -> np.ndarray:
    """``[n, F + d]`` float32: hit features and the stage-1 embedding of every hit."""
    return np.concatenate([ev.hf.x, stage1.embed(ev)], axis=1).astype(np.float32)


def input_graph(
    ev: PreparedEvent, stage1: Stage1, kind: str, emb_graph=None
) -> tuple[np.ndarray, np.ndarray]:
    """The GNN's input graph ``(senders, receivers)``: stage 1's ``"refined"`` or ``"embedding"``
    graph (``emb_graph``: the embedding graph if already computed)."""
    if kind not in ("refined", "embedding"):
        raise ValueError(f"unknown input_graph {kind!r}; valid: 'refined', 'embedding'")
    s, r = emb_graph if emb_graph is not None else stage1.embedding_graph(ev)
    if kind == "embedding":
        return s, r
    s2, r2, _ = stage1.refined_graph(ev, s, r)
    return s2, r2


@dataclasses.dataclass
class EventGraphs:
    """One event's GNN data: inputs ``x [n, F+d]``, input edges, evaluation-edge pool ``(s, r, y)``."""

    x: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    eval_pool: tuple[np.ndarray, np.ndarray, np.ndarray]


def event_graphs(
    config: ml_collections.ConfigDict, ev: PreparedEvent, stage1: Stage1, seed: int = 0
) -> EventGraphs:
    """Inputs, input graph and evaluation-edge pool of one event."""
    c = config.gnn
    rng = np.random.default_rng([seed, ev.event_id])
    es, er = stage1.embedding_graph(ev)
    s, r = input_graph(ev, stage1, c.input_graph, (es, er))
    pool = eval_edge_pool(
        es,
        er,
        ev.pid,
        int(c.get("true_pairs_per_hit", 1.0) * ev.n),
        rng,
        int(c.get("random_pairs_per_hit", 0.0) * ev.n),
    )
    return EventGraphs(gnn_inputs(ev, stage1), s, r, pool)


def eval_per_graph(config: ml_collections.ConfigDict) -> int:
    """Evaluation edges per sub-graph (static): ``eval_edges_per_event / n_sectors``, even."""
    n_eta, n_phi = config.gnn.sectors
    return max(2 * math.ceil(config.gnn.eval_edges_per_event / (n_eta * n_phi) / 2), 2)


def training_subgraphs(
    config: ml_collections.ConfigDict, events: list[EventGraphs], positions: list[np.ndarray]
) -> tuple[list[PaddedGraph], list[tuple], tuple[int, int]]:
    """All sector sub-graphs of the training events, padded to one common budget.

    Returns ``(graphs, eval_pools, budget)``: padded graphs (without evaluation edges), each one's
    local evaluation-edge pool ``(s, r, y)``, and the ``(node, edge)`` budget.
    """
    c = config.gnn
    n_eta, n_phi = c.sectors
    subs = []
    for eg, pos in zip(events, positions, strict=True):
        subs += sector_subgraphs(
            eg.x, pos, eg.senders, eg.receivers, eg.eval_pool,
            n_eta, n_phi, c.sector_margin_eta, c.sector_margin_phi,
        )  # fmt: skip
    subs = [s for s in subs if s["eval"][2].any() and (~s["eval"][2]).any()]
    if not subs:
        raise ValueError("no training sub-graph holds both true and false evaluation edges")
    budget = graph_budget(max(len(s["x"]) for s in subs), max(len(s["senders"]) for s in subs))
    m = eval_per_graph(config)
    graphs = [
        padded_graph(s["x"], s["senders"], s["receivers"], None, budget, m, s["nodes_index"])
        for s in subs
    ]
    return graphs, [s["eval"] for s in subs], budget


def sample_batch(
    graphs: list[PaddedGraph],
    pools: list[tuple],
    idx: np.ndarray,
    m: int,
    rng: np.random.Generator,
) -> dict:
    """Stack the sub-graphs ``idx`` with a fresh balanced sample of ``m`` evaluation edges each."""
    out = []
    for i in idx:
        s, r, y = balanced_sample(*pools[i], m, rng)
        g = graphs[i]
        k = len(s)
        out.append(
            dataclasses.replace(
                g,
                eval_senders=_pad(s, m, np.int32),
                eval_receivers=_pad(r, m, np.int32),
                eval_y=_pad(y, m, bool),
                eval_mask=np.arange(m) < k,
            )
        )
    return stack_graphs(out)


def _pad(a: np.ndarray, m: int, dtype) -> np.ndarray:
    out = np.zeros(m, dtype)
    out[: len(a)] = a[:m]
    return out


# --------------------------------------------------------------------------- inference object


@dataclasses.dataclass
class Stage2:
    """A trained stage 2: the GNN parameters, its config and (bundled) the stage 1 it was trained on.

    The checkpoint holds the stage-1 parameters too, so one path restores the whole pipeline.
    """

    config: ml_collections.ConfigDict
    params: Any
    stage1: Stage1 | None = None

    @property
    def model(self) -> EdgeWeightedGNN:
        return create_gnn(self.config.gnn)

    def _stage1(self, stage1: Stage1 | None) -> Stage1:
        s1 = stage1 if stage1 is not None else self.stage1
        if s1 is None:
            raise ValueError("Stage2 needs a stage 1 (none given and none bundled)")
        return s1

    def padded_event(self, ev: PreparedEvent, stage1: Stage1 | None = None) -> PaddedGraph:
        """The whole event as one padded graph (no evaluation edges)."""
        s1 = self._stage1(stage1)
        s, r = input_graph(ev, s1, self.config.gnn.input_graph)
        return padded_graph(gnn_inputs(ev, s1), s, r)

    def apply_padded(self, g: PaddedGraph, return_weights: bool = False):
        """GNN outputs ``[N, out_dim]`` of a padded graph (and per-layer edge weights ``[E]``)."""
        return _apply(self.model, self.params, g.graph, g.edge_mask, g.node_mask, return_weights)

    def embed(self, ev: PreparedEvent, stage1: Stage1 | None = None) -> np.ndarray:
        """``[n, out_dim]``: every hit of the event in the learned cluster space."""
        g = self.padded_event(ev, stage1)
        return np.asarray(self.apply_padded(g))[: ev.n]

    def edge_weights(
        self, ev: PreparedEvent, stage1: Stage1 | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """``(senders, receivers, [a_ij per layer])`` of the input graph (for analysis)."""
        g = self.padded_event(ev, stage1)
        _, ws = self.apply_padded(g, return_weights=True)
        e = int(g.graph.n_edge[0])
        return g.graph.senders[:e], g.graph.receivers[:e], [np.asarray(w)[:e] for w in ws]

    def save(self, workdir: str | Path, step: int = 0, extra: dict | None = None) -> Path:
        """Save under ``<workdir>/stage2/checkpoints`` (kind ``"stage2"``)."""
        state: dict[str, Any] = {"gnn": self.params}
        meta = dict(extra or {})
        if self.stage1 is not None:
            state["stage1"] = {
                "embedding": self.stage1.emb_params,
                "filter": self.stage1.filter_params,
            }
            meta["stage1_config"] = self.stage1.config.to_dict()
        return save_checkpoint(
            Path(workdir) / STAGE2_DIR / "checkpoints",
            step,
            state,
            kind=STAGE2_KIND,
            config=self.config.to_dict(),
            extra=meta,
        )

    @classmethod
    def restore(cls, path: str | Path, step: int | None = None) -> Stage2:
        """From a workdir, its ``stage2`` folder, or the ``checkpoints`` folder itself."""
        path = Path(path)
        for cand in (path / STAGE2_DIR / "checkpoints", path / "checkpoints"):
            if cand.is_dir():
                path = cand
                break
        state, meta = restore_checkpoint(path, step, kind=STAGE2_KIND)
        config = ml_collections.ConfigDict(meta["config"])
        s1 = None
        if "stage1" in state:
            s1 = Stage1(
                ml_collections.ConfigDict(meta["stage1_config"]),
                state["stage1"]["embedding"],
                state["stage1"]["filter"],
            )
        return cls(config, state["gnn"], s1)


# --------------------------------------------------------------------------- training


def _resolve_stage1(config, workdir, stage1, log) -> Stage1:
    if stage1 is not None:
        return stage1
    path = config.get("stage1_checkpoint", None)
    if path:
        log(f"stage 1 from {path}")
        return Stage1.restore(path)
    log("no stage 1 given: training it first")
    return train_stage1(config, workdir, log=log)


def train_stage2(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    stage1: Stage1 | None = None,
    log=print,
    mesh: Mesh | None = None,
) -> Stage2:
    """Train the GNN on sector sub-graphs of simulated events and save it under ``workdir``.

    Args:
      config: a ``configs/stage2.py`` config (``config.gnn``; ``config.data`` as in stage 1).
      workdir: output folder; the checkpoint goes to ``<workdir>/stage2/checkpoints``.
      stage1: the trained stage 1; None: restore ``config.stage1_checkpoint`` or, if that is None
        too, train stage 1 first (into ``workdir``).
      mesh: device mesh (default: all devices, axis ``'data'``).
    Returns:
      the trained :class:`Stage2` (with the stage 1 bundled).
    """
    t0 = time.time()
    stage1 = _resolve_stage1(config, workdir, stage1, log)
    c, d = config.gnn, config.data
    mesh = mesh or make_mesh()
    n_dev = mesh.devices.size
    batch_size = n_dev * c.get("graphs_per_device", 1)
    local_batch = batch_size // jax.process_count()
    log(f"stage 2: {d.train_events} events (mu={d.mu}), {n_dev} device(s), batch {batch_size}")
    raw = simulated_events(d.train_events, d.seed, d.mu, d.track_fraction)
    evs = [prepare_event(e) for e in raw]
    egs = [event_graphs(config, ev, stage1, config.seed) for ev in evs]
    graphs, pools, budget = training_subgraphs(config, egs, [ev.hf.pos for ev in evs])
    m = eval_per_graph(config)
    log(
        f"{len(graphs)} sub-graphs, budget {budget[0]:,} nodes / {budget[1]:,} edges, "
        f"{m} evaluation edges each; input edges per hit "
        f"{np.mean([len(e.senders) / len(e.x) for e in egs]):.1f}"
    )
    model = create_gnn(c)
    rng = jax.random.PRNGKey(config.seed)
    rng, init_rng = jax.random.split(rng)
    params = init_params(model, graphs[0].arrays(), init_rng)
    tx = make_optimizer(config)
    opt_state = tx.init(params)
    params, opt_state = replicate(mesh, params), replicate(mesh, opt_state)
    step = make_train_step(model, tx, c.margin, mesh)
    np_rng = np.random.default_rng([config.seed, jax.process_index()])
    history = []
    log_every = c.get("log_every", 50)
    bar = tqdm(range(c.steps), desc="gnn", unit="step", mininterval=2.0)
    for it in bar:
        idx = np_rng.choice(len(graphs), size=local_batch, replace=len(graphs) < local_batch)
        batch = shard_batch(mesh, sample_batch(graphs, pools, idx, m, np_rng))
        rng, sub = jax.random.split(rng)
        params, opt_state, metrics = step(params, opt_state, batch, sub)
        if it % log_every == 0 or it == c.steps - 1:
            loss = float(metrics["loss"])
            history.append({"phase": "gnn", "step": it, "loss": loss})
            bar.set_postfix(loss=f"{loss:.4f}")
    params = jax.device_get(params)
    model2 = Stage2(config, params, stage1)
    # every process calls save (orbax coordinates multi-host saves; the primary writes)
    model2.save(workdir, extra={"history": history, "train_seconds": time.time() - t0})
    log(f"stage 2 trained in {time.time() - t0:.0f} s; checkpoint in {workdir}/{STAGE2_DIR}")
    return model2
