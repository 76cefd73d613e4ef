"""Inference: the trained stages as objects that restore a checkpoint and apply to events.

Nothing here imports :mod:`cgnn_jax.train`; training builds on this package, never the reverse.

* :class:`Pipeline`: the whole clustering GNN (restore, reconstruct, every stage's output);
* :class:`Stage1` (embedding, graph, edge filter) and :class:`Stage2` (the GNN);
* :class:`PreparedEvent` / :func:`prepare_event`: an event's hit features and truth;
* :mod:`cgnn_jax.inference.checkpoint`: versioned orbax checkpoints.
"""

from cgnn_jax.inference.checkpoint import CheckpointError
from cgnn_jax.inference.events import PreparedEvent, evaluation_events, prepare_event
from cgnn_jax.inference.pipeline import PRETRAINED_DIR, Pipeline
from cgnn_jax.inference.stage1 import Stage1
from cgnn_jax.inference.stage2 import Stage2

__all__ = [
    "PRETRAINED_DIR",
    "CheckpointError",
    "Pipeline",
    "PreparedEvent",
    "Stage1",
    "Stage2",
    "evaluation_events",
    "prepare_event",
]
