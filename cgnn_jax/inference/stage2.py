"""Stage 2 at inference: the edge-weighted GNN on a whole event as one padded graph.

The GNN input is ``concat[hit features, stage-1 embedding]`` on stage 1's refined (or embedding)
graph, ``config.gnn.input_graph``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cgnn_jax.graph.batch import PaddedGraph, padded_graph
from cgnn_jax.inference.checkpoint import restore_checkpoint, save_checkpoint
from cgnn_jax.inference.events import PreparedEvent
from cgnn_jax.inference.stage1 import Stage1, checkpoint_dir
from cgnn_jax.models import EdgeWeightedGNN, create_model

STAGE2_KIND = "stage2"
STAGE2_DIR = "stage2"  # <workdir>/stage2/checkpoints


@functools.partial(jax.jit, static_argnums=(0, 5))
def _apply(model, params, graph, edge_mask, node_mask, return_weights=False):
    return model.apply(params, graph, edge_mask, node_mask, return_weights=return_weights)


def gnn_inputs(ev: PreparedEvent, stage1: Stage1) -> np.ndarray:
    """``[n, F + d]`` float32: hit features and the stage-1 embedding of every hit."""
    return np.concatenate([ev.hf.x, stage1.embed(ev)], axis=1).astype(np.float32)


def input_threshold(gnn_config) -> float | None:
    """The edge-filter cut of the GNN's ``"refined"`` input graph: ``gnn.input_threshold`` when
    set (>= 0), else ``None`` (stage 1's own, learned cut)."""
    t = float(gnn_config.get("input_threshold", -1.0))
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
            )
        return cls(config, state["gnn"], s1)
