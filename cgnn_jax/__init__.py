"""cgnn_jax: learned hierarchical clustering of large point clouds with graph neural networks.

``Pipeline`` is the TrackML clustering GNN (restore, reconstruct, inspect every stage);
``ClusteringGNN`` the scikit-learn-style estimator for any labelled point clouds.
"""

from cgnn_jax.estimator import ClusteringGNN
from cgnn_jax.pipeline import Pipeline

__all__ = ["ClusteringGNN", "Pipeline"]
