"""Stage 1 training: the hit embedding (metric learning) and the edge filter.

``train_stage1(config, workdir)`` simulates (or reads) training events, trains the embedding MLP
with the hinge embedding loss on balanced same-particle / other-particle pairs, then a second round
with hard negatives (close in the embedding, different particles), builds the embedding graph,
trains the edge filter on it and saves one orbax checkpoint with both parameter sets and the config.
Each train step is a single ``jax.jit`` function of ``(params, opt_state, data, rng)``: the pairs of
a step are sampled inside it from device-resident arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from cgnn_jax.features import pair_features
from cgnn_jax.graph.neighbors import neighbor_graph
from cgnn_jax.models import EdgeFilter, HitEmbedding
from cgnn_jax.train.checkpoint import restore_checkpoint, save_checkpoint
from cgnn_jax.train.data import PairData, PreparedEvent, pair_data, prepare_event, simulated_events
from cgnn_jax.train.losses import balanced_bce, hinge_embedding_loss
from cgnn_jax.utils.padding import bucket_size, pad_rows

STAGE1_KIND = "stage1"


def create_embedding(config: ml_collections.ConfigDict) -> HitEmbedding:
    return HitEmbedding(hidden=tuple(config.embedding.hidden), dim=config.embedding.dim)


def create_filter(config: ml_collections.ConfigDict) -> EdgeFilter:
    return EdgeFilter(hidden=tuple(config.filter.hidden))


# --------------------------------------------------------------------------- embedding


def _sample_pairs(data: dict, rng: jax.Array, batch: int, hard_fraction: float):
    """``(i, j, y)`` ``[batch]``: 1/2 positives, the rest random and hard negatives."""
    k1, k2, k3, k4, k5 = jax.random.split(rng, 5)
    n_pos = batch // 2
    n_hard = int(batch * hard_fraction) if hard_fraction > 0 else 0
    n_rand = batch - n_pos - n_hard
    a = data["signal"][jax.random.randint(k1, (n_pos,), 0, data["signal"].shape[0])]
    cnt = data["group_count"][a]
    off = jax.random.randint(k2, (n_pos,), 1, jnp.maximum(cnt, 2))
    b = data["by_particle"][data["group_start"][a] + (data["rank"][a] + off) % cnt]
    c = jax.random.randint(k3, (n_rand,), 0, data["x"].shape[0])
    d = data["event_start"][c] + jax.random.randint(k4, (n_rand,), 0, data["event_count"][c])
    i, j = [a, c], [b, d]
    if n_hard:
        h = jax.random.randint(k5, (n_hard,), 0, data["hard_s"].shape[0])
        i.append(data["hard_s"][h])
        j.append(data["hard_r"][h])
    i, j = jnp.concatenate(i), jnp.concatenate(j)
    pi, pj = data["pid"][i], data["pid"][j]
    y = (pi == pj) & (pi != 0)
    mask = i != j
    return i, j, y, mask


def make_embedding_step(
    model: HitEmbedding,
    tx: optax.GradientTransformation,
    batch: int,
    hard_fraction: float,
    margin: float,
):
    """The jitted embedding train step ``(params, opt_state, data, rng) -> (params, opt, loss)``."""

    @jax.jit
    def step(params, opt_state, data, rng):
        i, j, y, mask = _sample_pairs(data, rng, batch, hard_fraction)

        def loss_fn(p):
            e = model.apply(p, jnp.concatenate([data["x"][i], data["x"][j]]))
            ei, ej = e[: len(i)], e[len(i) :]
            d2 = jnp.sum((ei - ej) ** 2, axis=-1)
            return hinge_embedding_loss(d2, y, mask, margin)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


@functools.partial(jax.jit, static_argnums=0)
def _apply_embedding(model: HitEmbedding, params: Any, x: jnp.ndarray) -> jnp.ndarray:
    return model.apply(params, x)


def embed(model: HitEmbedding, params: Any, x: np.ndarray) -> np.ndarray:
    """Embed hits ``x [n, F] -> [n, d]`` (padded to a size bucket: few compilations)."""
    n = len(x)
    xp = pad_rows(np.asarray(x, np.float32), bucket_size(n))
    return np.asarray(_apply_embedding(model, params, xp))[:n]


def _hard_negatives(
    model,
    params,
    events: list[PreparedEvent],
    data: PairData,
    k: int,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """False kNN edges in the current embedding (global rows), resampled to ``size``."""
    hs, hr, off = [], [], 0
    for ev in events:
        e = embed(model, params, ev.hf.x)
        s, r = neighbor_graph(e, "knn", k=k, symmetric=False)
        false = (ev.pid[s] != ev.pid[r]) | (ev.pid[s] == 0)
        hs.append(s[false] + off)
        hr.append(r[false] + off)
        off += ev.n
    hs, hr = np.concatenate(hs), np.concatenate(hr)
    pick = rng.integers(0, max(len(hs), 1), size=size)
    if len(hs) == 0:
        return np.zeros(size, np.int64), np.ones(size, np.int64)
    return hs[pick], hr[pick]


def train_embedding(config, events: list[PreparedEvent], rng: jax.Array, log=print):
    """Train the embedding; returns ``(params, history)``."""
    c = config.embedding
    model = create_embedding(config)
    data_np = pair_data(events)
    params = model.init(rng, jnp.zeros((1, data_np.x.shape[1])))
    schedule = optax.cosine_decay_schedule(c.learning_rate, c.steps + c.hard_steps)
    tx = optax.adamw(schedule, weight_decay=1e-5)
    opt_state = tx.init(params)
    np_rng = np.random.default_rng(config.seed)
    arrays = {f.name: getattr(data_np, f.name) for f in dataclasses.fields(PairData)}
    arrays["hard_s"] = np.zeros(1, np.int64)
    arrays["hard_r"] = np.ones(1, np.int64)
    history = []
    phases = [("embedding", c.steps, 0.0), ("embedding+hard", c.hard_steps, c.hard_fraction)]
    for name, steps, hard in phases:
        if steps == 0:
            continue
        if hard > 0:
            hs, hr = _hard_negatives(model, params, events, data_np, c.hard_k, c.hard_pool, np_rng)
            arrays["hard_s"], arrays["hard_r"] = hs, hr
        data = jax.device_put({k: jnp.asarray(v) for k, v in arrays.items()})
        step = make_embedding_step(model, tx, c.batch_pairs, hard, c.margin)
        bar = tqdm(range(steps), desc=name, unit="step", mininterval=2.0)
        for it in bar:
            rng, sub = jax.random.split(rng)
            params, opt_state, loss = step(params, opt_state, data, sub)
            if it % 100 == 0 or it == steps - 1:
                loss = float(loss)
                history.append({"phase": name, "step": it, "loss": loss})
                bar.set_postfix(loss=f"{loss:.4f}")
    return params, history


# --------------------------------------------------------------------------- edge filter


@dataclasses.dataclass
class EdgeSet:
    """Edges of stacked events (global rows): pair features ``z [E, P]``, labels ``y [E]``."""

    senders: np.ndarray
    receivers: np.ndarray
    z: np.ndarray
    y: np.ndarray


def embedding_graph(
    config, emb_model, emb_params, ev: PreparedEvent
) -> tuple[np.ndarray, np.ndarray]:
    """The stage-1 embedding graph of one event: directed edges ``(senders, receivers)``."""
    g = config.graph
    e = embed(emb_model, emb_params, ev.hf.x)
    return neighbor_graph(e, g.mode, k=g.k, radius=g.radius, approx=g.get("approx", 0.0))


def edge_set(
    config, emb_model, emb_params, events: list[PreparedEvent]
) -> tuple[np.ndarray, EdgeSet]:
    xs, ss, rs, zs, ys, off = [], [], [], [], [], 0
    for ev in events:
        s, r = embedding_graph(config, emb_model, emb_params, ev)
        xs.append(ev.hf.x)
        zs.append(pair_features(ev.hf, s, r))
        ys.append((ev.pid[s] == ev.pid[r]) & (ev.pid[s] != 0))
        ss.append(s.astype(np.int64) + off)
        rs.append(r.astype(np.int64) + off)
        off += ev.n
    return np.concatenate(xs).astype(np.float32), EdgeSet(
        np.concatenate(ss),
        np.concatenate(rs),
        np.concatenate(zs).astype(np.float32),
        np.concatenate(ys),
    )


def make_filter_step(model: EdgeFilter, tx, batch: int, pos_weight: float):
    @jax.jit
    def step(params, opt_state, data, rng):
        e = jax.random.randint(rng, (batch,), 0, data["y"].shape[0])
        s, r = data["senders"][e], data["receivers"][e]
        x = jnp.concatenate([data["x"][s], data["x"][r]])
        idx = jnp.arange(batch)

        def loss_fn(p):
            logits = model.apply(p, x, data["z"][e], idx, idx + batch)
            return balanced_bce(logits, data["y"][e], jnp.ones(batch, bool), pos_weight)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train_filter(config, x: np.ndarray, edges: EdgeSet, rng: jax.Array):
    c = config.filter
    model = create_filter(config)
    params = model.init(
        rng,
        jnp.zeros((2, x.shape[1])),
        jnp.zeros((1, edges.z.shape[1])),
        jnp.zeros(1, jnp.int32),
        jnp.ones(1, jnp.int32),
    )
    tx = optax.adamw(optax.cosine_decay_schedule(c.learning_rate, c.steps), weight_decay=1e-5)
    opt_state = tx.init(params)
    data = jax.device_put(
        {"x": x, "z": edges.z, "y": edges.y, "senders": edges.senders, "receivers": edges.receivers}
    )
    step = make_filter_step(model, tx, c.batch_edges, c.pos_weight)
    history = []
    bar = tqdm(range(c.steps), desc="edge filter", unit="step", mininterval=2.0)
    for it in bar:
        rng, sub = jax.random.split(rng)
        params, opt_state, loss = step(params, opt_state, data, sub)
        if it % 100 == 0 or it == c.steps - 1:
            history.append({"phase": "filter", "step": it, "loss": float(loss)})
            bar.set_postfix(loss=f"{float(loss):.4f}")
    return params, history


@functools.partial(jax.jit, static_argnums=0)
def _apply_filter(model, params, x, z, s, r):
    return jax.nn.sigmoid(model.apply(params, x, z, s, r))


def edge_probabilities(
    model: EdgeFilter,
    params: Any,
    x: np.ndarray,
    z: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    chunk: int = 1 << 20,
) -> np.ndarray:
    """``p_ij [E]`` in fixed-size chunks of edges (bounded memory, one compilation per node bucket)."""
    n = len(x)
    xp = jnp.asarray(pad_rows(np.asarray(x, np.float32), bucket_size(n)))
    out = np.empty(len(senders), np.float32)
    for a in range(0, len(senders), chunk):
        b = min(a + chunk, len(senders))
        size = chunk if b - a == chunk else min(bucket_size(b - a), chunk)
        zz = pad_rows(z[a:b], size)
        ss = pad_rows(senders[a:b].astype(np.int32), size)
        rr = pad_rows(receivers[a:b].astype(np.int32), size)
        out[a:b] = np.asarray(_apply_filter(model, params, xp, zz, ss, rr))[: b - a]
    return out


def choose_threshold(p: np.ndarray, y: np.ndarray, target_purity: float) -> float:
    """The lowest threshold ``t`` whose kept edges ``p > t`` have purity ``>= target_purity``.

    Maximises recall under the purity constraint on labelled edges ``p [E]``, ``y [E]``.
    """
    order = np.argsort(-p, kind="stable")
    tp = np.cumsum(y[order])
    purity = tp / np.arange(1, len(p) + 1)
    ok = np.flatnonzero(purity >= target_purity)
    if len(ok) == 0:
        return float(p.max())
    i = ok[-1]
    return float(p[order[i + 1]]) if i + 1 < len(p) else 0.0


# --------------------------------------------------------------------------- inference object


@dataclasses.dataclass
class Stage1:
    """A trained stage 1: embedding + graph + edge filter, applied to whole events."""

    config: ml_collections.ConfigDict
    emb_params: Any
    filter_params: Any

    @property
    def emb_model(self) -> HitEmbedding:
        return create_embedding(self.config)

    @property
    def filter_model(self) -> EdgeFilter:
        return create_filter(self.config)

    def embed(self, ev: PreparedEvent) -> np.ndarray:
        return embed(self.emb_model, self.emb_params, ev.hf.x)

    def embedding_graph(self, ev: PreparedEvent) -> tuple[np.ndarray, np.ndarray]:
        return embedding_graph(self.config, self.emb_model, self.emb_params, ev)

    def refined_graph(self, ev: PreparedEvent, s=None, r=None, threshold: float | None = None):
        """``(senders, receivers, p)`` of the edges with ``p > threshold`` (default: config)."""
        if s is None:
            s, r = self.embedding_graph(ev)
        p = edge_probabilities(
            self.filter_model, self.filter_params, ev.hf.x, pair_features(ev.hf, s, r), s, r
        )
        t = self.config.filter.threshold if threshold is None else threshold
        keep = p > t
        return s[keep], r[keep], p[keep]

    def save(self, workdir: str | Path, step: int = 0, extra: dict | None = None) -> Path:
        return save_checkpoint(
            Path(workdir) / "checkpoints",
            step,
            {"embedding": self.emb_params, "filter": self.filter_params},
            kind=STAGE1_KIND,
            config=self.config.to_dict(),
            extra=extra,
        )

    @classmethod
    def restore(cls, path: str | Path, step: int | None = None) -> Stage1:
        """From a workdir or its ``checkpoints`` folder."""
        path = Path(path)
        ck = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        state, meta = restore_checkpoint(ck, step, kind=STAGE1_KIND)
        config = ml_collections.ConfigDict(meta["config"])
        return cls(config, state["embedding"], state["filter"])


def train_stage1(config: ml_collections.ConfigDict, workdir: str | Path, log=print) -> Stage1:
    """Train stage 1 from simulated events and save the checkpoint under ``workdir``."""
    t0 = time.time()
    d = config.data
    log(
        f"simulating {d.train_events} training events (mu={d.mu}, track_fraction={d.track_fraction})"
    )
    events = [
        prepare_event(e) for e in simulated_events(d.train_events, d.seed, d.mu, d.track_fraction)
    ]
    rng = jax.random.PRNGKey(config.seed)
    r1, r2 = jax.random.split(rng)
    emb_params, hist = train_embedding(config, events, r1, log)
    emb_model = create_embedding(config)
    x, edges = edge_set(config, emb_model, emb_params, events)
    log(f"embedding graph on training events: {len(edges.y):,} edges, {edges.y.mean():.3f} true")
    config.filter.pos_weight = float(
        config.filter.get("pos_weight", 0.0) or (1.0 - edges.y.mean()) / max(edges.y.mean(), 1e-6)
    )
    filter_params, hist2 = train_filter(config, x, edges, r2)
    if config.filter.get("target_purity", 0.0):
        sub = np.random.default_rng(config.seed).permutation(len(edges.y))[:2_000_000]
        p = edge_probabilities(
            create_filter(config),
            filter_params,
            x,
            edges.z[sub],
            edges.senders[sub],
            edges.receivers[sub],
        )
        config.filter.threshold = choose_threshold(p, edges.y[sub], config.filter.target_purity)
        log(
            f"edge filter threshold {config.filter.threshold:.3f} for purity "
            f">= {config.filter.target_purity} on training edges"
        )
    model = Stage1(config, emb_params, filter_params)
    model.save(workdir, extra={"history": hist + hist2, "train_seconds": time.time() - t0})
    log(f"stage 1 trained in {time.time() - t0:.0f} s; checkpoint in {workdir}/checkpoints")
    return model
