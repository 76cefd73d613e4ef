"""Training: losses, checkpoints, and the per-stage training loops."""

from __future__ import annotations

from pathlib import Path

import ml_collections

STAGES = ("stage1", "stage2", "stage3", "e2e")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, log=print) -> dict:
    """Train every stage named in ``config.stages``; returns the trained objects by stage.

    Stages: ``stage1`` (embedding, graph, edge filter), ``stage2`` (GNN), ``stage3`` (Split/Stop
    on the frozen GNN) and ``e2e`` (all of them jointly); the last two produce a
    :class:`cgnn_jax.pipeline.Pipeline` in ``<workdir>/pipeline/checkpoints`` (``out["pipeline"]``),
    and resume from their last finished epoch when re-run.

    With ``config.stage1_checkpoint`` set, stage 1 is restored from it instead of trained. A stage
    whose checkpoint is already complete in ``workdir`` (``checkpoints/`` for stage 1,
    ``stage2/checkpoints/`` for stage 2) is restored, not retrained: re-running a finished command
    is cheap and never overwrites a trained model; remove the folder to retrain.
    """
    from cgnn_jax.train.checkpoint import latest_step
    from cgnn_jax.train.stage1 import Stage1, train_stage1
    from cgnn_jax.train.stage2 import Stage2, train_stage2

    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"config.stages has unknown stages {unknown}; valid: {', '.join(STAGES)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    if "stage1" in config.stages and not config.get("stage1_checkpoint"):
        if latest_step(workdir / "checkpoints") is not None:
            log(
                f"stage 1 already trained in {workdir / 'checkpoints'}: restoring it "
                "(remove that folder to retrain)"
            )
            out["stage1"] = Stage1.restore(workdir)
        else:
            out["stage1"] = train_stage1(config, workdir, log=log)
    if "stage2" in config.stages or {"stage3", "e2e"} & set(config.stages):
        if latest_step(workdir / "stage2" / "checkpoints") is not None:
            log(
                f"stage 2 already trained in {workdir / 'stage2'}: restoring it "
                "(remove that folder to retrain)"
            )
            out["stage2"] = Stage2.restore(workdir)
        else:
            out["stage2"] = train_stage2(config, workdir, stage1=out.get("stage1"))
    phases = tuple(p for p in ("stage3", "e2e") if p in config.stages)
    if phases:
        from cgnn_jax.train.stage3 import train_stage3

        out["pipeline"] = train_stage3(config, workdir, out["stage2"], phases, log=log)
    return out
