"""Stage 1 at inference: candidate graph -> edge filter.

The candidate graph comes from ``config.graph.builder``:

* ``"knn"`` (default): the hit embedding's kd-tree graph (with a zone map, only between zones
  that consecutive training hits join);
* ``"module_map"``: every hit pair on a module pair of the learned module map inside its
  doublet windows (:mod:`cgnn_jax.graph.module_map`, ``graph.window_margin`` /
  ``graph.window_floor``); the edge filter then keeps an undirected graph (both directions).

:class:`Stage1` holds the parameters of both networks, the config they were built with and what
training learned (``learned["filter_threshold"]``: the edge-filter cut chosen for a target purity
or, with a module map, for ``filter.edges_per_hit``; ``learned["zone_map"]``: the zone pairs the
kNN graph may join, :mod:`cgnn_jax.graph.zones`; ``learned["module_map"]``: the module map).
The embedding is computed with either builder: the GNN reads it as an input. A stage 1 with
context-filter rounds (``Stage1.context_params``, :func:`stage1_context`) makes its own graph,
the GNN input at its learned cut, from their last round's scores.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cgnn_jax.features.hits import HitFeatures
from cgnn_jax.features.pairs_jax import pair_columns, pair_features_jnp
from cgnn_jax.graph.module_map import (
    ModuleMap,
    candidate_pairs,
    hit_module_keys,
    symmetric_edges,
)
from cgnn_jax.graph.neighbors import neighbor_graph, zone_knn_graph
from cgnn_jax.graph.zones import ZoneMap
from cgnn_jax.inference.checkpoint import restore_checkpoint, save_checkpoint
from cgnn_jax.inference.events import PreparedEvent
from cgnn_jax.inference.jax_cache import cached_call
from cgnn_jax.models import ContextFilter, EdgeFilter, HitEmbedding, create_model
from cgnn_jax.models.context_filter import context_inputs
from cgnn_jax.models.prefilter import PairPrefilter, prefilter_features, window_table
from cgnn_jax.utils.padding import bucket_size, pad_rows

STAGE1_KIND = "stage1"
STAGE1_DIR = "stage1"  # <workdir>/stage1/checkpoints
GRAPH_BUILDERS = ("knn", "module_map")


def graph_builder(config: ml_collections.ConfigDict) -> str:
    """``config.graph.builder`` (default ``"knn"``), checked."""
    b = str(config.graph.get("builder", "knn"))
    if b not in GRAPH_BUILDERS:
        raise ValueError(f"graph.builder must be one of {GRAPH_BUILDERS}, got {b!r}")
    return b


def module_map_graph(
    config: ml_collections.ConfigDict,
    module_map: ModuleMap | None,
    ev: PreparedEvent,
    rows: bool = False,
) -> tuple[np.ndarray, ...]:
    """The module map's candidates of one event, directed inner -> outer ``(senders [E],
    receivers [E])`` (:func:`cgnn_jax.graph.module_map.candidate_pairs`); with ``rows``, also
    their module pairs' rows of the map ``[E]``."""
    if module_map is None:
        raise ValueError("graph.builder is 'module_map' but stage 1 has no learned module map")
    if ev.hf.module_index is None:
        raise ValueError("the module-map graph needs the hits' modules (HitFeatures.module_index)")
    g = config.graph
    return candidate_pairs(
        hit_module_keys(ev.hf.module_index),
        ev.hf.pos,
        module_map,
        float(g.get("window_margin", 0.1)),
        float(g.get("window_floor", 1.0)),
        rows=rows,
    )


def prefilter_windows(config: ml_collections.ConfigDict) -> bool:
    """Whether the first pass reads its pairs' module-map windows (``filter.prefilter_windows``)."""
    return bool(config.filter.get("prefilter_windows", True))


@functools.partial(jax.jit, static_argnums=0)
def _apply_embedding(model: HitEmbedding, params: Any, x: jnp.ndarray) -> jnp.ndarray:
    return model.apply(params, x)


