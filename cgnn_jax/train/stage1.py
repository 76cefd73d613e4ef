"""Stage 1 training: the hit embedding (metric learning) and the edge filter.

Three runs of :func:`cgnn_jax.train.loop.fit`, each resumable from ``<workdir>/train/<run>/``:

* ``embedding``: the embedding MLP with the hinge embedding loss on balanced same-particle /
  other-particle pairs, sampled inside the jitted step from the stacked training hits;
* ``embedding_hard``: more steps of the same state (one cosine decay over both) with a share of
  hard negatives (close in the embedding, other particles) mined from the first run's result;
* ``filter``: the edge filter on the candidate graph of the training events: the embedding
  graph, or with ``graph.builder = "module_map"`` the module map's candidates (the map learned
  first from ``graph.map_events`` simulated full events, :func:`training_module_map`), with the
  true *consecutive* pairs as positives and a ``filter.negative_rate`` share of the rest as
  negatives (:func:`module_map_edge_set`).

Then the edge-filter threshold is chosen for ``filter.target_purity`` (with a module map: for
``filter.edges_per_hit`` distinct edges per hit, both directions counted) and kept, with the
positive-edge weight, as what stage 1 *learned* (checkpoint metadata; the config is not changed).
The trained :class:`~cgnn_jax.inference.stage1.Stage1` is saved to ``<workdir>/stage1``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P

from cgnn_jax.features import pair_features
from cgnn_jax.features.pairs_jax import pair_columns
from cgnn_jax.graph.module_map import ModuleMap, event_module_map, symmetric_edges
from cgnn_jax.graph.neighbors import neighbor_graph
from cgnn_jax.graph.zones import ZoneMap, learn_zone_map
from cgnn_jax.inference.stage1 import (
    STAGE1_DIR,
    STAGE1_KIND,
    Stage1,
    context_columns,
    context_probabilities,
    edge_probabilities,
    edge_probabilities_fused,
    embed,
    embedding_graph,
    graph_builder,
    module_map_graph,
    prefilter_logits,
    prefilter_windows,
)
from cgnn_jax.metrics.edges import consecutive_pairs
from cgnn_jax.models import EdgeFilter, HitEmbedding, create_model
from cgnn_jax.models.factory import create_embedding, create_filter
from cgnn_jax.models.prefilter import (
    PairPrefilter,
    n_features,
    prefilter_features,
    window_table,
)
from cgnn_jax.sim import simulate_event
from cgnn_jax.sim.dataset import event_seed, event_vertex_sigma_z
from cgnn_jax.sim.geometry import load_geometry
from cgnn_jax.train.data import PairData, PreparedEvent, TrainingEvents, pair_data
from cgnn_jax.train.loop import (
    TrainState,
    fit,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
)
from cgnn_jax.train.losses import balanced_bce, hinge_embedding_loss

__all__ = [
    "STAGE1_DIR",
    "STAGE1_KIND",
    "Stage1",
    "add_context_filter",
    "choose_threshold",
    "create_embedding",
    "create_filter",
    "edge_probabilities",
    "edge_set",
    "embed",
    "embedding_graph",
    "fit_context_filter",
    "fit_prefilter",
    "module_map_edge_set",
    "prefilter_threshold",
    "train_prefilter",
    "train_stage1",
    "training_module_map",
    "training_zone_map",
]

WEIGHT_DECAY = 1e-5
MAP_SEED_OFFSET = 32452843  # module-map events: seed data.seed + this, apart from every other


# --------------------------------------------------------------------------- embedding


def sample_pairs(
    data: dict, rng: jax.Array, batch: int, hard_fraction: float, consecutive: float = 0.0
):
    """``(i, j, y, mask)`` ``[batch]``: 1/2 positives, the rest random and hard negatives.

    A share ``consecutive`` of the positives pairs a hit with a neighbour along its track (the
    previous or next hit by distance from the origin, as Exa.TrkX's metric learning does); the
    others with any other hit of its particle.
    """
    k1, k2, k3, k4, k5, k6 = jax.random.split(rng, 6)
    n_pos = batch // 2
    n_hard = int(batch * hard_fraction) if hard_fraction > 0 else 0
    n_rand = batch - n_pos - n_hard
    a = data["signal"][jax.random.randint(k1, (n_pos,), 0, data["signal"].shape[0])]
    cnt = data["group_count"][a]
    off = jax.random.randint(k2, (n_pos,), 1, jnp.maximum(cnt, 2))
    if consecutive > 0:
        rank = data["rank"][a]
        step = jnp.where(jax.random.bernoulli(k6, 0.5, (n_pos,)), 1, -1)
        step = jnp.where(rank == 0, 1, jnp.where(rank == cnt - 1, -1, step))
        near = jnp.arange(n_pos) < round(consecutive * n_pos)
        off = jnp.where(near, (step + cnt) % jnp.maximum(cnt, 1), off)
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


def embedding_loss(
    model: HitEmbedding,
    batch: int,
    hard_fraction: float,
    margin: float,
    consecutive: float = 0.0,
):
    """``(params, data, rng) -> (loss, {})``: the hinge loss of ``batch`` pairs drawn from the
    stacked hits ``data`` (:class:`~cgnn_jax.train.data.PairData` arrays + ``hard_s/hard_r``);
    ``consecutive``: the share of positives between neighbours along a track."""

    def loss_fn(params, data, rng):
        i, j, y, mask = sample_pairs(data, rng, batch, hard_fraction, consecutive)
        e = model.apply(params, jnp.concatenate([data["x"][i], data["x"][j]]))
        d2 = jnp.sum((e[: len(i)] - e[len(i) :]) ** 2, axis=-1)
        return hinge_embedding_loss(d2, y, mask, margin), {}

    return loss_fn


def hard_negatives(
    model, params, events: list[PreparedEvent], k: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """False kNN edges in the current embedding (rows of the stacked events), resampled to
    ``size``."""
    hs, hr, off = [], [], 0
    for ev in events:
        e = embed(model, params, ev.hf.x)
        s, r = neighbor_graph(e, "knn", k=k, symmetric=False)
        false = (ev.pid[s] != ev.pid[r]) | (ev.pid[s] == 0)
        hs.append(s[false] + off)
        hr.append(r[false] + off)
        off += ev.n
    hs, hr = np.concatenate(hs), np.concatenate(hr)
    if len(hs) == 0:
        return np.zeros(size, np.int64), np.ones(size, np.int64)
    pick = rng.integers(0, len(hs), size=size)
    return hs[pick], hr[pick]


def train_embedding(
    config: ml_collections.ConfigDict,
    events: list[PreparedEvent],
    workdir: Path,
    rng: jax.Array,
    mesh,
    log=print,
):
    """Train the embedding (plain, then with hard negatives); returns its parameters."""
    c = config.embedding
    model = create_model(config, "embedding")
    pairs = pair_data(events)
    init_rng, run_rng = jax.random.split(rng)
    params = model.init(init_rng, jnp.zeros((1, pairs.x.shape[1])))
    tx = make_optimizer(c.learning_rate, c.steps + c.hard_steps, weight_decay=WEIGHT_DECAY)
    state = TrainState.new(params, tx)
    arrays = {f.name: getattr(pairs, f.name) for f in dataclasses.fields(PairData)}
    # The hard phase in rounds, each mining its negatives from the embedding as it stands.
    rounds = max(1, int(c.get("hard_rounds", 1)))
    per_round = [c.hard_steps // rounds + (r < c.hard_steps % rounds) for r in range(rounds)]
    phases = [("embedding", c.steps, 0.0)] + [
        ("embedding_hard" + (f"_{r + 1}" if r else ""), n, c.hard_fraction)
        for r, n in enumerate(per_round)
    ]
    for r_phase, (name, steps, hard) in enumerate(phases):
        if steps == 0:
            continue
        if hard > 0:
            np_rng = np.random.default_rng(config.seed + max(0, r_phase - 1))
            arrays["hard_s"], arrays["hard_r"] = hard_negatives(
                model, state.params, events, c.hard_k, c.hard_pool, np_rng
            )
        else:
            arrays["hard_s"], arrays["hard_r"] = np.zeros(1, np.int64), np.ones(1, np.int64)
        data = replicate(mesh, arrays)
        loss_fn = embedding_loss(
            model, c.batch_pairs, hard, c.margin, c.get("consecutive_fraction", 0.0)
        )
        state = _fit_on(
            data, config, state, loss_fn, steps, workdir / name, run_rng, mesh, name, log
        )
    return state.params


def _fit_on(data, config, state, loss_fn, steps, workdir, rng, mesh, desc, log) -> TrainState:
    """:func:`~cgnn_jax.train.loop.fit` where every step samples its batch inside the jitted
    step from the same device-resident ``data`` (replicated)."""
    tx = state.tx
    return fit(
        state,
        make_train_step(loss_fn, tx, mesh, batch_spec=P()),
        lambda _: data,
        num_steps=steps,
        workdir=workdir,
        rng=rng,
        config=config.to_dict(),
        log_every=config.loop.log_every,
        checkpoint_every=config.loop.checkpoint_every,
        mesh=mesh,
        place_batch=lambda b: b,
        desc=desc,
        log=log,
    )


# --------------------------------------------------------------------------- edge filter


@dataclasses.dataclass
class EdgeSet:
    """Edges of stacked events (global rows): pair features ``z [E, P]``, labels ``y [E]``."""

    senders: np.ndarray
    receivers: np.ndarray
    z: np.ndarray
    y: np.ndarray
    cols: np.ndarray | None = None  # [N, 8] the stacked hits' pair columns (module-map sets)
    rows: np.ndarray | None = None  # [E] the edges' module-map rows (module-map sets)


def _stacked_edges(events: list[PreparedEvent], edges_of) -> tuple[np.ndarray, EdgeSet]:
    """``(x [N, F], edges)``: the stacked hits of ``events`` and their edges
    ``edges_of(ev) -> (senders, receivers, labels, module-map rows or None)`` in global rows,
    with their pair features (and, where there are rows, the hits' pair columns)."""
    xs, ss, rs, zs, ys, cs, ps, off = [], [], [], [], [], [], [], 0
    for ev in events:
        s, r, y, rows = edges_of(ev)
        xs.append(ev.hf.x)
        zs.append(pair_features(ev.hf, s, r))
        ys.append(y)
        ss.append(s.astype(np.int64) + off)
        rs.append(r.astype(np.int64) + off)
        if rows is not None:
            cs.append(pair_columns(ev.hf))
            ps.append(rows)
        off += ev.n
    extra = (
        (np.concatenate(cs).astype(np.float32), np.concatenate(ps).astype(np.int32)) if ps else ()
    )
    return np.concatenate(xs).astype(np.float32), EdgeSet(
        np.concatenate(ss),
        np.concatenate(rs),
        np.concatenate(zs).astype(np.float32),
        np.concatenate(ys),
        *extra,
    )


def edge_set(
    config, emb_model, emb_params, events: list[PreparedEvent]
) -> tuple[np.ndarray, EdgeSet]:
    """``(x [N, F], edges)``: stacked hits and the embedding-graph edges of ``events``."""

    def edges_of(ev):
        s, r = embedding_graph(config, emb_model, emb_params, ev)
        return s, r, (ev.pid[s] == ev.pid[r]) & (ev.pid[s] != 0), None

    return _stacked_edges(events, edges_of)


def consecutive_labels(ev: PreparedEvent, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """``[E]`` bool: the edge joins two hits adjacent along one particle's path (either
    direction; :func:`cgnn_jax.metrics.edges.consecutive_pairs`)."""
    a, b = consecutive_pairs(ev.hf.pos, ev.pid)
    n = np.int64(ev.n)
    keys = np.unique(a.astype(np.int64) * n + b)
    return np.isin(np.asarray(senders, np.int64) * n + receivers, keys)


def module_map_edge_set(
    config, module_map: ModuleMap, events: list[PreparedEvent]
) -> tuple[np.ndarray, EdgeSet]:
    """``(x [N, F], edges)``: stacked hits and the module map's candidates of ``events``: every
    true consecutive pair (label 1) and a ``filter.negative_rate`` share of the others (label 0,
    drawn with ``config.seed``)."""
    rate = float(config.filter.get("negative_rate", 0.05))
    if not 0 < rate <= 1:
        raise ValueError(f"filter.negative_rate must be in (0, 1], got {rate}")
    rng = np.random.default_rng(config.seed)

    def edges_of(ev):
        s, r, rows = module_map_graph(config, module_map, ev, rows=True)
        y = consecutive_labels(ev, s, r)
        keep = y | (rng.random(len(y)) < rate)
        return s[keep], r[keep], y[keep], rows[keep]

    return _stacked_edges(events, edges_of)


def training_module_map(config, log=print) -> ModuleMap:
    """The module map of ``graph.map_events`` simulated full events (``data.mu``, the luminous
    region of ``data.vertex_sigma_z``; seeds ``data.seed + MAP_SEED_OFFSET``, apart from every
    other training, validation and test seed)."""
    from tqdm.auto import tqdm

    d, n = config.data, int(config.graph.get("map_events", 0))
    if n < 1:
        raise ValueError(f"graph.map_events must be >= 1 with a module map, got {n}")
    seed = int(d.seed) + MAP_SEED_OFFSET
    sz = d.get("vertex_sigma_z", None)
    sz = tuple(sz) if isinstance(sz, (list, tuple)) else sz
    parts: list[ModuleMap] = []
    out = None
    for i in tqdm(range(n), desc="module map", unit="event", mininterval=2.0):
        ev = simulate_event(
            event_seed(seed, i), d.mu, event_id=1 + i,
            vertex_sigma_z=event_vertex_sigma_z(sz, seed, i),
        )  # fmt: skip
        parts.append(event_module_map(ev))
        if len(parts) == 16 or i == n - 1:  # merge in groups: one sort per 16 events
            group = parts[0]
            for m in parts[1:]:
                group = group.merge(m)
            out = group if out is None else out.merge(group)
            parts = []
    log(f"module map: {out.n_pairs:,} module pairs from {n} events, {out.size_mb():.1f} MB")
    return out


def budget_threshold(
    p: np.ndarray, senders: np.ndarray, receivers: np.ndarray, n: int, edges_per_hit: float
) -> float:
    """The cut on ``p`` that keeps ``edges_per_hit * n / 2`` distinct undirected pairs of the
    candidates ``(senders, receivers)`` of one event of ``n`` hits (all when fewer)."""
    _, _, q = symmetric_edges(senders, receivers, p, n, -1.0)
    q = np.sort(q[: len(q) // 2])[::-1]
    k = int(edges_per_hit * n / 2)
    return float(q[k]) if k < len(q) else -1.0


def filter_loss(model: EdgeFilter, batch: int, pos_weight: float, per_edge: tuple = ()):
    """``(params, data, rng) -> (loss, {})``: weighted BCE of ``batch`` edges drawn from
    ``data`` (``x``, ``z``, ``y``, ``senders``, ``receivers``, and the ``per_edge`` arrays the
    model reads after ``z``: the context filter's ``("c",)``)."""

    def loss_fn(params, data, rng):
        e = jax.random.randint(rng, (batch,), 0, data["y"].shape[0])
        s, r = data["senders"][e], data["receivers"][e]
        x = jnp.concatenate([data["x"][s], data["x"][r]])
        idx = jnp.arange(batch)
        cols = (data[k][e] for k in ("z", *per_edge))
        logits = model.apply(params, x, *cols, idx, idx + batch)
        return balanced_bce(logits, data["y"][e], jnp.ones(batch, bool), pos_weight), {}

    return loss_fn


def init_edge_model(model, rng, n_x: int, widths: tuple[int, ...]) -> dict:
    """The initial parameters of an edge model (edge or context filter) on hits of ``n_x``
    features and per-edge inputs of ``widths`` (``z``, then the rest)."""
    cols = (jnp.zeros((1, w)) for w in widths)
    return model.init(
        rng, jnp.zeros((2, n_x)), *cols, jnp.zeros(1, jnp.int32), jnp.ones(1, jnp.int32)
    )


def train_filter(
    config, x: np.ndarray, edges: EdgeSet, pos_weight: float, workdir: Path, rng, mesh, log=print
):
    c = config.filter
    model = create_model(config, "filter")
    init_rng, run_rng = jax.random.split(rng)
    params = init_edge_model(model, init_rng, x.shape[1], (edges.z.shape[1],))
    tx = make_optimizer(c.learning_rate, c.steps, weight_decay=WEIGHT_DECAY)
    data = replicate(
        mesh,
        {
            "x": x,
            "z": edges.z,
            "y": edges.y,
            "senders": edges.senders,
            "receivers": edges.receivers,
        },
    )
    loss_fn = filter_loss(model, c.batch_edges, pos_weight)
    state = TrainState.new(params, tx)
    state = _fit_on(
        data, config, state, loss_fn, c.steps, workdir / "filter", run_rng, mesh, "edge filter", log
    )
    return state.params


def prefilter_loss(model: PairPrefilter, batch: int, pos_weight: float):
    """``(params, data, rng) -> (loss, {})``: weighted BCE of the first pass on ``batch`` edges
    drawn from ``data`` (``cols``, ``y``, ``senders``, ``receivers``)."""

    def loss_fn(params, data, rng):
        e = jax.random.randint(rng, (batch,), 0, data["y"].shape[0])
        win = data["table"][data["rows"][e]] if "table" in data else None
        f = prefilter_features(data["cols"], data["senders"][e], data["receivers"][e], win)
        logits = model.apply(params, f)
        return balanced_bce(logits, data["y"][e], jnp.ones(batch, bool), pos_weight), {}

    return loss_fn


def prefilter_params_for(
    config, edges: EdgeSet, table: np.ndarray | None, rng, sample: int = 1 << 20
) -> dict:
    """The first pass's initial parameters, its input standardisation (``norm_mean``,
    ``norm_scale``) set from up to ``sample`` of ``edges`` (``table``: the window table, or
    None)."""
    model = create_model(config, "prefilter")
    params = model.init(rng, jnp.zeros((1, n_features(table is not None))))
    pick = np.random.default_rng(config.seed).permutation(len(edges.y))[:sample]
    win = None if table is None else table[edges.rows[pick]]
    f = np.asarray(prefilter_features(edges.cols, edges.senders[pick], edges.receivers[pick], win))
    p = jax.device_get(params)
    p["params"]["norm_mean"] = f.mean(0).astype(np.float32)
    p["params"]["norm_scale"] = (1.0 / np.maximum(f.std(0), 1e-6)).astype(np.float32)
    return p


def train_prefilter(
    config,
    edges: EdgeSet,
    pos_weight: float,
    workdir: Path,
    rng,
    mesh,
    log=print,
    table: np.ndarray | None = None,
) -> dict:
    """Train the first pass (:class:`~cgnn_jax.models.prefilter.PairPrefilter`) on a
    module-map edge set (:func:`module_map_edge_set`), with the module map's window ``table``
    (:func:`~cgnn_jax.models.prefilter.window_table`) when given; its parameters."""
    c = config.filter
    if edges.cols is None or (table is not None and edges.rows is None):
        raise ValueError("the first pass trains on a module-map edge set (EdgeSet.cols, rows)")
    init_rng, run_rng = jax.random.split(rng)
    params = prefilter_params_for(config, edges, table, init_rng)
    steps = int(c.get("prefilter_steps", 2000))
    tx = make_optimizer(c.learning_rate, steps, weight_decay=0.0)
    arrays = {"cols": edges.cols, "y": edges.y, "senders": edges.senders}
    arrays["receivers"] = edges.receivers
    if table is not None:
        arrays["table"], arrays["rows"] = table, edges.rows
    data = replicate(mesh, arrays)
    loss_fn = prefilter_loss(create_model(config, "prefilter"), c.batch_edges, pos_weight)
    state = TrainState.new(params, tx)
    state = _fit_on(
        data, config, state, loss_fn, steps, workdir / "prefilter", run_rng, mesh, "first pass", log
    )
    return state.params


def prefilter_threshold(
    config, params, edges: EdgeSet, recall: float, table: np.ndarray | None = None
) -> float:
    """The first pass's cut keeping a share ``recall`` of the true edges of ``edges``
    (``table``: the window table it reads, or None)."""
    if not 0 < recall <= 1:
        raise ValueError(f"filter.prefilter_recall must be in (0, 1], got {recall}")
    pos = np.flatnonzero(edges.y)
    if len(pos) == 0:
        return -np.inf
    q = prefilter_logits(
        create_model(config, "prefilter"), params, edges.cols, edges.senders[pos],
        edges.receivers[pos], table, None if table is None else edges.rows[pos],
    )  # fmt: skip
    k = int(np.floor((1.0 - recall) * len(q)))  # at most k of the true edges below the cut
    return float(np.nextafter(np.sort(q)[k], np.float32(-np.inf)))


def fit_prefilter(
    stage: Stage1,
    x: np.ndarray,
    edges: EdgeSet,
    scored: list[tuple[PreparedEvent, np.ndarray, np.ndarray, np.ndarray]],
    workdir: Path,
    rng,
    mesh,
    log=print,
) -> tuple[dict, float, float]:
    """``(params, prefilter_threshold, filter_threshold)``: the first pass trained on ``edges``
    (true consecutive pairs against the sampled rest), its cut keeping ``filter.prefilter_recall``
    of the true edges the edge filter keeps (above ``stage.threshold``), and the edge filter's
    budget cut (``filter.edges_per_hit``) again on what the first pass keeps of the ``scored``
    events' candidates ``(event, senders, receivers, filter probabilities)``."""
    config = stage.config
    table = window_table(stage.module_map) if prefilter_windows(config) else None
    frac = float(edges.y.mean())
    w = (1.0 - frac) / max(frac, 1e-6)
    params = jax.device_get(train_prefilter(config, edges, w, workdir, rng, mesh, log, table))
    pos = np.flatnonzero(edges.y)
    p = edge_probabilities(
        stage.filter_model, stage.filter_params, x, edges.z[pos], edges.senders[pos],
        edges.receivers[pos],
    )  # fmt: skip
    kept = dataclasses.replace(edges, y=np.zeros(len(edges.y), bool))
    kept.y[pos[p > stage.threshold]] = True
    recall = float(config.filter.get("prefilter_recall", 0.997))
    t0 = prefilter_threshold(config, params, kept, recall, table)
    done = Stage1(config, stage.emb_params, stage.filter_params, dict(stage.learned), params)
    ts, shares = [], []
    for ev, s, r, pr in scored:
        keep = done.first_pass.logits(ev, s, r) > t0
        shares.append(float(keep.mean()) if len(keep) else 1.0)
        ts.append(budget_threshold(pr[keep], s[keep], r[keep], ev.n, config.filter.edges_per_hit))
    log(
        f"first pass: cut {t0:.3f} keeps {recall} of the filter's true edges and "
        f"{np.mean(shares):.3f} of the candidates on training events"
    )
    return params, t0, float(np.mean(ts))


# --------------------------------------------------------------------------- context filter


def context_filter_enabled(config) -> bool:
    """Whether stage 1 trains context-filter rounds (``filter.context_hidden`` set, module map)."""
    return bool(tuple(config.filter.get("context_hidden", ()) or ())) and (
        graph_builder(config) == "module_map"
    )


def context_keep_threshold(stage: Stage1, events: list[PreparedEvent], fraction: float) -> float:
    """The first pass's cut before the context filter: on average over ``events``, the logit
    that keeps the share ``fraction`` of each event's candidates."""
    if not 0 < fraction <= 1:
        raise ValueError(f"filter.context_keep_fraction must be in (0, 1], got {fraction}")
    if fraction == 1 or stage.first_pass is None:
        return -np.inf
    cuts = []
    for ev in events:
        s, r = stage.embedding_graph(ev)
        q = stage.first_pass.logits(ev, s, r)
        cuts.append(float(np.quantile(q, 1.0 - fraction)) if len(q) else -np.inf)
    return float(np.mean(cuts))


def _filter_scored(stage: Stage1, ev: PreparedEvent):
    """``(senders, receivers, scores)`` of one event's candidates the first pass keeps before
    the context filter (its looser cut), scored by the edge filter."""
    s, r = stage.embedding_graph(ev)
    if stage.first_pass is not None:
        s, r = stage.first_pass.keep(ev, s, r, context=True)
    return s, r, edge_probabilities_fused(stage.filter_model, stage.filter_params, ev.hf, s, r)


def context_edge_set(
    events: list[PreparedEvent], scored: list[tuple], rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, EdgeSet, np.ndarray]:
    """``(x [N, F], edges, c [E, N_CONTEXT])``: the training edges of the next context round
    from each event's edges and the scores of the rounds before it (``scored``: ``(senders,
    receivers, scores)`` per event; the edge filter's for the first round): every true
    consecutive pair and a share ``rate`` of the others, with their context columns
    (:func:`~cgnn_jax.inference.stage1.context_columns`)."""
    if len(scored) != len(events):
        raise ValueError(f"{len(scored)} scored edge sets for {len(events)} events")
    cs, each = [], iter(scored)

    def edges_of(ev):  # called once per event, in order
        s, r, q = next(each)
        y = consecutive_labels(ev, s, r)
        keep = y | (rng.random(len(y)) < rate)
        cs.append(context_columns(ev.hf, s, r, q)[keep])
        return s[keep], r[keep], y[keep], None

    x, edges = _stacked_edges(events, edges_of)
    return x, edges, np.concatenate(cs).astype(np.float32)


def train_context_round(
    config, x: np.ndarray, edges: EdgeSet, c: np.ndarray, workdir: Path, rng, mesh, log=print
) -> dict:
    """One context-filter round trained on its edge set (:func:`context_edge_set`); its
    parameters, the context columns standardised by the training edges' mean and spread."""
    f = config.filter
    model = create_model(config, "context")
    init_rng, run_rng = jax.random.split(rng)
    widths = (edges.z.shape[1], c.shape[1])
    params = jax.device_get(init_edge_model(model, init_rng, x.shape[1], widths))
    params["params"]["norm_mean"] = c.mean(0).astype(np.float32)
    params["params"]["norm_scale"] = (1.0 / np.maximum(c.std(0), 1e-6)).astype(np.float32)
    steps = int(f.get("context_steps", f.steps))
    tx = make_optimizer(f.learning_rate, steps, weight_decay=WEIGHT_DECAY)
    arrays = {"x": x, "z": edges.z, "c": c, "y": edges.y}
    arrays["senders"], arrays["receivers"] = edges.senders, edges.receivers
    data = replicate(mesh, arrays)
    loss_fn = filter_loss(model, f.batch_edges, float(f.pos_weight or 1.0), per_edge=("c",))
    state = TrainState.new(params, tx)
    state = _fit_on(data, config, state, loss_fn, steps, workdir, run_rng, mesh, "context", log)
    return jax.device_get(state.params)


def _budget_cut(events: list[PreparedEvent], scored: list[tuple], budget: float) -> float:
    """The cut keeping ``budget`` edges per hit (:func:`budget_threshold`), mean over the first
    two events' scored edges ``(senders, receivers, scores)``."""
    pairs = zip(events[:2], scored, strict=False)
    return float(np.mean([budget_threshold(q, s, r, ev.n, budget) for ev, (s, r, q) in pairs]))


def fit_context_filter(
    stage: Stage1, events: list[PreparedEvent], workdir: Path, rng, mesh, log=print
) -> Stage1:
    """``stage`` with its context-filter rounds (``filter.context_rounds``) trained on
    ``events`` and their cuts learned: the first pass's looser cut
    (``filter.context_keep_fraction`` of the candidates, :func:`context_keep_threshold`) and
    the cuts between rounds keeping ``filter.context_prune_edges_per_hit`` edges per hit (0:
    none) and the last round's cut keeping ``filter.context_edges_per_hit`` (each
    :func:`budget_threshold`, mean over the first two events)."""
    f = stage.config.filter
    learned = dict(stage.learned)
    frac = float(f.get("context_keep_fraction", 0.5))
    learned["context_prefilter_threshold"] = context_keep_threshold(stage, events[:2], frac)
    learned["context_prune_thresholds"] = []
    stage = dataclasses.replace(stage, learned=learned, context_params=None)
    seed = np.random.default_rng([int(stage.config.seed), 7])
    n_rounds = int(f.get("context_rounds", 1))
    prune_budget = float(f.get("context_prune_edges_per_hit", 0) or 0)
    rate = float(f.get("negative_rate", 0.05))
    model = create_model(stage.config, "context")
    # each event's edges and the scores of the rounds so far, advanced one round at a time
    scored = [_filter_scored(stage, ev) for ev in events]
    rounds: dict = {}
    for k in range(n_rounds):
        x, edges, c = context_edge_set(events, scored, rate, seed)
        log(
            f"context round {k}: {len(edges.y):,} training edges, {edges.y.mean():.3f} true "
            f"(first pass keeps {frac} of the candidates)"
        )
        params = train_context_round(
            stage.config, x, edges, c, workdir / f"context_{k}", jax.random.fold_in(rng, k),
            mesh, log,
        )  # fmt: skip
        rounds[f"round_{k}"] = params
        last = k == n_rounds - 1
        scored = [  # the last round's scores are needed only for its cut
            (s, r, context_probabilities(model, params, ev.hf, s, r, q))
            for ev, (s, r, q) in zip(events[:2] if last else events, scored, strict=False)
        ]
        if prune_budget > 0 and not last:  # the cut before the next round, and its edges
            cut = _budget_cut(events, scored, prune_budget)
            learned["context_prune_thresholds"].append(cut)
            scored = [(s[m], r[m], q[m]) for s, r, q in scored for m in [q > cut]]
            log(f"after round {k}: cut {cut:.4f} keeps {prune_budget} edges per hit")
    budget = float(f.get("context_edges_per_hit", f.edges_per_hit))
    learned["context_threshold"] = _budget_cut(events, scored, budget)
    log(f"context filter cut {learned['context_threshold']:.4f} for {budget} edges per hit")
    return dataclasses.replace(stage, learned=learned, context_params=rounds)


def add_context_filter(
    stage: Stage1,
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    log=print,
    events: TrainingEvents | None = None,
    mesh=None,
) -> Stage1:
    """A trained stage 1 (without a context filter) with context-filter rounds trained onto it
    (:func:`fit_context_filter`) on ``config``'s stage-1 training events, with ``config``'s
    ``filter.context_*`` settings; saved to ``<workdir>/stage1``, resumable from
    ``<workdir>/train``. Nothing else of the stage changes."""
    t0 = time.time()
    workdir = Path(workdir)
    if stage.builder != "module_map":
        raise ValueError("a context filter needs a stage 1 on module-map candidates")
    c1 = stage.config.copy_and_resolve_references()
    with c1.unlocked():
        for k, v in config.filter.items():
            if k.startswith("context_"):
                c1.filter[k] = v
    stage = dataclasses.replace(stage, config=c1, context_params=None)
    events = events or TrainingEvents(config, log)
    mesh = mesh or make_mesh()
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
    stage = fit_context_filter(stage, events.train, workdir / "train", rng, mesh, log)
    stage.save(workdir, extra={"train_seconds": time.time() - t0})
    log(f"context filter trained in {time.time() - t0:.0f} s; stage 1 in {workdir / STAGE1_DIR}")
    return stage


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


# --------------------------------------------------------------------------- stage 1


def training_zone_map(events: list[PreparedEvent], bins: int) -> ZoneMap:
    """The zone-pair map (:mod:`cgnn_jax.graph.zones`) of the training events' truth."""
    n_layers = int(load_geometry().layer_index.max()) + 1
    return learn_zone_map(((ev.hf.layer_index, ev.hf.pos, ev.pid) for ev in events), n_layers, bins)


def train_stage1(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    log=print,
    events: TrainingEvents | None = None,
    mesh=None,
) -> Stage1:
    """Train stage 1 and save it to ``<workdir>/stage1``; resumable from ``<workdir>/train``.

    Args:
      config: a full config (``data``, ``embedding``, ``graph``, ``filter``, ``loop``).
      events: the run's shared training events (default: simulate ``config.data``).
      mesh: device mesh (default: all devices).
    """
    t0 = time.time()
    workdir = Path(workdir)
    events = events or TrainingEvents(config, log)
    mesh = mesh or make_mesh()
    evs = events.train
    r1, r2 = jax.random.split(jax.random.PRNGKey(config.seed))
    emb_params = train_embedding(config, evs, workdir / "train", r1, mesh, log)
    learned: dict = {}
    if graph_builder(config) == "module_map":
        module_map = training_module_map(config, log)
        learned["module_map"] = module_map.to_json()
        x, edges = module_map_edge_set(config, module_map, evs)
        what = "module-map candidates (consecutive pairs, sampled negatives)"
    else:
        x, edges = edge_set(config, create_model(config, "embedding"), emb_params, evs)
        what = "embedding graph"
    frac = float(edges.y.mean())
    log(f"{what} on training events: {len(edges.y):,} edges, {frac:.3f} true")
    pos_weight = float(config.filter.pos_weight or (1.0 - frac) / max(frac, 1e-6))
    filter_params = train_filter(config, x, edges, pos_weight, workdir / "train", r2, mesh, log)
    learned["filter_pos_weight"] = pos_weight
    prefilter_params = None
    if graph_builder(config) == "module_map":
        stage = Stage1(config, jax.device_get(emb_params), jax.device_get(filter_params), learned)
        budget = float(config.filter.edges_per_hit)
        scored = []
        for ev in evs[:2]:
            s, r = stage.embedding_graph(ev)
            p = edge_probabilities_fused(stage.filter_model, stage.filter_params, ev.hf, s, r)
            scored.append((ev, s, r, p))
        ts = [budget_threshold(p, s, r, ev.n, budget) for ev, s, r, p in scored]
        learned["filter_threshold"] = float(np.mean(ts))
        if int(config.filter.get("prefilter_hidden", 0) or 0) > 0:
            prefilter_params, cut0, cut1 = fit_prefilter(
                stage, x, edges, scored, workdir / "train", jax.random.fold_in(r2, 1), mesh, log
            )
            learned["prefilter_threshold"], learned["filter_threshold"] = cut0, cut1
        log(
            f"edge filter threshold {learned['filter_threshold']:.4f} for "
            f"{config.filter.edges_per_hit} edges per hit on training events"
        )
    context_params = None
    if context_filter_enabled(config):
        stage = Stage1(
            config,
            jax.device_get(emb_params),
            jax.device_get(filter_params),
            learned,
            None if prefilter_params is None else jax.device_get(prefilter_params),
        )
        stage = fit_context_filter(
            stage, evs, workdir / "train", jax.random.fold_in(r2, 2), mesh, log
        )
        learned, context_params = dict(stage.learned), stage.context_params
    elif config.filter.target_purity:
        sub = np.random.default_rng(config.seed).permutation(len(edges.y))[:2_000_000]
        p = edge_probabilities(
            create_model(config, "filter"),
            filter_params,
            x,
            edges.z[sub],
            edges.senders[sub],
            edges.receivers[sub],
        )
        t = choose_threshold(p, edges.y[sub], config.filter.target_purity)
        learned["filter_threshold"] = t
        log(
            f"edge filter threshold {t:.3f} for purity >= {config.filter.target_purity} "
            "on training edges"
        )
    bins = int(config.graph.get("zone_bins", 0) or 0)
    if (
        bins and graph_builder(config) == "knn"
    ):  # after the filter: it trains on the plain kNN graph, as before zone maps
        learned["zone_map"] = training_zone_map(evs, bins).to_json()
        log(f"zone map: {bins} zones per layer, learned from {len(evs)} training events")
    model = Stage1(
        config,
        jax.device_get(emb_params),
        jax.device_get(filter_params),
        learned,
        None if prefilter_params is None else jax.device_get(prefilter_params),
        context_params,
    )
    model.save(workdir, extra={"train_seconds": time.time() - t0})
    log(f"stage 1 trained in {time.time() - t0:.0f} s; checkpoint in {workdir / STAGE1_DIR}")
    return model
