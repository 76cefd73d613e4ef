"""The training loop (:mod:`cgnn_jax.train.loop`) and ``train_and_evaluate`` end to end.

* ``fit`` on a toy regression: interrupted after any step and re-run, it ends where the
  uninterrupted run ends (state, learning-rate cuts, best parameters).
* ``launch/train.py --config=configs/test.py``: every stage on toy events; then the same config
  again with every run (embedding, embedding_hard, filter, gnn, stage3, e2e) interrupted after a
  few steps and the command re-run until it completes: each run resumes from its last
  checkpoint, its step counter continues, and every trained model equals the uninterrupted one.
  The pipeline is then restored and reconstructs an event. Both runs share a JAX compilation
  cache in a temporary folder, so the resumed runs do not compile again.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cgnn_jax.train.loop import TrainState, fit, make_optimizer, make_train_step
from tests.conftest import INTERRUPT_AFTER

RUNS = {  # run folder under <workdir>/train -> its progress label
    "embedding": "embedding",
    "embedding_hard": "embedding_hard",
    "filter": "edge filter",
    "gnn": "gnn",
    "stage3": "stage3",
    "e2e": "e2e",
}


# --------------------------------------------------------------------------- the loop alone


def _toy():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    tx = make_optimizer(3e-2, 20, clip_norm=1.0, weight_decay=1e-5)

    def loss(p, batch, rng):
        noise = 0.01 * jax.random.normal(rng, batch["y"].shape)  # uses the step's key
        err = batch["x"] @ p["w"] + p["b"] - batch["y"] - noise
        return jnp.mean(err**2), {"abs_b": jnp.abs(p["b"]).sum()}

    def batch_at(step):
        r = np.random.default_rng(step)
        x = r.normal(size=(8, 3)).astype(np.float32)
        return {"x": x, "y": x[:, :2] * 2.0 + 0.5}

    return TrainState.new(params, tx), make_train_step(loss, tx), batch_at


class Interrupted(Exception):
    pass


def test_fit_resumes_to_the_uninterrupted_result(tmp_path):
    state, step, batch_at = _toy()

    def evaluate(st):  # deliberately plateaus: the learning rate gets cut
        return {"score": min(float(-jnp.abs(st.params["b"] - 0.5).sum()), -0.9)}

    kw = dict(
        num_steps=12,
        rng=jax.random.PRNGKey(0),
        config={"toy": 1},
        steps_per_epoch=4,
        evaluate=evaluate,
        patience=1,
        log_every=5,
        checkpoint_every=3,
        log=lambda *_: None,
        progress=False,
    )
    whole = fit(state, step, batch_at, workdir=tmp_path / "whole", **kw)
    assert float(whole.lr_scale) < 1.0  # the plateau cut happened
    for stop_after in (5, 8):
        _check_resume(tmp_path, state, step, batch_at, whole, stop_after, kw)


def _check_resume(tmp_path, state, step, batch_at, whole, stop_after, kw):
    def dying(s):
        if s >= stop_after:
            raise Interrupted
        return batch_at(s)

    cut = tmp_path / f"cut{stop_after}"
    with pytest.raises(Interrupted):
        fit(state, step, dying, workdir=cut, **kw)
    logs: list[str] = []
    resumed = fit(state, step, batch_at, workdir=cut, **{**kw, "log": logs.append})
    # checkpoints: every 3 steps and every epoch (4 steps)
    last_ckpt = max(stop_after - stop_after % 3, stop_after - stop_after % 4)
    assert f"train: resuming at step {last_ckpt} of 12" in logs[0]
    assert int(resumed.step) == int(whole.step) == 12
    for name in ("params", "best_params", "opt_state"):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            getattr(resumed, name),
            getattr(whole, name),
        )
    for name in ("lr_scale", "best_metric", "bad_epochs"):
        assert float(getattr(resumed, name)) == float(getattr(whole, name))
    log = pd.read_csv(cut / "metrics.csv")
    steps = log["step"].to_numpy()
    whole_log = pd.read_csv(tmp_path / "whole" / "metrics.csv")
    assert (np.diff(steps) >= 0).all() and len(log) == len(whole_log)
    np.testing.assert_allclose(log["val_score"].dropna(), whole_log["val_score"].dropna())
    # a finished run is restored, not redone
    again = fit(state, step, dying, workdir=tmp_path / "whole", **kw)
    assert int(again.step) == 12


# --------------------------------------------------------------------------- every stage


def _leaves_close(a, b, what):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb), what
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=what)


def test_every_run_resumes_from_its_checkpoint(two_runs):  # the fixture: tests/conftest.py
    from cgnn_jax.inference.checkpoint import read_meta

    whole, resumed, logs = two_runs
    for run, desc in RUNS.items():
        assert f"interrupted: {desc}" in logs, (run, logs)
        msg = [m for m in logs if m.startswith(f"{desc}: resuming at step ")]
        assert len(msg) == 1, (run, logs)
        k, n = map(int, re.findall(r"step (\d+) of (\d+)", msg[0])[0])
        assert 0 < k <= min(INTERRUPT_AFTER, n - 1) < n, msg  # the last checkpoint before the cut
        step, _ = read_meta(resumed / "train" / run / "checkpoints")
        assert step == n == read_meta(whole / "train" / run / "checkpoints")[0]  # counter went on
        steps = pd.read_csv(resumed / "train" / run / "metrics.csv")["step"].to_numpy()
        assert (np.diff(steps) >= 0).all() and steps[-1] == n  # no step logged twice


def test_resumed_models_equal_the_uninterrupted_ones(two_runs):
    from cgnn_jax.inference import Pipeline, Stage1, Stage2

    whole, resumed, _ = two_runs
    a1, b1 = Stage1.restore(whole), Stage1.restore(resumed)
    _leaves_close((a1.emb_params, a1.filter_params), (b1.emb_params, b1.filter_params), "stage1")
    assert a1.learned["filter_threshold"] == pytest.approx(b1.learned["filter_threshold"], abs=1e-5)
    _leaves_close(Stage2.restore(whole).params, Stage2.restore(resumed).params, "stage2")
    pa, pb = Pipeline.restore(whole), Pipeline.restore(resumed)
    for group in pa.params:
        _leaves_close(pa.params[group], pb.params[group], group)


def test_trained_pipeline_restores_and_reconstructs(two_runs):
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.sim import simulate_event
    from configs.test import get_config

    whole, resumed, _ = two_runs
    pipe = Pipeline.restore(resumed)
    c = get_config()
    # the config is stored as given; what training chose is in the metadata
    assert pipe.stage1_config.filter.threshold == c.filter.threshold
    assert 0.0 <= pipe.learned["filter_threshold"] <= 1.0
    assert pipe.config.cluster.train_depth == c.cluster.train_depth
    ev = simulate_event(31, 10.0, event_id=31, track_fraction=0.3)
    tid, tree = pipe.reconstruct(ev, return_tree=True)
    assert tid.shape == (len(ev.hits),) and tid.dtype == np.int64 and tid.min() >= 1
    assert len(np.unique(np.c_[tid, tree.leaves], axis=0)) == len(np.unique(tid))
    np.testing.assert_array_equal(tid, Pipeline.restore(whole).reconstruct(ev))


def test_stop_threshold_is_calibrated_on_the_validation_events(two_runs):
    """configs/test.py calibrates Stop's cut after stage 3 (``cluster.calibrate_stop``): the kept
    value is the grid's best on the validation events, and the pipeline clusters with it."""
    import dataclasses

    from cgnn_jax.inference import Pipeline
    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.stage3 import STOP_GRID, calibrate_stop_threshold

    whole, _, _ = two_runs
    pipe = Pipeline.restore(whole)
    kept = pipe.learned["stop_threshold"]
    assert kept in STOP_GRID and pipe.stage3.stop_threshold == kept
    rest = {k: v for k, v in pipe.learned.items() if k != "stop_threshold"}  # zone map, filter cut
    plain = dataclasses.replace(pipe, meta={**pipe.meta, "learned": rest})
    assert plain.stage3.stop_threshold == pipe.config.cluster.stop_threshold
    lines = []
    again = calibrate_stop_threshold(
        plain, TrainingEvents(pipe.config, lambda *a: None).validation, log=lines.append
    )
    assert again.stage3.stop_threshold == kept  # deterministic: the same events, the same choice
    scores = [float(x) for x in re.findall(r"-> ([0-9.]+)", lines[0])]
    assert len(scores) == len(STOP_GRID)
    assert scores[STOP_GRID.index(kept)] == max(scores)


