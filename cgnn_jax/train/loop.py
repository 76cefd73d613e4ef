"""The one training loop of cgnn_jax: a train state, an optimiser, a jitted step and :func:`fit`.

Every learned stage (stage-1 embedding and edge filter, the stage-2 GNN, stage-3 Split/Stop, end
to end) and :meth:`cgnn_jax.ClusteringGNN.fit` are a *loss function* plus a *batch source* run by
these pieces:

* :class:`TrainState`: flax's train state (step, params, optimiser) plus what the loop decides
  on: a learning-rate scale (cut x0.1 on a validation plateau), the best parameters by validation
  and their metric, the epochs without gain.
* :func:`make_optimizer`: the optimiser of every stage (Adam, optional global-norm clipping and
  weight decay, a cosine-decayed rate whose peak and length live in the optimiser state).
* :func:`make_train_step`: ``loss_fn(params, batch, rng) -> (loss, metrics)`` -> one jitted,
  sharded ``step(state, batch, rng) -> (state, metrics)``; the step folds its counter into
  ``rng``, so a step's randomness depends only on the run's key and the step number.
* :func:`fit`: runs the steps with a progress bar, metrics merged on device and read only when
  logged (``metrics.csv``), periodic and final orbax checkpoints (resumed from the latest when
  re-run; a finished run is restored, not redone), and, with an ``evaluate`` function, per-epoch
  validation, learning-rate cuts on plateaus and best-by-validation parameters.

Batches come from ``batch_at(step) -> batch``: a function of the global step alone (seeded by it),
so a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from cgnn_jax.inference.checkpoint import (
    latest_step,
    read_meta,
    restore_checkpoint,
    save_checkpoint,
)
from cgnn_jax.io.atomic import atomic_write

TRAIN_STATE_KIND = "train_state"

Batch = Any
LossFn = Callable[[Any, Batch, jax.Array], tuple[jnp.ndarray, dict[str, jnp.ndarray]]]


# --------------------------------------------------------------------------- state


class TrainState(train_state.TrainState):
    """flax's ``TrainState`` (``step``, ``params``, ``tx``, ``opt_state``) extended for :func:`fit`.

    Attributes:
      lr_scale: multiplies every update (the learning rate); x0.1 at each validation plateau.
      best_params: the parameters of the best validation metric so far (the start's included).
      best_metric: that metric (``-inf`` before the first validation).
      bad_epochs: epochs since the last validation gain.
    """

    lr_scale: jnp.ndarray
    best_params: Any
    best_metric: jnp.ndarray
    bad_epochs: jnp.ndarray

    @classmethod
    def new(cls, params: Any, tx: optax.GradientTransformation) -> TrainState:
        """A fresh state at step 0 (its arrays on the host: place it with :func:`replicate`)."""
        params = jax.device_get(params)
        return cls(
            step=np.zeros([], np.int32),
            apply_fn=None,
            params=params,
            tx=tx,
            opt_state=jax.device_get(tx.init(params)),
            lr_scale=np.ones([], np.float32),
            best_params=params,
            best_metric=np.full([], -np.inf, np.float32),
            bad_epochs=np.zeros([], np.int32),
        )


# --------------------------------------------------------------------------- optimiser


class CosineState(NamedTuple):
    """State of :func:`scale_by_cosine`: step count, peak rate and decay length (arrays)."""

    count: jnp.ndarray
    peak: jnp.ndarray
    total: jnp.ndarray


def scale_by_cosine(
    peak: float = 1.0, total: int = 1, alpha: float = 0.0
) -> optax.GradientTransformation:
    """``u -> -lr_t u`` with ``lr_t = peak (alpha + (1 - alpha) (1 + cos(pi min(t / total, 1))) / 2)``.

    Unlike ``optax.cosine_decay_schedule``, ``peak`` and ``total`` are arrays of the state, not
    constants of the update function: one compiled step serves every learning rate and length.
    ``alpha = 1`` is a constant rate.
    """

    def init_fn(params: Any) -> CosineState:
        del params
        return CosineState(
            jnp.zeros([], jnp.int32),
            jnp.asarray(peak, jnp.float32),
            jnp.asarray(max(int(total), 1), jnp.float32),
        )

    def update_fn(updates: Any, state: CosineState, params: Any = None) -> tuple[Any, CosineState]:
        del params
        frac = jnp.minimum(state.count.astype(jnp.float32) / state.total, 1.0)
        lr = state.peak * (alpha + (1.0 - alpha) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
        updates = jax.tree.map(lambda u: -lr * u, updates)
        return updates, state._replace(count=state.count + 1)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(
    learning_rate: float,
    decay_steps: int | None,
    *,
    clip_norm: float | None = None,
    weight_decay: float = 0.0,
    final_fraction: float = 0.0,
) -> optax.GradientTransformation:
    """The optimiser of every stage: [global-norm clipping] -> Adam -> [decoupled weight decay]
    -> learning rate cosine-decayed from ``learning_rate`` to ``final_fraction x`` that over
    ``decay_steps`` steps (``None``: constant).

    With ``weight_decay`` this is ``optax.adamw`` (same update); the rate is state, not a
    compiled constant (:func:`scale_by_cosine`).
    """
    parts = [] if clip_norm is None else [optax.clip_by_global_norm(float(clip_norm))]
    parts.append(optax.scale_by_adam())
    if weight_decay:
        parts.append(optax.add_decayed_weights(float(weight_decay)))
    if decay_steps is None:
        parts.append(scale_by_cosine(learning_rate, 1, alpha=1.0))
    else:
        parts.append(scale_by_cosine(learning_rate, decay_steps, alpha=final_fraction))
    return optax.chain(*parts)


# --------------------------------------------------------------------------- devices


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ``Mesh`` with axis ``'data'`` over ``devices`` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def shard_batch(mesh: Mesh, batch: Any) -> Any:
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


# --------------------------------------------------------------------------- step


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    mesh: Mesh | None = None,
    batch_spec: P | None = None,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jnp.ndarray]]]:
    """The jitted train step ``(state, batch, rng) -> (state, metrics)``.

    Args:
      loss_fn: ``(params, batch, rng) -> (loss, metrics)``, a scalar loss and a dict of scalars.
      tx: the optimiser (the same object as ``state.tx``).
      mesh: shard over this mesh: the batch with ``batch_spec``, the state and ``rng``
        replicated; XLA inserts the gradient all-reduce. ``None``: plain ``jax.jit``.
      batch_spec: ``P('data')`` (default) for a stacked batch ``[B, ...]`` (``B`` a multiple of
        the mesh size); ``P()`` for data replicated on every device (sampled inside the loss).
    Returns:
      the step; ``metrics`` holds ``loss``, ``grad_norm``, ``lr`` (the rate scale) and the
      loss's own metrics. The step's key is ``fold_in(rng, state.step)``.
    """

    def step(state: TrainState, batch: Batch, rng: jax.Array):
        key = jax.random.fold_in(rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": state.lr_scale,
        }
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    if mesh is None:
        return jax.jit(step)
    repl = NamedSharding(mesh, P())
    return jax.jit(
        step,
        in_shardings=(
            repl,
            NamedSharding(mesh, P("data") if batch_spec is None else batch_spec),
            repl,
        ),
        out_shardings=(repl, repl),
    )


# --------------------------------------------------------------------------- logs


class CsvLog:
    """Append-only metrics log (header from the first row); survives resumes.

    :meth:`truncate` drops the rows of steps after a checkpoint, so a resumed run does not log
    the steps it redoes twice.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with open(path) as f:
                first = f.readline().strip()
            self.fields = first.split(",") if first else None

    def truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if r.get("step") and int(float(r["step"])) <= step]
        if len(keep) < len(rows) and self.fields is not None:
            self._rewrite(keep)

    def _rewrite(self, rows: list[dict]) -> None:
        assert self.fields is not None
        with atomic_write(self.path, "w") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        extra = [k for k in row if k not in self.fields]
        if extra:  # a new column (e.g. validation metrics): rewrite with the wider header
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.fields += extra
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])


