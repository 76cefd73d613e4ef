"""Stage 3 and end-to-end training: Split/Stop on the GNN, then every stage jointly.

Both phases are one loss function run by :func:`cgnn_jax.train.loop.fit`:

    x (hit features) -> input embedding MLP -> GNN (on the stage-1 graph) -> h = [GNN out, x]
      -> unrolled Split/Stop training tree -> split loss + stop loss (+ GNN hinge loss)

* ``stage3``: only ``split`` and ``stop`` are trained (the GNN is frozen);
* ``e2e``: ``input_embedding``, ``gnn``, ``split`` and ``stop`` are trained together, so the
  clustering losses reach the GNN and the embedding. The graph itself (stage-1 kNN + edge filter,
  built on the host) is not differentiable and stays as stage 1 made it.

Training data are the η–φ sector sub-graphs of the training events (bounded memory whatever the
event size), padded to one budget (one compilation); each sub-graph's points are clustered as one
point set. An epoch is one pass over the training sub-graphs; after each, the loss on the
sub-graphs of held-out validation events is logged (``cluster.val_loss``) and the TrackML score of the whole pipeline on
those events decides: the learning rate is cut x0.1 after ``cluster.patience`` epochs without a
gain, and the phase returns the parameters of the best score (its starting point included, so a
phase never makes the model worse on validation). Each phase checkpoints to
``<workdir>/train/<phase>`` (every epoch, and every ``loop.checkpoint_every`` steps) and resumes
from there; its metrics go to ``<workdir>/train/<phase>/metrics.csv``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from cgnn_jax.cluster.objective import clustering_loss
from cgnn_jax.features.hits import n_features
from cgnn_jax.inference.checkpoint import latest_step
from cgnn_jax.inference.events import as_prepared
from cgnn_jax.inference.pipeline import Pipeline
from cgnn_jax.inference.pipeline_checkpoint import PIPELINE_DIR
from cgnn_jax.inference.stage2 import Stage2, gnn_forward, input_threshold
from cgnn_jax.inference.stage3 import atom_mode, atoms, cluster_features
from cgnn_jax.metrics import score_event
from cgnn_jax.models import create_model
from cgnn_jax.train.data import (
    SubgraphSet,
    TrainingEvents,
    epoch_batch_at,
    eval_per_graph,
    event_subgraphs,
    pad_subgraphs,
    prepare_event,
    sample_batch,
    subgraph_budget,
    trainable_subgraphs,
)
from cgnn_jax.train.loop import (
    TrainState,
    finished_epochs,
    fit,
    make_mesh,
    make_optimizer,
    make_train_step,
    shard_batch,
)
from cgnn_jax.train.losses import hinge_embedding_loss

PHASES = {"stage3": ("split", "stop"), "e2e": ("input_embedding", "gnn", "split", "stop")}
WEIGHT_DECAY = 1e-5


def pipeline_from_stage2(config: ml_collections.ConfigDict, stage2: Stage2) -> Pipeline:
    """A :class:`Pipeline` with stage 1 and 2 from ``stage2`` and freshly initialised Split/Stop."""
    if stage2.stage1 is None:
        raise ValueError("stage 2 has no bundled stage 1")
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.gnn = ml_collections.ConfigDict(stage2.config.gnn.to_dict())
    s1 = stage2.stage1
    cc = cfg.cluster
    d = cfg.gnn.out_dim + (n_features() if cc.inputs == "gnn+features" else 0)
    k1, k2 = jax.random.split(jax.random.PRNGKey(config.seed + 3))
    h, seg, mask = jnp.zeros((8, d)), jnp.zeros(8, jnp.int32), jnp.ones(8, bool)
    params = {
        "embedding": s1.emb_params,
        "filter": s1.filter_params,
        "input_embedding": s1.emb_params,
        "gnn": stage2.params,
        # one jit per init (eager init compiles every small op on its own: slow)
        "split": jax.jit(create_model(cfg, "split").init, static_argnums=4)(k1, h, seg, mask, 8),
        "stop": jax.jit(create_model(cfg, "stop").init, static_argnums=4)(k2, h, seg, mask, 8),
    }
    if s1.prefilter_params is not None:
        params["prefilter"] = s1.prefilter_params
    if s1.context_params:
        params["context"] = s1.context_params
    return Pipeline(cfg, s1.config, params, {"learned": dict(s1.learned)})


# --------------------------------------------------------------------------- data


def cluster_data(
    config, pipe: Pipeline, events: TrainingEvents, log=print
) -> tuple[SubgraphSet, SubgraphSet]:
    """``(train, val)``: sector sub-graphs (nodes: hit features) of the training and validation
    events, padded to one budget for both."""
    s1, kind, sectors = pipe.stage1, pipe.config.gnn.input_graph, pipe.config.cluster.sectors

    def subgraphs(evs):
        graphs = events.graphs(s1, evs, kind, input_threshold(pipe.config.gnn))
        return [
            s
            for ev, g in zip(evs, graphs, strict=True)
            for s in event_subgraphs(config, ev, ev.hf.x, g, sectors, config.seed)
        ]

    tsubs = trainable_subgraphs(subgraphs(events.gnn_train))
    vsubs = [
        s for s in subgraphs([prepare_event(e) for e in events.validation]) if len(s["x"]) >= 2
    ]
    vsubs = vsubs or tsubs[:1]
    budget = subgraph_budget(tsubs + vsubs)
    m = eval_per_graph(config)
    log(
        f"stage 3 data: {len(tsubs)} training and {len(vsubs)} validation sub-graphs, "
        f"budget {budget[0]:,} nodes / {budget[1]:,} edges"
    )
    return pad_subgraphs(tsubs, budget, m), pad_subgraphs(vsubs, budget, m)


# --------------------------------------------------------------------------- loss


def graph_objective(pipe: Pipeline, params: dict, b: dict, hinge_weight: float):
    """``(loss, metrics)`` of one padded sub-graph ``b`` (unstacked)."""
    cc = pipe.config.cluster
    split, stop = pipe.stage3.split_stop
    stage2 = pipe.stage2
    out, a = gnn_forward(
        stage2.emb_model,
        stage2.gnn_model,
        params["input_embedding"],
        params["gnn"],
        b["graph"],
        b["edge_mask"],
        b["node_mask"],
        return_weights=True,
    )
    h = cluster_features(out, b["graph"].nodes, cc.inputs)
    g = b["graph"]
    layer = b.get("layer")
    if layer is None:  # sub-graphs made without layers: only the components' atoms need none
        if atom_mode(cc) == "layers":
            raise ValueError("cluster.merge='layers' needs the sub-graphs' layer indices")
        layer = jnp.zeros(g.nodes.shape[0], jnp.int32)
    groups = atoms(cc, g.senders, g.receivers, a, b["edge_mask"], layer, g.nodes.shape[0])
    loss, m = clustering_loss(
        lambda *a: split.apply(params["split"], *a),
        lambda *a: stop.apply(params["stop"], *a),
        h,
        b["node_mask"],
        b["label"],
        int(cc.train_depth),
        int(cc.min_size),
        float(cc.stop_weight),
        groups,
    )
    if hinge_weight > 0:
        d2 = jnp.sum((out[b["eval_senders"]] - out[b["eval_receivers"]]) ** 2, axis=-1)
        m["hinge"] = hinge_embedding_loss(d2, b["eval_y"], b["eval_mask"], pipe.config.gnn.margin)
        loss = loss + hinge_weight * m["hinge"]
    return loss, m


def phase_loss(pipe: Pipeline, trainable: tuple[str, ...], hinge_weight: float, n_devices: int):
    """``(params, batch, rng) -> (loss, metrics)``: the mean objective of a stacked batch of
    sub-graphs. ``params`` holds the trainable groups; the frozen ones are the pipeline's
    (closed over as constants)."""
    frozen = {k: v for k, v in pipe.params.items() if k not in trainable}

    def loss_fn(params, batch, rng):
        del rng  # deterministic: the step's randomness (edge samples) is drawn on the host
        p = {**frozen, **params}
        fn = lambda b: graph_objective(pipe, p, b, hinge_weight)  # noqa: E731
        # one device: lax.map keeps the recursion's lax.cond (skipping the median sort at levels
        # with no degenerate split); vmap would turn it into a select that always sorts
        losses, ms = jax.vmap(fn)(batch) if n_devices > 1 else jax.lax.map(fn, batch)
        return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, ms)

    return loss_fn


# --------------------------------------------------------------------------- training


def validation_score(pipe: Pipeline, params: dict, events: list) -> float:
    """Mean TrackML score of ``pipe`` with ``params`` on whole events with truth."""
    trial = dataclasses.replace(pipe, params={**pipe.params, **jax.device_get(params)})
    out = []
    for ev in events:
        tid = trial.reconstruct(ev)
        sub = pd.DataFrame({"hit_id": ev.hits["hit_id"].to_numpy(), "track_id": tid})
        out.append(score_event(ev.truth, sub))
    return float(np.mean(out))


# 1.0: Stop never ends a cluster, so the tree splits down to its atoms (or to max_depth /
# min_size); the grid reaches it because a model whose Stop only ever merges atoms that belong
# apart should be calibrated to say so (the shipped model is one: docs/experiments.md)
STOP_GRID = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)


def calibrate_stop_threshold(
    pipe: Pipeline, events: list, grid: tuple[float, ...] = STOP_GRID, log=print
) -> Pipeline:
    """``pipe`` with Stop's cut chosen on whole ``events`` with truth: the ``grid`` value of the
    best mean TrackML score (the lowest of equals), kept as ``learned["stop_threshold"]`` (as
    stage 1 keeps its filter cut). Stages 1-2 run once per event; only the clustering (and the
    track extension, :meth:`Pipeline.extend`) reruns."""
    if not events:
        raise ValueError("calibrate_stop_threshold: no validation events")
    pre = []
    for ev in events:
        prepared = as_prepared(ev)
        run = pipe.for_hits(prepared.n)
        out = run.stage_outputs(prepared, cluster=False)
        pre.append((ev, prepared, run, ev.hits["hit_id"].to_numpy(), out["h"], out["groups"]))
    scores = []
    for t in grid:
        per = []
        for ev, prepared, run, hit_id, h, groups in pre:
            # the tracks as reconstruct() delivers them: the tree's leaves, then the extension
            stage3 = run.stage3
            tid = stage3.extend(
                prepared, stage3.track_ids(h, groups, stop_threshold=t, votes=False)["track_id"]
            )
            per.append(score_event(ev.truth, pd.DataFrame({"hit_id": hit_id, "track_id": tid})))
        scores.append(float(np.mean(per)))
    best = int(np.argmax(scores))  # argmax: the first (lowest) of equal scores
    log(
        "stage3: Stop's cut on the validation events: "
        + ", ".join(f"{t:g} -> {v:.4f}" for t, v in zip(grid, scores, strict=True))
        + f"; keeping {grid[best]:g}"
    )
    learned = {**pipe.learned, "stop_threshold": float(grid[best])}
    return dataclasses.replace(pipe, meta={**pipe.meta, "learned": learned})


#: The layer merge's settings :func:`calibrate_merge` tries: ``(merge_threshold,
#: merge_max_shared)``. With the track extension a higher cut pays on full events (purer atoms,
#: the extension joins what the cut leaves apart): ``docs/experiments.md``, track extension.
MERGE_GRID = tuple((t, m) for m in (1, 2) for t in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9))
#: With each merge setting, the track extension's ``extend_free_max`` values tried (tracks of at
#: most that many hits give theirs away; ``extend_min_size = free_max + 1``), if it is on.
EXTEND_FREE_GRID = (1, 2, 3)


def calibrate_merge(
    pipe: Pipeline,
    events: list,
    grid: tuple[tuple[float, int], ...] = MERGE_GRID,
    free_grid: tuple[int, ...] = EXTEND_FREE_GRID,
    log=print,
) -> Pipeline:
    """``pipe`` (``cluster.merge = "layers"``, without a dense variant) with the layer merge's
    cut ``merge_threshold`` and shared-layer limit ``merge_max_shared`` (and, if the model extends
    its tracks, ``cluster.extend_iterations > 0``, the extension's ``extend_free_max`` from
    ``free_grid`` with ``extend_min_size = free_max + 1``) chosen on whole ``events`` with truth:
    the setting of the best mean TrackML score of the tracks as :meth:`Pipeline.reconstruct`
    delivers them (the tree at Stop's current cut, then the extension); ties: the first in
    ``grid`` x ``free_grid`` order. Stages 1-2 run once per event, the tree once per merge
    setting."""
    if not events:
        raise ValueError("calibrate_merge: no validation events")
    if atom_mode(pipe.config.cluster) != "layers":
        raise ValueError(
            f"calibrate_merge: the model's atoms are cluster.merge="
            f"{pipe.config.cluster.get('merge', 'components')!r}, not the layer merge"
        )
    if pipe.dense is not None:
        raise ValueError("calibrate_merge: calibrate the model and its dense variant one by one")
    extends = int(pipe.config.cluster.get("extend_iterations", 0)) > 0
    frees = tuple(free_grid) if extends else (None,)
    pre = []
    for ev in events:
        prepared = as_prepared(ev)
        pre.append((ev, prepared, pipe.stage_outputs(prepared, cluster=False)))
    settings, scores = [], []
    for threshold, shared in grid:
        trial = pipe.with_cluster_config(
            merge_threshold=float(threshold), merge_max_shared=int(shared)
        )
        tids = []
        stage3 = trial.stage3
        for _, prepared, out in pre:
            groups = stage3.groups(prepared, out["senders"], out["receivers"], out["edge_score"])
            tids.append(stage3.track_ids(out["h"], groups, votes=False)["track_id"])
        for free in frees:
            run = trial if free is None else trial.with_cluster_config(
                extend_free_max=int(free), extend_min_size=int(free) + 1
            )  # fmt: skip
            per = []
            extend = run.stage3.extend
            for (ev, prepared, _), tid in zip(pre, tids, strict=True):
                sub = pd.DataFrame(
                    {"hit_id": ev.hits["hit_id"].to_numpy(), "track_id": extend(prepared, tid)}
                )
                per.append(score_event(ev.truth, sub))
            settings.append((threshold, shared, free))
            scores.append(float(np.mean(per)))
    best = int(np.argmax(scores))
    threshold, shared, free = settings[best]

    def name(t, m, f):
        return f"{t:g}/{m}" + ("" if f is None else f"/free<={f}")

    log(
        "stage3: the layer merge on the validation events (cut/shared layers"
        + ("/extension's free size" if extends else "")
        + "): "
        + ", ".join(f"{name(*k)} -> {v:.4f}" for k, v in zip(settings, scores, strict=True))
        + f"; keeping {name(threshold, shared, free)}"
    )
    values = {"merge_threshold": float(threshold), "merge_max_shared": int(shared)}
    if free is not None:
        values.update(extend_free_max=int(free), extend_min_size=int(free) + 1)
    return pipe.with_cluster_config(**values)


def train_phase(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    pipe: Pipeline,
    phase: str,
    events: TrainingEvents,
    data: Callable[[], tuple[SubgraphSet, SubgraphSet]] | None = None,
    log=print,
    mesh=None,
) -> Pipeline:
    """Train the parameter groups of ``phase`` (``"stage3"`` or ``"e2e"``); resumable from
    ``<workdir>/train/<phase>``. Returns a new :class:`Pipeline` with the best parameters.

    ``data``: returns the ``(train, val)`` sub-graphs (default :func:`cluster_data`); not called
    when the phase is already finished."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    cc = pipe.config.cluster
    trainable = PHASES[phase]
    hinge_w = float(cc.hinge_weight) if phase == "e2e" else 0.0
    epochs = int(cc.epochs if phase == "stage3" else cc.e2e_epochs)
    lr = float(cc.learning_rate if phase == "stage3" else cc.e2e_learning_rate)
    mesh = mesh or make_mesh()
    n_dev = mesh.devices.size
    batch_size = n_dev * int(cc.graphs_per_device)
    local_batch = batch_size // jax.process_count()
    run_dir = Path(workdir) / "train" / phase
    tx = make_optimizer(lr, None, clip_norm=cc.clip_norm, weight_decay=WEIGHT_DECAY)
    start = TrainState.new({k: pipe.params[k] for k in trainable}, tx)
    if finished_epochs(run_dir) >= epochs:  # done: restore, no data needed
        state = fit(
            start,
            None,
            None,
            num_steps=0,
            workdir=run_dir,
            rng=None,
            config={},
            desc=phase,
            log=log,
        )
        return dataclasses.replace(pipe, params={**pipe.params, **state.best_params})
    train, val = data() if data is not None else cluster_data(config, pipe, events, log)
    spe = max(1, math.ceil(len(train) / batch_size))
    loss_fn = phase_loss(pipe, trainable, hinge_w, n_dev)
    place = functools.partial(shard_batch, mesh)
    vrng = np.random.default_rng(12345)
    val_batches = [
        sample_batch(val, np.array([i] * local_batch), vrng) for i in range(len(val.graphs))
    ]
    val_loss = jax.jit(lambda p, b: loss_fn(p, b, None)[1])

    def evaluate(state: TrainState) -> dict[str, float]:
        vm = {}
        if cc.val_loss:
            vms = [jax.device_get(val_loss(state.params, place(b))) for b in val_batches]
            vm = {k: float(np.mean([v[k] for v in vms])) for k in vms[0]}
        vm["score"] = validation_score(pipe, state.params, events.validation)
        return vm

    log(
        f"{phase}: {len(train)} sub-graphs, training {', '.join(trainable)}, {epochs} epochs "
        f"of {spe} steps"
    )
    state = fit(
        start,
        make_train_step(loss_fn, tx, mesh),
        epoch_batch_at(train, local_batch, spe, config.seed, shuffle=True),
        num_steps=epochs * spe,
        steps_per_epoch=spe,
        workdir=run_dir,
        rng=jax.random.PRNGKey(config.seed),
        config=config.to_dict(),
        evaluate=evaluate,
        metric="score",
        patience=int(cc.patience),
        log_every=config.loop.log_every,
        checkpoint_every=config.loop.checkpoint_every,
        mesh=mesh,
        place_batch=place,
        desc=phase,
        log=log,
    )
    log(f"{phase}: keeping the parameters of validation score {float(state.best_metric):.4f}")
    return dataclasses.replace(pipe, params={**pipe.params, **state.best_params})


def train_stage3(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    stage2: Stage2,
    phases: tuple[str, ...] = ("stage3", "e2e"),
    log=print,
    mesh=None,
    events: TrainingEvents | None = None,
) -> Pipeline:
    """Stage 3 (Split/Stop on the frozen GNN), then end to end; saves the :class:`Pipeline`
    to ``<workdir>/pipeline/checkpoints`` and returns it."""
    t0 = time.time()
    events = events or TrainingEvents(config, log)
    pipe = pipeline_from_stage2(config, stage2)

    @functools.cache
    def data() -> tuple[SubgraphSet, SubgraphSet]:
        # e2e changes no graph (stage 1 is fixed): the phases share the sub-graphs
        return cluster_data(config, pipe, events, log)

    for phase in phases:
        pipe = train_phase(config, workdir, pipe, phase, events, data, log, mesh)
    if pipe.config.cluster.get("calibrate_stop", False):
        pipe = calibrate_stop_threshold(pipe, events.validation, log=log)
    pipe.meta = {**pipe.meta, "train_seconds": time.time() - t0, "phases": list(phases)}
    ck = Path(workdir) / PIPELINE_DIR / "checkpoints"
    last = latest_step(ck)
    pipe.save(ck, step=0 if last is None else last + 1)  # a re-run adds a step, never overwrites
    log(f"pipeline saved to {ck}")
    return pipe


__all__ = [
    "PHASES",
    "STOP_GRID",
    "calibrate_stop_threshold",
    "cluster_data",
    "pipeline_from_stage2",
    "train_phase",
    "train_stage3",
]