def test_iterative_reclustering_keeps_the_atoms_together(two_runs):
    """``cluster.iterative_rounds`` re-clusters low-confidence clusters with the same atoms (the
    components of confident GNN edges) as the first pass: no atom is ever split."""
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.sim import simulate_event

    whole, _, _ = two_runs
    pipe = Pipeline.restore(whole)
    with pipe.config.unlocked():
        pipe.config.cluster.component_cut = 0.5  # many multi-hit atoms, even in a toy model
        pipe.config.cluster.iterative_rounds = 2
        pipe.config.cluster.iterative_cutoff = 1.01  # every cluster re-clustered
    ev = simulate_event(32, 10.0, event_id=32, track_fraction=0.3)
    out = pipe.stage_outputs(ev)
    groups = out["groups"]
    assert groups is not None and len(np.unique(groups)) < len(groups)
    tid = pipe.reconstruct(ev)
    per_atom = pd.DataFrame({"g": groups, "t": tid}).groupby("g")["t"].nunique()
    assert (per_atom == 1).all()


def test_tree_on_atom_rows_keeps_the_atoms_whole_and_builds_its_tree(two_runs):
    """``cluster.tree_rows = "atoms"`` (one weighted row per atom): every atom in one track, the
    tree's leaves are the tracks, the tree is a point tree's (the root holds every hit), iterative
    re-clustering runs on it, and a bad value is named."""
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.sim import simulate_event

    whole, _, _ = two_runs
    toy = Pipeline.restore(whole)
    rows = toy.with_cluster_config(tree_rows="atoms", component_cut=0.5, merge="components")
    ev = simulate_event(33, 10.0, event_id=33, track_fraction=0.3)
    out = rows.stage_outputs(ev)
    groups, tid = out["groups"], out["track_id"]
    assert groups is not None and len(np.unique(groups)) < len(groups)
    assert (pd.Series(tid).groupby(groups).nunique() == 1).all()
    assert len(np.unique(tid)) > 1
    got, tree = rows.reconstruct(ev, return_tree=True)
    np.testing.assert_array_equal(got, tid)  # no iterative rounds, no extension in the toy
    assert len(np.unique(np.c_[tid, tree.leaves], axis=0)) == len(np.unique(tid))
    root = tree.nodes[tree.nodes["level"] == 0]
    assert len(root) == 1 and int(root["size"].iloc[0]) == len(ev.hits)
    # at Stop's cut 1, the tree without Stop's votes (what reconstruct runs) is the same tree
    h = out["h"]
    full = rows.stage3.cluster(h, groups=groups, stop_threshold=1.0)
    bare = rows.stage3.cluster(h, groups=groups, stop_threshold=1.0, votes=False)
    for k in ("cluster", "segment", "active", "size"):
        np.testing.assert_array_equal(bare[k], full[k], err_msg=k)
    assert np.isnan(bare["stop"]).all() and not np.isnan(full["stop"]).any()
    kept = rows.stage3.cluster(
        h, groups=groups, stop_threshold=0.9, votes=False
    )  # votes decide: kept
    assert not np.isnan(kept["stop"]).all()
    with rows.config.unlocked():
        rows.config.cluster.iterative_rounds = 2
        rows.config.cluster.iterative_cutoff = 1.01  # every cluster re-clustered
    again = rows.reconstruct(ev)
    assert (pd.Series(again).groupby(groups).nunique() == 1).all()
    with pytest.raises(ValueError, match="tree_rows='hits'"):
        toy.with_cluster_config(tree_rows="hits").stage_outputs(ev)