def embed(model: HitEmbedding, params: Any, x: np.ndarray) -> np.ndarray:
    """Embed hits ``x [n, F] -> [n, d]`` (padded to a size bucket: few compilations)."""
    n = len(x)
    xp = pad_rows(np.asarray(x, np.float32), bucket_size(n))
    return np.asarray(cached_call("embedding", _apply_embedding, (model,), (params, xp)))[:n]


def embedding_graph(
    config: ml_collections.ConfigDict,
    emb_model: HitEmbedding,
    emb_params: Any,
    ev: PreparedEvent,
    zone_map: ZoneMap | None = None,
    embedding: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The stage-1 embedding graph of one event: directed edges ``(senders, receivers)``.

    With a ``zone_map`` (:mod:`cgnn_jax.graph.zones`), each hit's ``graph.zone_k`` nearest
    among its ``graph.candidates`` nearest that lie in an allowed zone; else
    ``config.graph.mode`` with ``graph.k``. ``embedding [n, d]``: the hits' embedding if already
    computed (:func:`embed`).
    """
    g = config.graph
    e = embed(emb_model, emb_params, ev.hf.x) if embedding is None else embedding
    if zone_map is not None:
        zones = zone_map.zones(ev.hf.layer_index, ev.hf.pos)
        k, cand = int(g.get("zone_k", g.k)), int(g.get("candidates", 64))
        return zone_knn_graph(e, zones, zone_map.allowed, k, cand, g.radius, g.approx)
    return neighbor_graph(e, g.mode, k=g.k, radius=g.radius, approx=g.approx)


@functools.partial(jax.jit, static_argnums=0)
def _apply_filter(model, params, x, z, s, r):
    return jax.nn.sigmoid(model.apply(params, x, z, s, r))


def _by_chunks(
    call: Callable[..., Any], chunk: int, senders: np.ndarray, receivers: np.ndarray, *per_edge
) -> np.ndarray:
    """``call(senders, receivers, *per_edge)`` in fixed-size chunks of edges, each padded to a
    size bucket (bounded memory, one compilation per node bucket), concatenated ``[E]``."""
    out = np.empty(len(senders), np.float32)
    cols = (
        (senders, np.int32),
        (receivers, np.int32),
        *((v, np.int32 if np.issubdtype(v.dtype, np.integer) else np.float32) for v in per_edge),
    )
    for a in range(0, len(senders), chunk):
        b = min(a + chunk, len(senders))
        size = chunk if b - a == chunk else min(bucket_size(b - a), chunk)
        # a full chunk goes as it is (no padded copy: ~0.1 s per million edges)
        parts = (np.asarray(v[a:b], dt) for v, dt in cols)
        p = call(*(v if b - a == size else pad_rows(v, size) for v in parts))
        out[a:b] = np.asarray(p)[: b - a]
    return out


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
    xp = jnp.asarray(pad_rows(np.asarray(x, np.float32), bucket_size(len(x))))

    def call(ss, rr, zz):
        return cached_call("filter", _apply_filter, (model,), (params, xp, zz, ss, rr))

    return _by_chunks(call, chunk, senders, receivers, z)


@functools.partial(jax.jit, static_argnums=0)
def _apply_filter_fused(model, params, x, cols, s, r):
    return jax.nn.sigmoid(model.apply(params, x, pair_features_jnp(cols, s, r), s, r))


def edge_probabilities_fused(
    model: EdgeFilter,
    params: Any,
    hf: HitFeatures,
    senders: np.ndarray,
    receivers: np.ndarray,
    chunk: int = 1 << 20,
) -> np.ndarray:
    """``p_ij [E]`` as :func:`edge_probabilities` of :func:`cgnn_jax.features.pair_features`, with
    the pair features computed inside the filter's program (float32,
    :mod:`cgnn_jax.features.pairs_jax`): ~0.2 s less per full event; the probabilities agree to
    ~1e-4 on all but a few hundred of 4.2 M edges (pairs at nearly equal radius, whose ``z0`` is
    ill-conditioned in either precision), 5 of which cross the GNN's input cut."""
    nb = bucket_size(hf.n_hits)
    xp = jnp.asarray(pad_rows(np.asarray(hf.x, np.float32), nb))
    cp = jnp.asarray(pad_rows(pair_columns(hf), nb))

    def call(ss, rr):
        return cached_call("filter_fused", _apply_filter_fused, (model,), (params, xp, cp, ss, rr))

    return _by_chunks(call, chunk, senders, receivers)


