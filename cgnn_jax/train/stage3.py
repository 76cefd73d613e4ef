"""Stage 3 and end-to-end training: Split/Stop on the GNN, then every stage jointly.

Both phases share one jitted, data-parallel train step ``(params, opt_state, batch, rng)``:

    x (hit features) -> input embedding MLP -> GNN (on the stage-1 graph) -> h = [GNN out, x]
      -> unrolled Split/Stop training tree -> split loss + stop loss (+ GNN hinge loss)

* ``stage3``: only ``split`` and ``stop`` are trained (the GNN is frozen);
* ``e2e``: ``input_embedding``, ``gnn``, ``split`` and ``stop`` are trained together, so the
  clustering losses reach the GNN and the embedding. The graph itself (stage-1 kNN + edge filter,
  built on the host) is not differentiable and stays as stage 1 made it.

Training data are the η–φ sector sub-graphs of simulated full events (bounded memory whatever the
event size), padded to one budget (one compilation); each sub-graph's points are clustered as one
point set. An epoch is one pass over the training sub-graphs; after each, the loss on the
sub-graphs of held-out validation events is logged and the TrackML score of the whole pipeline on
those events decides: the learning rate is cut x0.1 after ``cluster.patience`` epochs without a
gain, and the phase returns the parameters of the best score (its starting point included, so a
phase never makes the model worse on validation). A checkpoint (params, best params, optimiser
state, epoch) is written after every epoch, so an interrupted run resumes from the last one. Per-step metrics go to
``<workdir>/<phase>/metrics.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pandas as pd
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from cgnn_jax.cluster.objective import clustering_loss
from cgnn_jax.cluster.targets import dense_particle_labels
from cgnn_jax.graph.batch import (
    PaddedGraph,
    balanced_sample,
    eval_edge_pool,
    graph_budget,
    padded_graph,
    sector_subgraphs,
    stack_graphs,
)
from cgnn_jax.metrics import score_event
from cgnn_jax.pipeline import (
    Pipeline,
    cluster_defaults,
    cluster_features,
    create_split_stop,
    gnn_forward,
)
from cgnn_jax.train.checkpoint import latest_step, read_meta, restore_checkpoint, save_checkpoint
from cgnn_jax.train.data import PreparedEvent, prepare_event, simulated_events
from cgnn_jax.train.losses import hinge_embedding_loss
from cgnn_jax.train.stage2 import Stage2, make_mesh, replicate, shard_batch
from cgnn_jax.utils.padding import pad_rows

PHASES = {"stage3": ("split", "stop"), "e2e": ("input_embedding", "gnn", "split", "stop")}
PHASE_KIND = "train_state"


def pipeline_from_stage2(config: ml_collections.ConfigDict, stage2: Stage2) -> Pipeline:
    """A :class:`Pipeline` with stage 1 and 2 from ``stage2`` and freshly initialised Split/Stop."""
    if stage2.stage1 is None:
        raise ValueError("stage 2 has no bundled stage 1")
    cfg = ml_collections.ConfigDict(config.to_dict())
    cc = cluster_defaults()
    cc.update(config.get("cluster", ml_collections.ConfigDict()))
    cfg.cluster = cc
    cfg.gnn = stage2.config.gnn
    s1 = stage2.stage1
    params = {
        "embedding": s1.emb_params,
        "filter": s1.filter_params,
        "input_embedding": s1.emb_params,
        "gnn": stage2.params,
    }
    pipe = Pipeline(cfg, s1.config, params)
    n_feat = _n_features()
    d = cfg.gnn.out_dim + (n_feat if cc.inputs == "gnn+features" else 0)
    split, stop = create_split_stop(cc)
    k1, k2 = jax.random.split(jax.random.PRNGKey(config.get("seed", 0) + 3))
    h = jnp.zeros((8, d))
    seg = jnp.zeros(8, jnp.int32)
    mask = jnp.ones(8, bool)
    params["split"] = split.init(k1, h, seg, mask, 8)
    params["stop"] = stop.init(k2, h, seg, mask, 8)
    return pipe


def _n_features() -> int:
    from cgnn_jax.features.hits import n_features

    return n_features()


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class ClusterGraphs:
    """Padded sector sub-graphs (nodes: hit features), their dense particle labels ``[N]`` and
    evaluation-edge pools for the hinge loss."""

    graphs: list[PaddedGraph]
    labels: list[np.ndarray]
    pools: list[tuple]
    budget: tuple[int, int]


def event_subgraphs(config, pipe: Pipeline, ev: PreparedEvent, seed: int) -> list[dict]:
    """The η–φ sector sub-graphs of one event, unpadded, with ``label`` (dense, per sub-graph)."""
    c = config.gnn
    g = pipe.graph(ev)
    rng = np.random.default_rng([seed, ev.event_id])
    pool = eval_edge_pool(
        g["emb_senders"],
        g["emb_receivers"],
        ev.pid,
        int(c.get("true_pairs_per_hit", 1.0) * ev.n),
        rng,
        int(c.get("random_pairs_per_hit", 0.0) * ev.n),
    )
    cc = pipe.cluster_config
    n_eta, n_phi = cc.get("sectors", None) or c.sectors
    subs = sector_subgraphs(
        ev.hf.x.astype(np.float32), ev.hf.pos, g["senders"], g["receivers"], pool,
        n_eta, n_phi, c.sector_margin_eta, c.sector_margin_phi,
    )  # fmt: skip
    for s in subs:
        pid = ev.pid[s["nodes_index"]]
        s["label"] = dense_particle_labels(pid, np.ones(len(pid), bool))
    return subs


def pad_subgraphs(subs: list[dict], budget: tuple[int, int], m: int) -> ClusterGraphs:
    graphs = [
        padded_graph(s["x"], s["senders"], s["receivers"], None, budget, m, s["nodes_index"])
        for s in subs
    ]
    labels = [pad_rows(s["label"].astype(np.int32), budget[0]) for s in subs]
    return ClusterGraphs(graphs, labels, [s["eval"] for s in subs], budget)


def sample_batch(cg: ClusterGraphs, idx: np.ndarray, m: int, rng: np.random.Generator) -> dict:
    """Stack sub-graphs ``idx`` with their labels and a fresh balanced evaluation-edge sample."""
    out = []
    for i in idx:
        s, r, y = balanced_sample(*cg.pools[i], m, rng)
        k = len(s)
        out.append(
            dataclasses.replace(
                cg.graphs[i],
                eval_senders=pad_rows(s.astype(np.int32), m),
                eval_receivers=pad_rows(r.astype(np.int32), m),
                eval_y=pad_rows(y.astype(bool), m),
                eval_mask=np.arange(m) < k,
            )
        )
    batch = stack_graphs(out)
    batch["label"] = np.stack([cg.labels[i] for i in idx])
    return batch


# --------------------------------------------------------------------------- step


def graph_objective(pipe: Pipeline, params: dict, b: dict, hinge_weight: float):
    """``(loss, metrics)`` of one padded sub-graph ``b`` (unstacked)."""
    cc = pipe.cluster_config
    split, stop = pipe.split_stop
    out = gnn_forward(
        pipe.emb_model,
        pipe.gnn_model,
        params["input_embedding"],
        params["gnn"],
        b["graph"],
        b["edge_mask"],
        b["node_mask"],
    )
    h = cluster_features(out, b["graph"].nodes, cc.inputs)
    loss, m = clustering_loss(
        lambda *a: split.apply(params["split"], *a),
        lambda *a: stop.apply(params["stop"], *a),
        h,
        b["node_mask"],
        b["label"],
        int(cc.train_depth),
        int(cc.min_size),
        float(cc.stop_weight),
    )
    if hinge_weight > 0:
        d2 = jnp.sum((out[b["eval_senders"]] - out[b["eval_receivers"]]) ** 2, axis=-1)
        hinge = hinge_embedding_loss(d2, b["eval_y"], b["eval_mask"], pipe.config.gnn.margin)
        loss = loss + hinge_weight * hinge
        m["hinge"] = hinge
    m["loss"] = loss
    return loss, m


def make_optimizer(cc, lr: float) -> optax.GradientTransformation:
    def make(learning_rate):
        return optax.chain(
            optax.clip_by_global_norm(cc.clip_norm), optax.adamw(learning_rate, weight_decay=1e-5)
        )

    return optax.inject_hyperparams(make)(learning_rate=lr)


def make_train_step(pipe: Pipeline, tx, trainable: tuple[str, ...], hinge_weight: float, mesh):
    """Jitted, sharded ``(params, opt_state, batch, rng) -> (params, opt_state, metrics)``.

    ``params`` holds the trainable parameter groups; the frozen ones are closed over as constants
    (they are the pipeline's). The batch ``[B, ...]`` is sharded along ``'data'``.
    """
    frozen = {k: v for k, v in pipe.params.items() if k not in trainable}
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    def batch_objective(tp, batch):
        p = {**frozen, **tp}
        fn = lambda b: graph_objective(pipe, p, b, hinge_weight)  # noqa: E731
        # one device: lax.map keeps the recursion's lax.cond (skipping the median sort at levels
        # with no degenerate split); vmap would turn it into a select that always sorts
        losses, ms = jax.vmap(fn)(batch) if mesh.devices.size > 1 else jax.lax.map(fn, batch)
        return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, ms)

    def step(params, opt_state, batch, rng):
        del rng  # the step is deterministic; its randomness (edge samples) is drawn on the host
        (_, ms), grads = jax.value_and_grad(batch_objective, has_aux=True)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        ms["grad_norm"] = optax.tree.norm(grads)
        return params, opt_state, ms

    def evaluate(params, batch):
        return batch_objective(params, batch)[1]

    step_jit = jax.jit(
        step,
        in_shardings=(repl, repl, data, repl),
        out_shardings=(repl, repl, repl),
    )
    eval_jit = jax.jit(evaluate, in_shardings=(repl, data), out_shardings=repl)
    return step_jit, eval_jit


# --------------------------------------------------------------------------- training


class _CsvLog:
    """Append-only metrics log (header written once); survives resumes."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with open(path) as f:
                first = f.readline().strip()
            self.fields = first.split(",") if first else None

    def write(self, row: dict) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])