def _host(tree: Any) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


# --------------------------------------------------------------------------- fit


def finished_epochs(workdir: str | Path) -> int:
    """Whole epochs a :func:`fit` run in ``workdir`` has checkpointed (0: none)."""
    ckdir = Path(workdir) / "checkpoints"
    if latest_step(ckdir) is None:
        return 0
    step, meta = read_meta(ckdir)
    return step // max(int(meta.get("steps_per_epoch", 1)), 1)


def _state_dict(state: TrainState) -> dict:
    return flax.serialization.to_state_dict(jax.device_get(state))


def fit(
    state: TrainState,
    step_fn: Callable,
    batch_at: Callable[[int], Batch],
    *,
    num_steps: int,
    workdir: str | Path | None,
    rng: jax.Array,
    config: dict,
    steps_per_epoch: int | None = None,
    evaluate: Callable[[TrainState], dict[str, float]] | None = None,
    metric: str = "score",
    patience: int = 0,
    min_delta: float = 1e-4,
    log_every: int = 50,
    checkpoint_every: int = 0,
    mesh: Mesh | None = None,
    place_batch: Callable[[Batch], Batch] | None = None,
    desc: str = "train",
    log: Callable[[str], Any] = print,
    progress: bool = True,
    step_metrics: list | None = None,
) -> TrainState:
    """Run ``num_steps`` steps of ``step_fn`` from ``state``, resumably.

    Args:
      state: the starting state (step ``s0``); the run ends at step ``s0 + num_steps``.
      step_fn: from :func:`make_train_step`.
      batch_at: global step -> the host batch of that step (deterministic in the step).
      num_steps: steps to run from ``state``.
      workdir: this run's folder: ``checkpoints/`` (the train state after periodic steps, each
        epoch and the end) and ``metrics.csv``. If it holds a checkpoint, the run resumes from
        it (a finished one returns at once). ``None``: no checkpoints, no CSV.
      rng: the run's key (the step folds in its counter).
      config: stored with each checkpoint (a plain dict).
      steps_per_epoch: validation period (default: ``num_steps``, one epoch).
      evaluate: ``state -> {name: float}`` on validation data after every epoch (and before
        the first, as the starting candidate); ``metric`` (higher is better) picks
        ``best_params``; ``patience`` epochs without a gain of ``min_delta`` cut the learning
        rate x0.1 (0: never). Without ``evaluate``, ``best_params`` stays the start's: use
        ``params``.
      log_every: merged metrics are read, logged and shown every this many steps.
      checkpoint_every: also checkpoint every this many steps (0: at epoch ends only).
      mesh: replicate the state over it (``None``: default device).
      place_batch: host batch -> device batch (default: ``jax.device_put``).
      desc: progress-bar label and log prefix.
      progress: show the progress bar.
      step_metrics: if given, every step's metrics (device arrays, not read) are appended.
    Returns:
      the final state, on the host.
    """
    s0 = int(state.step)
    end = s0 + int(num_steps)
    spe = max(1, int(steps_per_epoch or num_steps or 1))
    history: list[dict] = []
    ckdir = None if workdir is None else Path(workdir) / "checkpoints"
    if ckdir is not None and latest_step(ckdir) is not None:
        restored, meta = restore_checkpoint(ckdir, kind=TRAIN_STATE_KIND, target=_state_dict(state))
        state = flax.serialization.from_state_dict(state, restored)
        history = list(meta.get("history", []))
        if int(state.step) >= end:
            log(f"{desc}: already trained in {ckdir} (remove it to retrain)")
            return jax.device_get(state)
        log(f"{desc}: resuming at step {int(state.step) - s0} of {num_steps} from {ckdir}")
    csvlog = None
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        csvlog = CsvLog(Path(workdir) / "metrics.csv")
        csvlog.truncate(int(state.step) - s0)
    place = place_batch or jax.device_put
    state = replicate(mesh, state) if mesh is not None else jax.device_put(state)
    t0 = time.time()

    def save(st: TrainState) -> None:
        if ckdir is None:
            return
        save_checkpoint(
            ckdir,
            int(st.step) - s0,
            _state_dict(st),
            kind=TRAIN_STATE_KIND,
            config=config,
            extra={
                "history": history,
                "seconds": time.time() - t0,
                "first_step": s0,
                "steps_per_epoch": spe,
            },
            max_to_keep=2,
        )

    def validate(st: TrainState, epoch: int) -> TrainState:
        vm = evaluate(st)
        best, bad, lr = float(st.best_metric), int(st.bad_epochs), float(st.lr_scale)
        if vm[metric] > best + min_delta or not math.isfinite(best):
            st = st.replace(best_params=st.params, best_metric=jnp.float32(vm[metric]))
            bad = 0
        else:
            bad += 1
            if patience and bad >= patience:
                lr *= 0.1
                bad = 0
                log(f"{desc}: no validation gain for {patience} epochs, learning rate x{lr:.0e}")
        st = st.replace(bad_epochs=jnp.int32(bad), lr_scale=jnp.float32(lr))
        row = {"epoch": epoch, "step": int(st.step) - s0, **{f"val_{k}": v for k, v in vm.items()}}
        history.append(row)
        if csvlog is not None:
            csvlog.write(row)
        log(
            f"{desc} epoch {epoch}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in vm.items())
            + f" (best {metric} {float(st.best_metric):.4f})"
        )
        return st

    if (
        evaluate is not None
        and int(state.step) == s0
        and not math.isfinite(float(state.best_metric))
    ):
        state = validate(state, 0)  # the start is a candidate: a run never ends worse than it began
    acc: dict | None = None
    count = 0
    s_start = int(state.step)
    bar = tqdm(
        total=num_steps,
        initial=int(state.step) - s0,
        desc=desc,
        unit="step",
        mininterval=2.0,
        disable=not progress,
    )
    try:
        for step in range(int(state.step), end):
            state, metrics = step_fn(state, place(batch_at(step)), rng)
            if step_metrics is not None:
                step_metrics.append(metrics)
            acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
            count += 1
            done = step + 1 - s0
            bar.update(1)
            if done % log_every == 0 or done == num_steps or done % spe == 0:
                ms = {k: v / count for k, v in _host(acc).items()}
                if csvlog is not None:
                    csvlog.write({"step": done, **ms})
                if progress:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in ms.items() if k != "lr"})
                acc, count = None, 0
            if done % spe == 0 or done == num_steps:
                if evaluate is not None:
                    state = validate(state, math.ceil(done / spe))
                save(state)
            elif checkpoint_every and done % checkpoint_every == 0:
                save(state)
    finally:
        bar.close()
    log(f"{desc}: {num_steps - (s_start - s0)} steps in {time.time() - t0:.0f} s")
    return jax.device_get(state)
