"""Training: losses, checkpoints, and the per-stage training loops."""

from __future__ import annotations

from pathlib import Path

import ml_collections

STAGES = ("stage1",)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Train every stage named in ``config.stages``; returns the trained objects by stage."""
    from cgnn_jax.train.stage1 import train_stage1

    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"config.stages has unknown stages {unknown}; valid: {', '.join(STAGES)}")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    out = {}
    if "stage1" in config.stages:
        out["stage1"] = train_stage1(config, workdir)
    return out
