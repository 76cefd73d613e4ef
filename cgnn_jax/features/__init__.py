"""Input features for the GNN: per hit (:mod:`.hits`) and per directed hit pair (:mod:`.pairs`)."""

from cgnn_jax.features.hits import (
    FEATURE_NAMES,
    VOLUMES,
    HitFeatures,
    hit_features,
    n_features,
)
from cgnn_jax.features.pairs import (
    PAIR_FEATURE_NAMES,
    n_pair_features,
    pair_features,
    signed_curvature,
    wrap_angle,
)

__all__ = [
    "FEATURE_NAMES",
    "PAIR_FEATURE_NAMES",
    "VOLUMES",
    "HitFeatures",
    "hit_features",
    "n_features",
    "n_pair_features",
    "pair_features",
    "signed_curvature",
    "wrap_angle",
]
