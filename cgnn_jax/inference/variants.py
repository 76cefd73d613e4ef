"""A pipeline's variants: its dense variant, other GNN parameters, other stage-3 settings.

A pipeline may carry a **dense variant** (``Pipeline.dense``): stages 2-3 trained for events of
another density (e.g. full mu = 200 events, ten times the hits of a 10 %-track event) on the
same stage 1. :func:`for_hits` picks it for events of at least ``dense_min_hits`` hits.

The functions here take and return :class:`cgnn_jax.inference.Pipeline` objects (which offer
them as methods); they never change the pipeline they are given.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from cgnn_jax.utils.trees import same_leaves, shape_mismatch

if TYPE_CHECKING:  # pragma: no cover
    from cgnn_jax.inference.pipeline import Pipeline
    from cgnn_jax.inference.stage1 import Stage1

STAGE1_GROUPS = ("embedding", "filter")  # shared by a pipeline and its dense variant
# shared too when stage 1 has them (the first pass, the context filter)
STAGE1_OPTIONAL_GROUPS = ("prefilter", "context")
VARIANT_GROUPS = ("input_embedding", "gnn", "split", "stop")  # a dense variant's own
STAGE1_LEARNED = (
    "filter_threshold",
    "zone_map",
    "module_map",
    "prefilter_threshold",
    "context_prefilter_threshold",
    "context_threshold",
    "context_prune_thresholds",
)  # what stage 1's training chose (shared too)


def stage1_groups(params: dict) -> dict:
    """A pipeline's stage-1 parameter groups: :data:`STAGE1_GROUPS` and those of
    :data:`STAGE1_OPTIONAL_GROUPS` it has."""
    return {k: params[k] for k in (*STAGE1_GROUPS, *STAGE1_OPTIONAL_GROUPS) if k in params}


def with_dense(pipe: Pipeline, dense: Pipeline | None, min_hits: int = 0) -> Pipeline:
    """``pipe`` with ``dense`` as its variant for events of ``>= min_hits`` hits (None: without
    one). ``ValueError`` unless ``dense`` has ``pipe``'s stage-1 parameters (``embedding``,
    ``filter``); the variant then takes ``pipe``'s stage-1 config and what its stage-1 training
    chose (:data:`STAGE1_LEARNED`), keeping its own stages 2-3."""
    if dense is None:
        return dataclasses.replace(pipe, dense=None, dense_min_hits=0)
    if dense.dense is not None:
        raise ValueError("a dense variant cannot carry a variant of its own")
    if int(min_hits) < 1:
        raise ValueError(f"dense_min_hits must be >= 1, got {min_hits}")
    mine = {k: pipe.params[k] for k in STAGE1_GROUPS}
    if not same_leaves(mine, {k: dense.params[k] for k in STAGE1_GROUPS}):
        raise ValueError("the dense variant has other stage-1 parameters (embedding, filter)")
    # one stage 1: its config and what its training chose (filter cut, zone map) are the
    # pipeline's; the variant keeps its own stages 2-3 and Stop's cut
    meta = dict(dense.meta)
    meta["learned"] = {
        **{k: v for k, v in dense.learned.items() if k not in STAGE1_LEARNED},
        **{k: v for k, v in pipe.learned.items() if k in STAGE1_LEARNED},
    }
    shared = stage1_groups(pipe.params)
    dense = dataclasses.replace(
        dense,
        stage1_config=pipe.stage1_config,
        params={**dense.params, **shared},
        meta=meta,
    )
    return dataclasses.replace(pipe, dense=dense, dense_min_hits=int(min_hits))


def with_stage1(pipe: Pipeline, stage1: Stage1) -> Pipeline:
    """``pipe`` and its dense variant on another stage 1 (e.g. one with a context filter): its
    config, its parameter groups (:data:`STAGE1_GROUPS`, and those of
    :data:`STAGE1_OPTIONAL_GROUPS` it has, the others dropped) and what its training chose
    (:data:`STAGE1_LEARNED`); stages 2-3 and their settings unchanged."""

    def swap(p: Pipeline) -> Pipeline:
        learned = {k: v for k, v in p.learned.items() if k not in STAGE1_LEARNED}
        learned.update({k: v for k, v in stage1.learned.items() if k in STAGE1_LEARNED})
        params = {k: v for k, v in p.params.items() if k not in STAGE1_OPTIONAL_GROUPS}
        params.update(embedding=stage1.emb_params, filter=stage1.filter_params)
        if stage1.prefilter_params is not None:
            params["prefilter"] = stage1.prefilter_params
        if stage1.context_params:
            params["context"] = stage1.context_params
        meta = {**p.meta, "learned": learned}
        return dataclasses.replace(p, stage1_config=stage1.config, params=params, meta=meta)

    out = swap(pipe)
    return out if pipe.dense is None else dataclasses.replace(out, dense=swap(pipe.dense))


def with_cluster_config(pipe: Pipeline, **values: Any) -> Pipeline:
    """``pipe`` (not its dense variant) with ``config.cluster.<key> = value`` for every keyword:
    the inference settings of stage 3 (merge, Stop's configured cut, extension)."""
    config = pipe.config.copy_and_resolve_references()
    with config.unlocked():
        for k, v in values.items():
            config.cluster[k] = v
    return dataclasses.replace(pipe, config=config)


def with_gnn(
    pipe: Pipeline, gnn_params: Any, stage1_params: dict[str, Any] | None = None
) -> Pipeline:
    """``pipe`` with other GNN parameters (e.g. a :class:`~cgnn_jax.inference.Stage2`'s,
    fine-tuned from these), its Split/Stop and Stop's cut kept, without a dense variant.
    ``ValueError`` if they do not fit this GNN's structure and shapes, or if ``stage1_params``
    (``{"embedding", "filter"}`` the GNN was trained on) are not ``pipe``'s."""
    mismatch = shape_mismatch(pipe.params["gnn"], gnn_params)
    if mismatch is not None:
        raise ValueError(f"the GNN parameters do not fit this pipeline's GNN ({mismatch})")
    if stage1_params is not None:
        mine = {k: pipe.params[k] for k in STAGE1_GROUPS}
        its = {k: stage1_params[k] for k in STAGE1_GROUPS}
        if not same_leaves(mine, its):
            raise ValueError("the GNN was trained on another stage 1 (embedding, filter)")
    return dataclasses.replace(
        pipe, params={**pipe.params, "gnn": gnn_params}, dense=None, dense_min_hits=0
    )


def for_hits(pipe: Pipeline, n_hits: int) -> Pipeline:
    """The pipeline that reconstructs an event of ``n_hits`` hits: ``pipe.dense`` from
    ``pipe.dense_min_hits`` hits on, else ``pipe``."""
    if pipe.dense is not None and int(n_hits) >= pipe.dense_min_hits:
        return pipe.dense
    return pipe
