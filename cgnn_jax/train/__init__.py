"""Training: losses, checkpoints, and the per-stage training loops."""

from __future__ import annotations

from pathlib import Path

import ml_collections

STAGES = ("stage1", "stage2")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Train every stage named in ``config.stages``; returns the trained objects by stage.

    With ``config.stage1_checkpoint`` set, stage 1 is restored from it instead of trained.
    """
    from cgnn_jax.train.stage1 import train_stage1
    from cgnn_jax.train.stage2 import train_stage2

    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"config.stages has unknown stages {unknown}; valid: {', '.join(STAGES)}")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    out = {}
    if "stage1" in config.stages and not config.get("stage1_checkpoint"):
        out["stage1"] = train_stage1(config, workdir)
    if "stage2" in config.stages:
        out["stage2"] = train_stage2(config, workdir, stage1=out.get("stage1"))
    return out
