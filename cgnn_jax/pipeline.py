"""The whole clustering GNN as one object, and reconstruction of whole datasets with it.

    from cgnn_jax import Pipeline
    pipe = Pipeline.restore()                  # the pretrained default model shipped in the package
    track_id = pipe.reconstruct(event)         # [n_hits] int64, one track id per hit

The public home of the inference objects: :class:`Pipeline` lives in
:mod:`cgnn_jax.inference.pipeline`, the dataset-level reconstruction (:class:`PipelineMethod`,
:func:`reconstruct_dataset`) in :mod:`cgnn_jax.inference.dataset`; both are re-exported here.
"""

from __future__ import annotations

from cgnn_jax.cluster.tracks import dense_track_ids
from cgnn_jax.inference.dataset import PipelineMethod, reconstruct_dataset
from cgnn_jax.inference.pipeline import (
    PIPELINE_DIR,
    PIPELINE_KIND,
    PRETRAINED_DIR,
    Pipeline,
    cluster_features,
    gnn_forward,
)
from cgnn_jax.models.factory import create_split_stop

__all__ = [
    "PIPELINE_DIR",
    "PIPELINE_KIND",
    "PRETRAINED_DIR",
    "Pipeline",
    "PipelineMethod",
    "cluster_features",
    "create_split_stop",
    "dense_track_ids",
    "gnn_forward",
    "reconstruct_dataset",
]
