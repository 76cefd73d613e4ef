"""Stage 3: learned divisive hierarchical clustering (unrolled recursion, losses, stop targets)."""

from cgnn_jax.cluster.losses import (
    binary_entropy,
    cluster_scores,
    pair_group_ids,
    split_loss,
    stop_labels,
)
from cgnn_jax.cluster.recursion import tree_to_table, unrolled_clustering

__all__ = [
    "binary_entropy",
    "cluster_scores",
    "pair_group_ids",
    "split_loss",
    "stop_labels",
    "tree_to_table",
    "unrolled_clustering",
]