def build_cluster_data(config, pipe: Pipeline, log=print) -> tuple:
    """``(train, val, val_events)``: training and validation sub-graphs of simulated events (one
    budget for both) and the validation events themselves (whole, with truth: for the score)."""
    d, cc = config.data, pipe.cluster_config
    n_val = int(cc.get("val_events", 1))
    log(f"stage 3 data: {d.train_events} training + {n_val} validation events (mu={d.mu})")
    train = [
        prepare_event(e) for e in simulated_events(d.train_events, d.seed, d.mu, d.track_fraction)
    ]
    val_events = simulated_events(n_val, d.seed + 7919, d.mu, d.track_fraction, first_event=1000)
    val = [prepare_event(e) for e in val_events]
    seed = config.get("seed", 0)
    tsubs = [s for ev in train for s in event_subgraphs(config, pipe, ev, seed)]
    vsubs = [s for ev in val for s in event_subgraphs(config, pipe, ev, seed)]
    tsubs = [s for s in tsubs if s["eval"][2].any() and (~s["eval"][2]).any()]
    if not tsubs:
        raise ValueError("no training sub-graph holds both true and false evaluation edges")
    vsubs = [s for s in vsubs if len(s["x"]) >= 2] or tsubs[:1]
    allsubs = tsubs + vsubs
    budget = graph_budget(
        max(len(s["x"]) for s in allsubs), max(len(s["senders"]) for s in allsubs)
    )
    from cgnn_jax.train.stage2 import eval_per_graph

    m = eval_per_graph(config)
    return pad_subgraphs(tsubs, budget, m), pad_subgraphs(vsubs, budget, m), val_events