def test_layer_merge_settings_are_calibrated_as_reconstruct_scores_them(two_runs):
    """``calibrate_merge`` keeps its grid's best setting (merge cut and shared layers, and the
    extension's free size), scored on the tracks as ``Pipeline.reconstruct`` delivers them (tree,
    then the track extension); a model without the layer merge gets a clear error."""
    import dataclasses

    from cgnn_jax.inference import Pipeline
    from cgnn_jax.metrics.ceilings import score_labels
    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.stage3 import calibrate_merge

    whole, _, _ = two_runs
    toy = Pipeline.restore(whole)
    events = TrainingEvents(toy.config, lambda *a: None).validation
    config = toy.config.copy_and_resolve_references()
    with config.unlocked():
        config.cluster.merge = "components"
    with pytest.raises(ValueError, match="not the layer merge"):
        calibrate_merge(dataclasses.replace(toy, config=config), events)
    assert toy.config.cluster.merge == "layers"  # configs/test.py, as the default recipe
    config = toy.config.copy_and_resolve_references()
    with config.unlocked():
        config.cluster.extend_iterations = 2
    pipe = dataclasses.replace(toy, config=config)
    grid, free_grid = ((0.2, 1), (0.6, 2)), (1, 3)
    lines = []
    out = calibrate_merge(pipe, events, grid=grid, free_grid=free_grid, log=lines.append)
    scores = [float(x) for x in re.findall(r"-> ([0-9.]+)", lines[0])]
    assert len(scores) == len(grid) * len(free_grid)
    cc = out.config.cluster
    kept = (cc.merge_threshold, cc.merge_max_shared)
    assert kept in grid and cc.extend_free_max in free_grid
    assert cc.extend_min_size == cc.extend_free_max + 1
    at = grid.index(kept) * len(free_grid) + free_grid.index(cc.extend_free_max)
    assert scores[at] == max(scores)
    again = []
    for ev in events:
        truth = ev.truth.set_index("hit_id").reindex(ev.hits["hit_id"].to_numpy())
        again.append(
            score_labels(truth["particle_id"].to_numpy(), out.reconstruct(ev), truth["weight"])
        )
    assert abs(float(np.mean(again)) - max(scores)) < 1e-4  # printed to 4 decimals
