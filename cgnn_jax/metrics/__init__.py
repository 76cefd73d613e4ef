"""TrackML metrics: the challenge score and weights, efficiency/fake rate, edge quality."""

from cgnn_jax.metrics.edges import consecutive_pairs, consecutive_recall, edge_purity_recall
from cgnn_jax.metrics.efficiency import (
    DEFAULT_BINS_ETA,
    DEFAULT_BINS_PT,
    TrackEfficiency,
    binned_fraction,
    track_efficiency,
)
from cgnn_jax.metrics.evaluate import evaluate_submission
from cgnn_jax.metrics.score import analyze_tracks, match_tracks, score_event
from cgnn_jax.metrics.weights import (
    ORDER_MATRIX,
    ORDER_PROPOSAL,
    compute_weights,
    hit_order,
    order_weight_matrix,
    weight_pt,
)

__all__ = [
    "DEFAULT_BINS_ETA",
    "DEFAULT_BINS_PT",
    "ORDER_MATRIX",
    "ORDER_PROPOSAL",
    "TrackEfficiency",
    "analyze_tracks",
    "binned_fraction",
    "compute_weights",
    "consecutive_pairs",
    "consecutive_recall",
    "edge_purity_recall",
    "evaluate_submission",
    "hit_order",
    "match_tracks",
    "order_weight_matrix",
    "score_event",
    "track_efficiency",
    "weight_pt",
]
