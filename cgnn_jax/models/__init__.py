"""Flax modules: stage-1 embedding and edge filter, the stage-2 GNN, the stage-3 Split/Stop;
:func:`create_model` builds any of them from a config."""

from cgnn_jax.models.context_filter import ContextFilter
from cgnn_jax.models.edge_filter import EdgeFilter
from cgnn_jax.models.embedding import HitEmbedding
from cgnn_jax.models.factory import MODEL_NAMES, create_model
from cgnn_jax.models.gnn import EdgeWeightedConv, EdgeWeightedGNN, InteractionGNN
from cgnn_jax.models.mlp import MLP
from cgnn_jax.models.split_stop import ClusterStatsMLP, Split, Stop

__all__ = [
    "MLP",
    "MODEL_NAMES",
    "ClusterStatsMLP",
    "ContextFilter",
    "EdgeFilter",
    "EdgeWeightedConv",
    "EdgeWeightedGNN",
    "HitEmbedding",
    "InteractionGNN",
    "Split",
    "Stop",
    "create_model",
]