@functools.partial(jax.jit, static_argnums=0)
def _apply_context(model, params, x, cols, c, s, r):
    return jax.nn.sigmoid(model.apply(params, x, pair_features_jnp(cols, s, r), c, s, r))


def context_columns(
    hf: HitFeatures, senders: np.ndarray, receivers: np.ndarray, score: np.ndarray
) -> np.ndarray:
    """``c [E, N_CONTEXT]``: :func:`~cgnn_jax.models.context_filter.context_inputs` of the scored
    directed edges ``senders -> receivers`` (inner hit first) of one event, hits and edges
    padded to size buckets (one compilation per pair of buckets)."""
    n_pad, e_pad = bucket_size(hf.n_hits), bucket_size(len(senders))
    mask = np.arange(e_pad) < len(senders)
    c = context_inputs(
        pad_rows(np.asarray(hf.pos, np.float32), n_pad),
        pad_rows(np.asarray(senders, np.int32), e_pad),
        pad_rows(np.asarray(receivers, np.int32), e_pad),
        pad_rows(np.asarray(score, np.float32), e_pad),
        mask,
        n_pad,
    )
    return np.asarray(c)[: len(senders)]


def context_probabilities(
    model: ContextFilter,
    params: Any,
    hf: HitFeatures,
    senders: np.ndarray,
    receivers: np.ndarray,
    score: np.ndarray,
    chunk: int = 1 << 20,
) -> np.ndarray:
    """``q_ij [E]``: the context filter's probabilities of the directed edges ``senders ->
    receivers`` of one event, given the previous round's scores ``score [E]``
    (:func:`context_columns`), in fixed-size chunks of edges."""
    c = context_columns(hf, senders, receivers, score)
    nb = bucket_size(hf.n_hits)
    xp = jnp.asarray(pad_rows(np.asarray(hf.x, np.float32), nb))
    cp = jnp.asarray(pad_rows(pair_columns(hf), nb))

    def call(ss, rr, cc):
        return cached_call("context", _apply_context, (model,), (params, xp, cp, cc, ss, rr))

    return _by_chunks(call, chunk, senders, receivers, c)


