"""Stage 2 at inference: the edge-weighted GNN on a whole event as one padded graph.

The GNN input is ``concat[hit features, stage-1 embedding]`` on stage 1's refined (or embedding)
graph, ``config.gnn.input_graph``: :class:`Stage2` as stage 2's training leaves it, and
:class:`GNNStage` as a pipeline runs it (its input embedding tuned end to end).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jraph
import ml_collections
import numpy as np

from cgnn_jax.graph.batch import PaddedGraph, padded_graph
from cgnn_jax.inference.checkpoint import restore_checkpoint, save_checkpoint
from cgnn_jax.inference.events import PreparedEvent
from cgnn_jax.inference.jax_cache import cached_call
from cgnn_jax.inference.stage1 import Stage1, checkpoint_dir
from cgnn_jax.models import EdgeWeightedGNN, HitEmbedding, create_model

STAGE2_KIND = "stage2"
STAGE2_DIR = "stage2"  # <workdir>/stage2/checkpoints


@functools.partial(jax.jit, static_argnums=(0, 5))
def _apply(model, params, graph, edge_mask, node_mask, return_weights=False):
    return model.apply(params, graph, edge_mask, node_mask, return_weights=return_weights)


def gnn_inputs(ev: PreparedEvent, stage1: Stage1) -> np.ndarray:
    """``[n, F + d]`` float32: hit features and the stage-1 embedding of every hit."""
    return np.concatenate([ev.hf.x, stage1.embed(ev)], axis=1).astype(np.float32)


def input_threshold(gnn_config, key: str = "input_threshold") -> float | None:
    """The edge-filter cut of the GNN's ``"refined"`` input graph: ``gnn.<key>`` (default
    ``gnn.input_threshold``) when set (>= 0), else ``None`` (stage 1's own, learned cut)."""
    t = gnn_config.get(key, None)
    t = -1.0 if t is None else float(t)
    return t if t >= 0 else None


def input_graph(
    ev: PreparedEvent, stage1: Stage1, kind: str, emb_graph=None, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The GNN's input graph ``(senders, receivers)``: stage 1's ``"refined"`` or ``"embedding"``
    graph (``emb_graph``: the embedding graph if already computed; ``threshold``: the refined
    graph's filter cut, ``None`` = stage 1's)."""
    if kind not in ("refined", "embedding"):
        raise ValueError(f"unknown input_graph {kind!r}; valid: 'refined', 'embedding'")
    s, r = emb_graph if emb_graph is not None else stage1.embedding_graph(ev)
    if kind == "embedding":
        return s, r
    s2, r2, _ = stage1.refined_graph(ev, s, r, threshold=threshold)
    return s2, r2


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
        return create_model(self.config, "gnn")

    def _stage1(self, stage1: Stage1 | None) -> Stage1:
        s1 = stage1 if stage1 is not None else self.stage1
        if s1 is None:
            raise ValueError("Stage2 needs a stage 1 (none given and none bundled)")
        return s1

    def padded_event(self, ev: PreparedEvent, stage1: Stage1 | None = None) -> PaddedGraph:
        """The whole event as one padded graph (no evaluation edges)."""
        s1 = self._stage1(stage1)
        s, r = input_graph(
            ev, s1, self.config.gnn.input_graph, threshold=input_threshold(self.config.gnn)
        )
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
            if self.stage1.prefilter_params is not None:
                state["stage1"]["prefilter"] = self.stage1.prefilter_params
            if self.stage1.context_params:
                state["stage1"]["context"] = self.stage1.context_params
            meta["stage1_config"] = self.stage1.config.to_dict()
            meta["learned"] = dict(self.stage1.learned)
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
        state, meta = restore_checkpoint(checkpoint_dir(path, STAGE2_DIR), step, kind=STAGE2_KIND)
        config = ml_collections.ConfigDict(meta["config"])
        s1 = None
        if "stage1" in state:
            s1 = Stage1(
                ml_collections.ConfigDict(meta["stage1_config"]),
                state["stage1"]["embedding"],
                state["stage1"]["filter"],
                dict(meta.get("learned", {})),
                state["stage1"].get("prefilter"),
                state["stage1"].get("context"),
            )
        return cls(config, state["gnn"], s1)


def gnn_forward(
    emb_model,
    gnn_model: EdgeWeightedGNN,
    p_emb: Any,
    p_gnn: Any,
    graph,
    edge_mask,
    node_mask,
    return_weights: bool = False,
):
    """GNN output ``[N, out]`` of a padded graph whose nodes are the hit features ``[N, F]``;
    with ``return_weights``, also the last layer's edge weights ``a_ij [E]``."""
    x = graph.nodes
    e = emb_model.apply(p_emb, x) * node_mask[:, None]
    g = graph._replace(nodes=jnp.concatenate([x, e], axis=-1))
    if not return_weights:
        return gnn_model.apply(p_gnn, g, edge_mask, node_mask)
    out, weights = gnn_model.apply(p_gnn, g, edge_mask, node_mask, return_weights=True)
    return out, weights[-1]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gnn_jit(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask):
    if isinstance(graph, dict):  # its fields (a plain pytree, for the traced-program cache)
        graph = jraph.GraphsTuple(**graph)
    return gnn_forward(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask, True)


@dataclasses.dataclass
class GNNStage:
    """Stage 2 as a pipeline runs it: the GNN on stage 1's input graph, its input
    ``[hit features, input embedding]`` with an input embedding of its own (it starts as the
    stage-1 embedding and is tuned end to end).

    Attributes:
      config: the pipeline's config (``gnn``: the GNN and its input graph).
      stage1: the stage 1 that builds the graph.
      params: ``{"input_embedding", "gnn"}``.
    """

    config: ml_collections.ConfigDict
    stage1: Stage1
    params: dict[str, Any]

    @property
    def emb_model(self) -> HitEmbedding:
        return create_model(self.stage1.config, "embedding")

    @property
    def gnn_model(self) -> EdgeWeightedGNN:
        return create_model(self.config, "gnn")

    def graph(self, ev: PreparedEvent) -> dict[str, np.ndarray]:
        """Stage 1: ``embedding [n, d]``, the embedding graph and the refined (GNN input) graph."""
        s1 = self.stage1
        e = s1.embed(ev)
        es, er = s1.embedding_graph(ev, e)
        out = {"embedding": e, "emb_senders": es, "emb_receivers": er}
        if self.config.gnn.input_graph == "refined":
            s, r, p = s1.refined_graph(ev, es, er, threshold=input_threshold(self.config.gnn))
        else:
            s, r, p = es, er, np.ones(len(es), np.float32)
        out.update(senders=s, receivers=r, edge_prob=p)
        return out

    def outputs(
        self, ev: PreparedEvent, senders: np.ndarray, receivers: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(out [n, out_dim], a [E])``: every hit in the learned cluster space and the last
        layer's weight ``a_ij`` of every input edge (the edge score)."""
        g = padded_graph(ev.hf.x.astype(np.float32), senders, receivers)
        out, a = cached_call(
            "gnn",
            _gnn_jit,
            (self.emb_model, self.gnn_model),
            (
                self.params["input_embedding"],
                self.params["gnn"],
                g.graph._asdict(),
                g.edge_mask,
                g.node_mask,
            ),
        )
        return np.asarray(out)[: ev.n], np.asarray(a)[: len(senders)]