def train_phase(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    pipe: Pipeline,
    phase: str,
    data: tuple[ClusterGraphs, ClusterGraphs] | None = None,
    log=print,
    mesh: Mesh | None = None,
) -> Pipeline:
    """Train the parameter groups of ``phase`` (``"stage3"`` or ``"e2e"``); resumable.

    Checkpoints (trainable params, optimiser state, epoch, best validation loss) go to
    ``<workdir>/<phase>/checkpoints`` after every epoch; a finished phase is restored, not redone.
    Returns a new :class:`Pipeline` with the trained parameters.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    t0 = time.time()
    cc = pipe.cluster_config
    trainable = PHASES[phase]
    hinge_w = float(cc.hinge_weight) if phase == "e2e" else 0.0
    epochs = int(cc.epochs if phase == "stage3" else cc.e2e_epochs)
    lr0 = float(cc.learning_rate if phase == "stage3" else cc.e2e_learning_rate)
    pdir = Path(workdir) / phase
    ckdir = pdir / "checkpoints"
    pdir.mkdir(parents=True, exist_ok=True)

    mesh = mesh or make_mesh()
    batch_size = mesh.devices.size * int(cc.graphs_per_device)
    local_batch = batch_size // jax.process_count()
    tx = make_optimizer(cc, lr0)
    params = {k: pipe.params[k] for k in trainable}
    state = {
        "params": params,
        "best_params": params,
        "opt_state": tx.init(params),
        "epoch": np.array(0, np.int32),
        "best_val": np.array(-1.0, np.float32),
        "bad_epochs": np.array(0, np.int32),
        "lr": np.array(lr0, np.float32),
    }
    history: list[dict] = []
    if latest_step(ckdir) is not None:
        _, meta = read_meta(ckdir)
        if int(meta.get("step", 0)) >= epochs:  # finished: only its parameters are needed
            done_state, _ = restore_checkpoint(ckdir, kind=PHASE_KIND)
            best = done_state.get("best_params", done_state["params"])
            log(f"{phase}: already trained in {ckdir} (remove it to retrain)")
            return dataclasses.replace(pipe, params={**pipe.params, **best})
        state, meta = restore_checkpoint(ckdir, kind=PHASE_KIND, target=state)
        history = list(meta.get("history", []))
        log(f"{phase}: resuming after epoch {int(state['epoch'])} of {epochs} from {ckdir}")
    done = int(state["epoch"])
    if done >= epochs:
        return dataclasses.replace(pipe, params={**pipe.params, **state["best_params"]})

    train, val, val_events = data if data is not None else build_cluster_data(config, pipe, log)

    def val_score(p: dict) -> float:
        """Mean TrackML score of the whole pipeline on the validation events."""
        trial = dataclasses.replace(pipe, params={**pipe.params, **jax.device_get(p)})
        out = []
        for ev in val_events:
            tid = trial.reconstruct(ev)
            sub = pd.DataFrame({"hit_id": ev.hits["hit_id"].to_numpy(), "track_id": tid})
            out.append(score_event(ev.truth, sub))
        return float(np.mean(out))

    m = train.graphs[0].eval_senders.shape[0]
    log(
        f"{phase}: {len(train.graphs)} sub-graphs, budget {train.budget[0]:,} nodes / "
        f"{train.budget[1]:,} edges, training {', '.join(trainable)}, {epochs} epochs"
    )
    step, evaluate = make_train_step(pipe, tx, trainable, hinge_w, mesh)
    params = replicate(mesh, state["params"])
    opt_state = replicate(mesh, state["opt_state"])
    opt_state.hyperparams["learning_rate"] = jnp.asarray(state["lr"])
    lr = float(state["lr"])
    best, bad = float(state["best_val"]), int(state["bad_epochs"])
    best_params = state["best_params"]
    if done == 0:  # the starting point is a candidate too: a phase never makes the model worse
        best = val_score(state["params"])
        log(f"{phase}: validation TrackML score before training {best:.4f}")
    steps_per_epoch = max(1, math.ceil(len(train.graphs) / batch_size))
    csvlog = _CsvLog(pdir / "metrics.csv")
    np_rng = np.random.default_rng([config.get("seed", 0), jax.process_index(), done])
    rng = jax.random.PRNGKey(config.get("seed", 0))
    vrng = np.random.default_rng(12345)
    val_batches = [
        sample_batch(val, np.array([i] * local_batch), m, vrng) for i in range(len(val.graphs))
    ]
    for epoch in range(done, epochs):
        order = np_rng.permutation(len(train.graphs))
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{phase} epoch {epoch + 1}/{epochs}",
            unit="step",
            mininterval=2.0,
        )
        for it in bar:
            idx = np.resize(order[it * local_batch : (it + 1) * local_batch], local_batch)
            if len(idx) < local_batch:
                idx = np_rng.choice(len(train.graphs), local_batch)
            batch = shard_batch(mesh, sample_batch(train, idx, m, np_rng))
            rng, sub = jax.random.split(rng)
            params, opt_state, ms = step(params, opt_state, batch, sub)
            ms = {k: float(v) for k, v in ms.items()}
            csvlog.write({"epoch": epoch, "step": epoch * steps_per_epoch + it, "lr": lr, **ms})
            bar.set_postfix(
                loss=f"{ms['loss']:.3f}",
                split=f"{ms['split_loss']:.3f}",
                stop=f"{ms['stop_acc']:.2f}",
            )
        vms = [jax.device_get(evaluate(params, shard_batch(mesh, b))) for b in val_batches]
        vm = {k: float(np.mean([v[k] for v in vms])) for k in vms[0]}
        vm["score"] = val_score(params)
        if vm["score"] > best + 1e-4:
            best, bad = vm["score"], 0
            best_params = jax.device_get(params)
        else:
            bad += 1
            if bad >= int(cc.patience):
                lr *= 0.1
                bad = 0
                opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
                log(
                    f"{phase}: no validation gain for {cc.patience} epochs, learning rate -> {lr:.2e}"
                )
        row = {
            "epoch": epoch,
            "step": (epoch + 1) * steps_per_epoch,
            "lr": lr,
            **{f"val_{k}": v for k, v in vm.items()},
        }
        history.append(row)
        csvlog.write(row)
        log(
            f"{phase} epoch {epoch + 1}/{epochs}: val loss {vm['loss']:.4f} (split {vm['split_loss']:.4f}, "
            f"stop {vm['stop_loss']:.4f}, stop acc {vm['stop_acc']:.3f}, best tree score "
            f"{vm['best_score']:.3f}); TrackML score {vm['score']:.4f} (best {best:.4f})"
        )
        state = {
            "params": jax.device_get(params),
            "best_params": best_params,
            "opt_state": jax.device_get(opt_state),
            "epoch": np.array(epoch + 1, np.int32),
            "best_val": np.array(best, np.float32),
            "bad_epochs": np.array(bad, np.int32),
            "lr": np.array(lr, np.float32),
        }
        save_checkpoint(
            ckdir, epoch + 1, state, kind=PHASE_KIND, config=config.to_dict(),
            extra={"phase": phase, "history": history, "seconds": time.time() - t0},
            max_to_keep=2,
        )  # fmt: skip
    log(
        f"{phase}: trained in {time.time() - t0:.0f} s; keeping the parameters of validation score {best:.4f}"
    )
    return dataclasses.replace(pipe, params={**pipe.params, **jax.device_get(best_params)})


def train_stage3(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    stage2: Stage2,
    phases: tuple[str, ...] = ("stage3", "e2e"),
    log=print,
    mesh: Mesh | None = None,
) -> Pipeline:
    """Stage 3 (Split/Stop on the frozen GNN), then end to end; saves the :class:`Pipeline`
    to ``<workdir>/pipeline/checkpoints`` and returns it."""
    t0 = time.time()
    pipe = pipeline_from_stage2(config, stage2)
    data = None
    for phase in phases:
        if phase == "e2e" or data is None:
            # e2e changes no graph (stage 1 is fixed), so the sub-graphs are shared by the phases
            if data is None and _needs_data(workdir, phase, pipe):
                data = build_cluster_data(config, pipe, log)
        pipe = train_phase(config, workdir, pipe, phase, data, log, mesh)
    pipe.meta = {"train_seconds": time.time() - t0, "phases": list(phases)}
    ck = Path(workdir) / "pipeline" / "checkpoints"
    last = latest_step(ck)
    pipe.save(ck, step=0 if last is None else last + 1)  # a re-run adds a step, never overwrites
    log(f"pipeline saved to {Path(workdir) / 'pipeline' / 'checkpoints'}")
    return pipe


def _needs_data(workdir, phase: str, pipe: Pipeline) -> bool:
    ck = Path(workdir) / phase / "checkpoints"
    if latest_step(ck) is None:
        return True
    _, meta = read_meta(ck)
    cc = pipe.cluster_config
    epochs = int(cc.epochs if phase == "stage3" else cc.e2e_epochs)
    return int(meta.get("step", 0)) < epochs


__all__ = [
    "PHASES",
    "build_cluster_data",
    "pipeline_from_stage2",
    "train_phase",
    "train_stage3",
]
