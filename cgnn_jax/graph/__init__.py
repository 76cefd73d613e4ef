"""Graph construction: neighbour search in the embedding space and the learned edge filter."""

from cgnn_jax.graph.neighbors import MODES, neighbor_graph

__all__ = ["MODES", "neighbor_graph"]