def context_rounds(
    model: ContextFilter,
    rounds: list,
    prune: list[float],
    hf: HitFeatures,
    senders: np.ndarray,
    receivers: np.ndarray,
    score: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(senders, receivers, q)`` after the context rounds ``rounds`` (parameters, in order),
    each on the previous one's scores (the first on the edge filter's ``score``); before round
    ``k > 0``, the edges at or below ``prune[k - 1]`` (when given) leave, so that later rounds
    run on fewer edges and see a cleaner neighbourhood."""
    s, r, q = senders, receivers, score
    for k, params in enumerate(rounds):
        if 0 < k <= len(prune):
            keep = q > prune[k - 1]
            s, r, q = s[keep], r[keep], q[keep]
        q = context_probabilities(model, params, hf, s, r, q)
    return s, r, q


@functools.partial(jax.jit, static_argnums=0)
def _apply_prefilter(model, params, cols, s, r):
    return model.apply(params, prefilter_features(cols, s, r))


@functools.partial(jax.jit, static_argnums=0)
def _apply_prefilter_windows(model, params, cols, table, s, r, rows):
    return model.apply(params, prefilter_features(cols, s, r, table[rows]))


def prefilter_logits(
    model: PairPrefilter,
    params: Any,
    cols: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    table: Any = None,
    rows: np.ndarray | None = None,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """The first pass's logits ``[E]`` of the pairs ``senders -> receivers`` of hits with pair
    columns ``cols [n, 8]`` (:func:`~cgnn_jax.features.pairs_jax.pair_columns`); with a window
    ``table`` (:func:`~cgnn_jax.models.prefilter.window_table`), the pairs' ``rows`` of it. In
    chunks of ``chunk`` edges: the pass is memory-bound, and chunks that stay in cache make it
    ~2x faster on a CPU than the filter's million-edge ones."""
    cp = jnp.asarray(pad_rows(np.asarray(cols, np.float32), bucket_size(len(cols))))
    if table is None:

        def call(ss, rr):
            return cached_call("prefilter", _apply_prefilter, (model,), (params, cp, ss, rr))

        return _by_chunks(call, chunk, senders, receivers)
    if rows is None or len(rows) != len(senders):
        raise ValueError("the first pass with module-map windows needs each candidate's map row")
    tb = jnp.asarray(table)

    def call_w(ss, rr, pp):
        return cached_call(
            "prefilter_windows", _apply_prefilter_windows, (model,), (params, cp, tb, ss, rr, pp)
        )

    return _by_chunks(call_w, chunk, senders, receivers, np.asarray(rows, np.int32))


def checkpoint_dir(path: str | Path, name: str) -> Path:
    """The checkpoint folder of model ``name`` for a path that is a training workdir (its
    ``<name>/checkpoints``), a model folder (its ``checkpoints``) or the checkpoint folder itself."""
    path = Path(path)
    for cand in (path / name / "checkpoints", path / "checkpoints"):
        if cand.is_dir():
            return cand
    return path


