"""cgnn_jax: learned hierarchical clustering of large point clouds with graph neural networks.

``Pipeline`` is the TrackML clustering GNN (restore, reconstruct, inspect every stage);
``ClusteringGNN`` the scikit-learn-style estimator for any labelled point clouds.

Both are imported on first use (PEP 562), so that ``import cgnn_jax.sim`` or ``cgnn_jax.io``
does not pay for JAX, flax and scikit-learn. ``cgnn_jax.Pipeline`` is
:class:`cgnn_jax.inference.Pipeline`, ``cgnn_jax.ClusteringGNN`` is
:class:`cgnn_jax.train.estimator.ClusteringGNN`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.train.estimator import ClusteringGNN

__all__ = ["ClusteringGNN", "Pipeline"]


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from cgnn_jax.inference import Pipeline

        return Pipeline
    if name == "ClusteringGNN":
        from cgnn_jax.train.estimator import ClusteringGNN

        return ClusteringGNN
    raise AttributeError(f"module 'cgnn_jax' has no attribute {name!r}")
