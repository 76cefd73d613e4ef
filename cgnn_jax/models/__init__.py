"""Flax modules: the stage-1 embedding and edge filter (later the GNN and Split/Stop)."""

from cgnn_jax.models.edge_filter import EdgeFilter
from cgnn_jax.models.embedding import HitEmbedding
from cgnn_jax.models.mlp import MLP

__all__ = ["MLP", "EdgeFilter", "HitEmbedding"]