class FirstPass:
    """A stage 1's first pass over its module-map candidates
    (:class:`~cgnn_jax.models.prefilter.PairPrefilter`): a tiny network whose cut
    (``learned["prefilter_threshold"]``) drops most candidates before the edge filter."""

    def __init__(self, stage1: Stage1) -> None:
        self.stage1 = stage1

    @property
    def model(self) -> PairPrefilter:
        return create_model(self.stage1.config, "prefilter")

    @functools.cached_property
    def window_table(self) -> jnp.ndarray | None:
        """The per-module-pair window rows it reads, on the device, or None."""
        s1 = self.stage1
        if not prefilter_windows(s1.config):
            return None
        if s1.module_map is None:
            raise ValueError("the first pass reads module-map windows but stage 1 has no map")
        return jnp.asarray(window_table(s1.module_map))

    def candidate_rows(self, ev: PreparedEvent, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The module-map rows ``[E]`` of the candidates ``s -> r`` of ``ev``: kept from
        :meth:`Stage1.embedding_graph` when these are its arrays, else looked up."""
        last = self.stage1._last_candidates
        if last is not None and last[0] is s and last[1] is r:
            return last[2]
        keys = hit_module_keys(ev.hf.module_index)
        mm = self.stage1.module_map
        want = (keys[s].astype(np.int64) << 32) | keys[r].astype(np.int64)
        rows = np.searchsorted(mm.keys, want)
        if len(want) and not np.array_equal(mm.keys[np.minimum(rows, mm.n_pairs - 1)], want):
            raise ValueError("candidates on module pairs the module map does not hold")
        return rows.astype(np.int32)

    def logits(self, ev: PreparedEvent, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The first pass's logits ``[E]`` of the candidates ``s -> r`` of ``ev``."""
        table = self.window_table
        rows = None if table is None else self.candidate_rows(ev, s, r)
        params = self.stage1.prefilter_params
        return prefilter_logits(self.model, params, pair_columns(ev.hf), s, r, table, rows)

    def keep(
        self, ev: PreparedEvent, s: np.ndarray, r: np.ndarray, context: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The candidates ``s -> r`` above the first pass's cut (``context``: its looser cut
        before the context filter, ``learned["context_prefilter_threshold"]``)."""
        key = "context_prefilter_threshold" if context else "prefilter_threshold"
        cut = float(self.stage1.learned.get(key, -np.inf))
        keep = self.logits(ev, s, r) > cut
        return s[keep], r[keep]


class ContextRounds:
    """A stage 1's context-filter rounds (:class:`~cgnn_jax.models.context_filter.ContextFilter`,
    ``Stage1.context_params``) and their learned cuts; :func:`stage1_context` gives them."""

    def __init__(self, stage1: Stage1) -> None:
        self.stage1 = stage1

    @property
    def model(self) -> ContextFilter:
        return create_model(self.stage1.config, "context")

    @property
    def params(self) -> list:
        """Each round's parameters, in order."""
        p = self.stage1.context_params
        return [p[f"round_{k}"] for k in range(len(p))]

    @property
    def cut(self) -> float:
        """The last round's cut (``learned["context_threshold"]``)."""
        return float(self.stage1.learned["context_threshold"])

    def scores(
        self, ev: PreparedEvent, s: np.ndarray, r: np.ndarray, p: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(senders, receivers, q)``: the directed candidates ``s -> r`` scored ``p`` by the
        edge filter, through every round (:func:`context_rounds`, with the learned cuts between
        rounds ``learned["context_prune_thresholds"]``), and the last round's scores."""
        prune = list(self.stage1.learned.get("context_prune_thresholds", []))
        return context_rounds(self.model, self.params, prune, ev.hf, s, r, p)


def stage1_context(stage1: Stage1) -> ContextRounds | None:
    """The context rounds that make ``stage1``'s own graph, or None: it has no context
    parameters, or its candidates are not a module map's."""
    if not stage1.context_params or stage1.builder != "module_map":
        return None
    return ContextRounds(stage1)


@dataclasses.dataclass
class Stage1:
    """A trained stage 1: embedding + graph + edge filter, applied to whole events.

    Attributes:
      config: the config it was trained with (``embedding``, ``graph``, ``filter`` blocks).
      emb_params, filter_params: the two networks' parameters.
      learned: what training chose (``filter_threshold``; ``zone_map``, see
        :mod:`cgnn_jax.graph.zones`; ``prefilter_threshold``: the first pass's cut on its
        logits); without a threshold the configured ``config.filter.threshold`` applies,
        without a zone map the plain kNN graph.
      prefilter_params: the first pass over module-map candidates
        (:class:`~cgnn_jax.models.prefilter.PairPrefilter`, ``filter.prefilter_hidden``
        units), or None: the edge filter scores every candidate.
      context_params: the context filter's rounds after the edge filter (``{"round_0": ...}``,
        :class:`~cgnn_jax.models.context_filter.ContextFilter`, ``filter.context_hidden``), or
        None. They make stage 1's own graph (no explicit cut): the first pass at its looser cut
        ``learned["context_prefilter_threshold"]``, the edge filter, each round on the previous
        round's scores, the last round's cut ``learned["context_threshold"]``.
    """

    config: ml_collections.ConfigDict
    emb_params: Any
    filter_params: Any
    learned: dict = dataclasses.field(default_factory=dict)
    prefilter_params: Any = None
    context_params: Any = None
    # the last module-map candidates and their map rows (the first pass's window features)
    _last_candidates: tuple | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def emb_model(self) -> HitEmbedding:
        return create_model(self.config, "embedding")

    @property
    def filter_model(self) -> EdgeFilter:
        return create_model(self.config, "filter")

    @functools.cached_property
    def first_pass(self) -> FirstPass | None:
        """The first pass over module-map candidates (:class:`FirstPass`), or None: the edge
        filter scores every candidate."""
        if self.prefilter_params is None or self.builder != "module_map":
            return None
        return FirstPass(self)

    @property
    def threshold(self) -> float:
        """The edge-filter cut: learned, or else the configured one."""
        if "filter_threshold" in self.learned:
            return float(self.learned["filter_threshold"])
        return float(self.config.filter.threshold)

    def embed(self, ev: PreparedEvent) -> np.ndarray:
        return embed(self.emb_model, self.emb_params, ev.hf.x)

    @property
    def builder(self) -> str:
        """How the candidate graph is built: ``"knn"`` or ``"module_map"``."""
        return graph_builder(self.config)

    @functools.cached_property
    def module_map(self) -> ModuleMap | None:
        """The learned module map (``learned["module_map"]``), or None."""
        d = self.learned.get("module_map")
        return ModuleMap.from_json(d) if d else None

    @functools.cached_property
    def zone_map(self) -> ZoneMap | None:
        """The learned zone-pair map (``learned["zone_map"]``), or None: plain kNN graph."""
        d = self.learned.get("zone_map")
        return ZoneMap.from_json(d) if d else None

    def embedding_graph(
        self, ev: PreparedEvent, embedding: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The candidate graph (:attr:`builder`): directed ``(senders, receivers)``."""
        if self.builder == "module_map":
            if self.first_pass is None or not prefilter_windows(self.config):
                return module_map_graph(self.config, self.module_map, ev)
            s, r, rows = module_map_graph(self.config, self.module_map, ev, rows=True)
            self._last_candidates = (s, r, rows)
            return s, r
        return embedding_graph(
            self.config, self.emb_model, self.emb_params, ev, self.zone_map, embedding
        )

    def refined_graph(self, ev: PreparedEvent, s=None, r=None, threshold: float | None = None):
        """``(senders, receivers, p)`` of the edges with ``p > threshold`` (default:
        :attr:`threshold`); with a module map, as an undirected graph in both directions
        (:func:`cgnn_jax.graph.module_map.symmetric_edges`), of the candidates the first pass
        keeps when stage 1 has one (:attr:`first_pass`). Without ``threshold``, a stage 1 with
        context rounds (:func:`stage1_context`) cuts their last scores instead, on what the
        first pass keeps at its looser cut."""
        if s is None:
            s, r = self.embedding_graph(ev)
        rounds = stage1_context(self) if threshold is None else None
        context = rounds is not None
        if self.first_pass is not None:
            s, r = self.first_pass.keep(ev, s, r, context=context)
        p = edge_probabilities_fused(self.filter_model, self.filter_params, ev.hf, s, r)
        if context:
            s, r, q = rounds.scores(ev, s, r, p)
            return symmetric_edges(s, r, q, ev.n, rounds.cut)
        t = self.threshold if threshold is None else threshold
        if self.builder == "module_map":
            return symmetric_edges(s, r, p, ev.n, t)
        keep = p > t
        return s[keep], r[keep], p[keep]

    def save(self, workdir: str | Path, step: int = 0, extra: dict | None = None) -> Path:
        """Save under ``<workdir>/stage1/checkpoints`` (kind ``"stage1"``)."""
        return save_checkpoint(
            Path(workdir) / STAGE1_DIR / "checkpoints",
            step,
            {
                "embedding": self.emb_params,
                "filter": self.filter_params,
                **({"prefilter": self.prefilter_params} if self.prefilter_params else {}),
                **({"context": self.context_params} if self.context_params else {}),
            },
            kind=STAGE1_KIND,
            config=self.config.to_dict(),
            extra={**(extra or {}), "learned": dict(self.learned)},
        )

    @classmethod
    def restore(cls, path: str | Path, step: int | None = None) -> Stage1:
        """From a workdir, its ``stage1`` folder or the ``checkpoints`` folder itself."""
        state, meta = restore_checkpoint(checkpoint_dir(path, STAGE1_DIR), step, kind=STAGE1_KIND)
        config = ml_collections.ConfigDict(meta["config"])
        learned = dict(meta.get("learned", {}))
        return cls(
            config,
            state["embedding"],
            state["filter"],
            learned,
            state.get("prefilter"),
            state.get("context"),
        )
