"""Inference: the trained stages as objects that restore a checkpoint and apply to events.

Nothing here imports :mod:`cgnn_jax.train`; training builds on this package, never the reverse.

* :class:`Pipeline`: the whole clustering GNN (restore, reconstruct, every stage's output),
  composed of :class:`Stage1` (embedding, graph, edge filter), stage 2 (the GNN;
  :class:`Stage2` as its training leaves it) and :class:`Stage3` (atoms, the Split/Stop tree,
  the tracks);
* :class:`PreparedEvent` / :func:`prepare_event`: an event's hit features and truth;
* :func:`reconstruct_dataset`: a submission for a whole dataset with the learned model
  (:class:`PipelineMethod`) or a baseline;
* :mod:`cgnn_jax.inference.checkpoint`: versioned orbax checkpoints.

The names are imported on first use (PEP 562): the dataset runner with a baseline does not load
JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cgnn_jax.inference.checkpoint import CheckpointError
    from cgnn_jax.inference.dataset import PipelineMethod, part_store, reconstruct_dataset
    from cgnn_jax.inference.events import (
        PreparedEvent,
        as_prepared,
        evaluation_events,
        prepare_event,
    )
    from cgnn_jax.inference.pipeline import Pipeline, restore_stage1
    from cgnn_jax.inference.pipeline_checkpoint import PRETRAINED_DIR
    from cgnn_jax.inference.stage1 import Stage1
    from cgnn_jax.inference.stage2 import Stage2
    from cgnn_jax.inference.stage3 import Stage3

_HOMES = {
    "CheckpointError": "checkpoint",
    "PRETRAINED_DIR": "pipeline_checkpoint",
    "Pipeline": "pipeline",
    "PipelineMethod": "dataset",
    "PreparedEvent": "events",
    "Stage1": "stage1",
    "Stage2": "stage2",
    "Stage3": "stage3",
    "as_prepared": "events",
    "evaluation_events": "events",
    "part_store": "dataset",
    "prepare_event": "events",
    "reconstruct_dataset": "dataset",
    "restore_stage1": "pipeline",
}

__all__ = [
    "PRETRAINED_DIR",
    "CheckpointError",
    "Pipeline",
    "PipelineMethod",
    "PreparedEvent",
    "Stage1",
    "Stage2",
    "Stage3",
    "as_prepared",
    "evaluation_events",
    "part_store",
    "prepare_event",
    "reconstruct_dataset",
    "restore_stage1",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cgnn_jax.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cgnn_jax.inference.{home}"), name)
