"""Flax modules: stage-1 embedding and edge filter, the stage-2 GNN, the stage-3 Split/Stop."""

from cgnn_jax.models.edge_filter import EdgeFilter
from cgnn_jax.models.embedding import HitEmbedding
from cgnn_jax.models.gnn import EdgeWeightedConv, EdgeWeightedGNN
from cgnn_jax.models.mlp import MLP
from cgnn_jax.models.split_stop import ClusterStatsMLP, Split, Stop

__all__ = [
    "MLP",
    "ClusterStatsMLP",
    "EdgeFilter",
    "EdgeWeightedConv",
    "EdgeWeightedGNN",
    "HitEmbedding",
    "Split",
    "Stop",
]
