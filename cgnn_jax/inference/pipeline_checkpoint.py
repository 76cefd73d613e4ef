"""A pipeline's checkpoint: where it lies, how it is written and read back.

One orbax checkpoint (kind ``"pipeline"``, :mod:`cgnn_jax.inference.checkpoint`) holds every
parameter group (:data:`PARAM_GROUPS`), the config in its metadata and stage 1's config under
``"stage1_config"``. A dense variant is saved in the same checkpoint: its own parameters
(:data:`~cgnn_jax.inference.variants.VARIANT_GROUPS`) under ``params["dense"]``, its config, its
metadata and ``min_hits`` under the metadata's ``"dense"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import ml_collections

from cgnn_jax.inference.checkpoint import (
    CheckpointError,
    restore_checkpoint,
    save_checkpoint,
    verify_manifest,
)

if TYPE_CHECKING:  # pragma: no cover
    from cgnn_jax.inference.pipeline import Pipeline

PIPELINE_KIND = "pipeline"
PIPELINE_DIR = "pipeline"  # <workdir>/pipeline/checkpoints
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "default"
PARAM_GROUPS = ("embedding", "filter", "input_embedding", "gnn", "split", "stop")
DENSE_KEY = "dense"


def pipeline_checkpoint_dir(path: str | Path | None) -> Path:
    """The checkpoint folder of a checkpoint folder, a training workdir or ``None`` (the
    pretrained default); :class:`CheckpointError` if there is none."""
    path = Path(path) if path is not None else PRETRAINED_DIR
    for cand in (path / PIPELINE_DIR / "checkpoints", path / "checkpoints", path):
        if cand.is_dir():
            return cand
    hint = (
        " (the pretrained model is made by `make train-default`)" if path == PRETRAINED_DIR else ""
    )
    raise CheckpointError(f"{path}: no such checkpoint{hint}")


def verify_pipeline_checkpoint(path: str | Path | None) -> Path:
    """Check a pipeline checkpoint's files against its checksums before any work (without
    loading JAX); its checkpoint folder. Raises :class:`CheckpointError` (or its
    ``DamagedCheckpointError``) naming the checkpoint and the damaged file."""
    directory = pipeline_checkpoint_dir(path)
    steps = [int(d.name) for d in directory.iterdir() if d.name.isdigit() and d.is_dir()]
    if steps:  # none: the restore says what is wrong
        verify_manifest(directory / str(max(steps)))
    return directory


def save_pipeline(
    pipe: Pipeline, directory: str | Path, step: int = 0, extra: dict | None = None
) -> Path:
    """Save ``pipe`` as an orbax checkpoint (kind ``"pipeline"``) under ``directory`` (a
    ``checkpoints`` folder; :func:`restore_pipeline` also accepts its parents)."""
    from cgnn_jax.inference.variants import STAGE1_LEARNED, VARIANT_GROUPS

    own = ("format", "version", "kind", "config", "step")  # written by save_checkpoint
    meta = {k: v for k, v in {**pipe.meta, **(extra or {})}.items() if k not in own}
    meta["stage1_config"] = pipe.stage1_config.to_dict()
    params = {k: v for k, v in pipe.params.items() if k != DENSE_KEY}
    meta.pop(DENSE_KEY, None)
    if pipe.dense is not None:
        params[DENSE_KEY] = {k: pipe.dense.params[k] for k in VARIANT_GROUPS}
        dense_meta = {k: v for k, v in pipe.dense.meta.items() if k not in own}
        if "learned" in dense_meta:  # stage 1's (e.g. a module map) is stored once, shared
            dense_meta["learned"] = {
                k: v for k, v in dense_meta["learned"].items() if k not in STAGE1_LEARNED
            }
        meta[DENSE_KEY] = {
            "min_hits": int(pipe.dense_min_hits),
            "config": pipe.dense.config.to_dict(),
            "meta": dense_meta,
        }
    return save_checkpoint(
        Path(directory),
        step,
        params,
        kind=PIPELINE_KIND,
        config=pipe.config.to_dict(),
        extra=meta,
    )


def restore_pipeline(
    cls: type[Pipeline], path: str | Path | None = None, step: int | None = None
) -> Pipeline:
    """A ``cls`` (:class:`~cgnn_jax.inference.Pipeline`) from a checkpoint folder, a training
    workdir or ``None`` (the pretrained default), with its dense variant if it has one."""
    from cgnn_jax.inference.variants import VARIANT_GROUPS, stage1_groups

    path = pipeline_checkpoint_dir(path)
    state, meta = restore_checkpoint(path, step, kind=PIPELINE_KIND)
    config = ml_collections.ConfigDict(meta.pop("config"))
    s1c = ml_collections.ConfigDict(meta.pop("stage1_config"))
    missing = set(PARAM_GROUPS) - set(state)
    if missing:
        raise CheckpointError(f"{path}: pipeline checkpoint lacks parameters {sorted(missing)}")
    state = dict(state)
    dense_params, dense_meta = state.pop(DENSE_KEY, None), meta.pop(DENSE_KEY, None)
    pipe = cls(config, s1c, state, meta)
    if (dense_params is None) != (dense_meta is None):
        raise CheckpointError(f"{path}: its dense variant lacks its parameters or its config")
    if dense_params is None:
        return pipe
    missing = set(VARIANT_GROUPS) - set(dense_params)
    if missing:
        raise CheckpointError(f"{path}: its dense variant lacks parameters {sorted(missing)}")
    dense = cls(
        ml_collections.ConfigDict(dense_meta["config"]),
        s1c,
        {**stage1_groups(state), **dict(dense_params)},
        dict(dense_meta.get("meta", {})),
    )
    return pipe.with_dense(dense, int(dense_meta["min_hits"]))
