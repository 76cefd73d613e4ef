"""One place that builds every flax module from a config: :func:`create_model`.

Every hyper-parameter comes from the config (``configs/``); nothing here has a default.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from cgnn_jax.models.context_filter import ContextFilter
from cgnn_jax.models.edge_filter import EdgeFilter
from cgnn_jax.models.embedding import HitEmbedding
from cgnn_jax.models.gnn import EdgeWeightedGNN, InteractionGNN
from cgnn_jax.models.prefilter import PairPrefilter
from cgnn_jax.models.split_stop import Split, Stop

MODEL_NAMES = ("embedding", "filter", "prefilter", "context", "gnn", "split", "stop")


def create_model(config: ml_collections.ConfigDict, name: str) -> Any:
    """The flax module ``name`` of a full config.

    Args:
      config: a full config (``configs/*.py``): ``embedding`` (stage-1 embedding MLP), ``filter``
        (edge filter), ``gnn`` (stage 2), ``cluster`` (Split / Stop) blocks, as the model needs.
      name: one of :data:`MODEL_NAMES`.
    """
    if name == "embedding":
        c = config.embedding
        return HitEmbedding(hidden=tuple(c.hidden), dim=int(c.dim))
    if name == "filter":
        return EdgeFilter(hidden=tuple(config.filter.hidden))
    if name == "context":
        hidden = tuple(config.filter.get("context_hidden", ()) or ())
        if not hidden:
            raise ValueError("config.filter.context_hidden is empty: stage 1 has no context filter")
        return ContextFilter(hidden=hidden)
    if name == "prefilter":
        return PairPrefilter(hidden=int(config.filter.get("prefilter_hidden", 0) or 16))
    if name == "gnn":
        c = config.gnn
        arch = c.get("arch", "edge_weighted")
        if arch == "interaction":
            return InteractionGNN(
                num_layers=int(c.num_layers),
                hidden=int(c.hidden),
                out_dim=int(c.out_dim),
                distance_dims=int(c.get("distance_dims", 0)),
                output_hidden=int(c.get("output_hidden", 0)),
                detach_output=bool(c.get("detach_output", False)),
            )
        if arch != "edge_weighted":
            raise ValueError(f"config.gnn.arch={arch!r}; valid: 'edge_weighted', 'interaction'")
        return EdgeWeightedGNN(
            num_layers=int(c.num_layers),
            hidden=int(c.hidden),
            kernel_hidden=int(c.kernel_hidden),
            out_dim=int(c.out_dim),
            degree_norm=bool(c.degree_norm),
            skip_input=bool(c.skip_input),
            residual_dim=int(c.out_dim) if c.residual else 0,
        )
    if name == "split":
        c = config.cluster
        return Split(
            tuple(c.split_hidden),
            float(c.split_init_scale),
            int(c.prior_dims),
            float(c.prior_gain),
            tuple(int(i) for i in c.prior_columns),
        )
    if name == "stop":
        c = config.cluster
        return Stop(tuple(c.stop_hidden), str(c.stop_aggregate), bool(c.get("stop_size", False)))
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")


def create_embedding(config: ml_collections.ConfigDict) -> HitEmbedding:
    """``create_model(config, "embedding")``."""
    return create_model(config, "embedding")


def create_filter(config: ml_collections.ConfigDict) -> EdgeFilter:
    """``create_model(config, "filter")``."""
    return create_model(config, "filter")


def create_gnn(gnn_config: ml_collections.ConfigDict) -> EdgeWeightedGNN:
    """The GNN of a ``config.gnn`` block alone."""
    return create_model(ml_collections.ConfigDict({"gnn": gnn_config}), "gnn")


def create_split_stop(cluster_config: ml_collections.ConfigDict) -> tuple[Split, Stop]:
    """Split and Stop of a ``config.cluster`` block alone."""
    c = ml_collections.ConfigDict({"cluster": cluster_config})
    return create_model(c, "split"), create_model(c, "stop")
