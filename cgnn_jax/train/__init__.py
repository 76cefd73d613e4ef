"""Training: one loop (:mod:`cgnn_jax.train.loop`), and each stage as a loss plus a batch source.

Stages (``config.stages``): ``stage1`` (embedding, graph, edge filter), ``stage2`` (GNN),
``stage3`` (Split/Stop on the frozen GNN) and ``e2e`` (all of them jointly). Layout of a workdir:

    <workdir>/train/<run>/{checkpoints,metrics.csv}   resumable runs: embedding, embedding_hard,
                                                      filter, gnn, stage3, e2e
    <workdir>/stage1/checkpoints                      the trained stage 1 (Stage1)
    <workdir>/stage2/checkpoints                      the trained stage 2 (Stage2, with stage 1)
    <workdir>/pipeline/checkpoints                    the whole model (Pipeline)
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

STAGES = ("stage1", "stage2", "stage3", "e2e")


def _has_checkpoint(directory: Path) -> bool:
    from cgnn_jax.inference.checkpoint import latest_step

    return latest_step(directory) is not None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, log=print) -> dict:
    """Train every stage named in ``config.stages``; returns the trained objects by stage.

    The config is frozen for the run (nothing may change it; what training learns goes to the
    checkpoints' metadata). The training events are simulated once and shared by the stages.
    ``stage3`` and ``e2e`` produce a :class:`cgnn_jax.inference.Pipeline` in
    ``<workdir>/pipeline/checkpoints`` (``out["pipeline"]``).

    Every run resumes from its last checkpoint when re-run (``<workdir>/train/<run>``). A stage
    whose model is already saved (``<workdir>/stage1``, ``<workdir>/stage2``) is restored, not
    retrained: re-running a finished command is cheap and never overwrites a trained model;
    remove the folder to retrain. With ``config.stage1_checkpoint`` set, stage 1 is restored
    from it (a stage-1 workdir or a whole pipeline) instead of trained; when the config asks for
    a context filter (``filter.context_hidden``) and that stage 1 has none, its context filter
    is trained onto it here and the result saved in ``<workdir>/stage1``
    (:func:`cgnn_jax.train.stage1.add_context_filter`).
    """
    from cgnn_jax.inference.pipeline import restore_stage1
    from cgnn_jax.inference.stage1 import STAGE1_DIR, Stage1, stage1_context
    from cgnn_jax.inference.stage2 import STAGE2_DIR, Stage2
    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.loop import make_mesh
    from cgnn_jax.train.stage1 import add_context_filter, context_filter_enabled, train_stage1
    from cgnn_jax.train.stage2 import train_stage2

    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"config.stages has unknown stages {unknown}; valid: {', '.join(STAGES)}")
    config = ml_collections.FrozenConfigDict(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    events = TrainingEvents(config, log)
    mesh = make_mesh()
    out = {}
    stages = set(config.stages)
    s1_dir = workdir / STAGE1_DIR / "checkpoints"
    if config.stage1_checkpoint:
        log(f"stage 1 from {config.stage1_checkpoint}")
        out["stage1"] = restore_stage1(config.stage1_checkpoint)
        if context_filter_enabled(config) and stage1_context(out["stage1"]) is None:
            if _has_checkpoint(s1_dir):
                log(f"its context filter already trained in {s1_dir.parent}: restoring it")
                out["stage1"] = Stage1.restore(workdir)
            else:
                out["stage1"] = add_context_filter(
                    out["stage1"], config, workdir, log, events, mesh
                )
    else:
        if _has_checkpoint(s1_dir):
            log(f"stage 1 already trained in {s1_dir.parent}: restoring it (remove it to retrain)")
            out["stage1"] = Stage1.restore(workdir)
        else:
            out["stage1"] = train_stage1(config, workdir, log, events, mesh)
    if stages - {"stage1"}:
        s2_dir = workdir / STAGE2_DIR / "checkpoints"
        if _has_checkpoint(s2_dir):
            log(f"stage 2 already trained in {s2_dir.parent}: restoring it (remove it to retrain)")
            out["stage2"] = Stage2.restore(workdir)
        else:
            out["stage2"] = train_stage2(config, workdir, out["stage1"], log, mesh, events)
    phases = tuple(p for p in ("stage3", "e2e") if p in stages)
    if phases:
        from cgnn_jax.train.stage3 import train_stage3

        out["pipeline"] = train_stage3(config, workdir, out["stage2"], phases, log, mesh, events)
    return out
