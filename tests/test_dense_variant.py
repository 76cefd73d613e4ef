"""A pipeline's dense variant (stages 2-3 for dense events on the same stage 1): picked by the
event's hit count, saved and restored with the model, attached by ``launch/export_model.py``, and
refused when it has another stage 1. Also ``config.stage1_checkpoint`` given a whole pipeline."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True)
    )


@pytest.fixture(scope="module")
def toy(two_runs):
    """``(pipe, dense, small_event, big_event)``: the test run's toy pipeline, a variant of it
    with other GNN parameters and Stop's cut, and events below and above the variant's cut."""
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.sim import simulate_event

    pipe = Pipeline.restore(two_runs[0])
    gnn = jax.tree_util.tree_map(
        lambda x: np.asarray(x) * 0.5 + 0.01 * np.sign(np.asarray(x)), pipe.params["gnn"]
    )
    meta = {**pipe.meta, "learned": {**pipe.learned, "stop_threshold": 0.3}}
    dense = dataclasses.replace(pipe, params={**pipe.params, "gnn": gnn}, meta=meta)
    small = simulate_event(5, 5.0, event_id=5)
    big = simulate_event(6, 20.0, event_id=6)
    assert len(small.hits) < len(big.hits)
    return pipe, dense, small, big


def test_the_dense_variant_runs_on_events_from_its_hit_count(toy):
    pipe, dense, small, big = toy
    both = pipe.with_dense(dense, min_hits=len(big.hits))
    assert both.for_hits(len(small.hits)) is both
    assert both.for_hits(len(big.hits)) is both.dense
    assert both.dense.stage3.stop_threshold == 0.3
    assert both.stage3.stop_threshold == pipe.stage3.stop_threshold
    np.testing.assert_array_equal(both.reconstruct(small), pipe.reconstruct(small))
    np.testing.assert_array_equal(both.reconstruct(big), dense.reconstruct(big))
    # the variant's GNN really is another one: its outputs differ on the big event
    g_both = both.stage_outputs(big, cluster=False)["gnn"]
    g_pipe = pipe.stage_outputs(big, cluster=False)["gnn"]
    assert not np.allclose(g_both, g_pipe, atol=1e-3)
    # a cut above every event: the variant is never used
    never = pipe.with_dense(dense, min_hits=len(big.hits) + 1)
    np.testing.assert_array_equal(never.reconstruct(big), pipe.reconstruct(big))


def test_the_dense_variant_is_saved_and_restored_with_the_model(toy, tmp_path):
    from cgnn_jax.inference import Pipeline, PipelineMethod

    pipe, dense, _, big = toy
    both = pipe.with_dense(dense, min_hits=1234)
    both.save(tmp_path / "checkpoints")
    back = Pipeline.restore(tmp_path)
    assert back.dense is not None and back.dense_min_hits == 1234
    assert _leaves_equal(back.params, pipe.params)
    assert _leaves_equal(back.dense.params, both.dense.params)
    assert back.dense.stage3.stop_threshold == 0.3
    np.testing.assert_array_equal(back.reconstruct(big), dense.reconstruct(big))
    # stage 1's learned values (filter cut, zone or module map) are stored once, and shared
    from cgnn_jax.inference.checkpoint import restore_checkpoint
    from cgnn_jax.inference.variants import STAGE1_LEARNED

    _, meta = restore_checkpoint(tmp_path / "checkpoints", None, kind="pipeline")
    stored = meta["dense"]["meta"].get("learned", {})
    assert "stop_threshold" in stored and not set(stored) & set(STAGE1_LEARNED)
    for k in STAGE1_LEARNED:
        assert back.dense.learned.get(k) == back.learned.get(k)
    # the model without its variant saves and restores without one
    pipe.save(tmp_path / "plain" / "checkpoints")
    assert Pipeline.restore(tmp_path / "plain").dense is None
    # reconstruction parts made by one model are never taken for the other's
    keys = {PipelineMethod(pipe=p).run_key()["model"] for p in (pipe, both, back)}
    assert len(keys) == 2


def test_a_variant_with_another_stage1_is_refused(toy):
    pipe, dense, _, _ = toy
    emb = jax.tree_util.tree_map(lambda x: np.asarray(x) + 1.0, pipe.params["embedding"])
    other = dataclasses.replace(dense, params={**dense.params, "embedding": emb})
    with pytest.raises(ValueError, match="other stage-1 parameters"):
        pipe.with_dense(other, min_hits=10)
    with pytest.raises(ValueError, match="dense_min_hits"):
        pipe.with_dense(dense, min_hits=0)
    with pytest.raises(ValueError, match="variant of its own"):
        pipe.with_dense(pipe.with_dense(dense, 10), min_hits=10)


def test_export_model_attaches_a_dense_variant(toy, two_runs, tmp_path):
    import re

    from cgnn_jax.inference import Pipeline
    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.stage3 import STOP_GRID, calibrate_stop_threshold

    pipe, dense, _, _ = toy
    dense.save(tmp_path / "dense" / "checkpoints")
    env = {**os.environ, "CGNN_JAX_CACHE_DIR": "off"}
    out = tmp_path / "model"
    args = [sys.executable, "launch/export_model.py", f"--workdir={two_runs[0]}", f"--out={out}"]
    dense_args = [f"--dense={tmp_path / 'dense'}", "--dense_min_hits=777"]
    bad = subprocess.run(
        [*args, *dense_args, "--calibrate_stop_events=-1"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--calibrate_stop_events=-1" in bad.stderr and not out.exists()
    p = subprocess.run(
        [*args, *dense_args, "--calibrate_stop_events=1"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    back = Pipeline.restore(out)
    assert back.dense_min_hits == 777
    assert _leaves_equal(back.dense.params["gnn"], dense.params["gnn"])
    # --calibrate_stop_events: Stop's cut chosen again per variant for the GNN it now runs (the
    # model at its training fraction, the dense variant on full events), each its grid's best,
    # the same as calibrating in process
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if "Stop's cut on the" in ln]
    assert len(lines) == 2  # the model, then its dense variant
    for line, variant in zip(lines, (back, back.dense), strict=True):
        scores = [float(x) for x in re.findall(r"-> ([0-9.]+)", line)]
        assert len(scores) == len(STOP_GRID)
        assert scores[STOP_GRID.index(variant.stage3.stop_threshold)] == max(scores)
    full = TrainingEvents(pipe.config, log=lambda *a: None).validation_events(1, 1.0)
    again = calibrate_stop_threshold(back.dense, full, log=lambda *a: None)
    assert again.stage3.stop_threshold == back.dense.stage3.stop_threshold
    # another stage 1: one clear line, and the exported model stays as it was
    emb = jax.tree_util.tree_map(lambda x: np.asarray(x) + 1.0, pipe.params["embedding"])
    dataclasses.replace(dense, params={**dense.params, "embedding": emb}).save(
        tmp_path / "other" / "checkpoints"
    )
    before = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
    p = subprocess.run(
        [*args, f"--dense={tmp_path / 'other'}"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "other stage-1 parameters" in p.stderr
    assert sorted(str(f.relative_to(out)) for f in out.rglob("*")) == before
    assert Pipeline.restore(out).dense_min_hits == 777
    # --gnn: the model's own GNN replaced by a stage-2 workdir's, its dense variant kept
    from cgnn_jax.inference import Stage2

    out2 = tmp_path / "model2"
    p = subprocess.run(
        [sys.executable, "launch/export_model.py", f"--workdir={out}", f"--out={out2}",
         f"--gnn={two_runs[0]}", "--input_threshold=0.005", "--extend_iterations=2",
         "--tree_rows=atoms", "--dense_input_threshold=0.05", "--graph_approx=2.0"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    back2 = Pipeline.restore(out2)
    assert _leaves_equal(back2.params["gnn"], Stage2.restore(two_runs[0]).params)
    assert back2.config.gnn.input_threshold == 0.005
    assert back2.dense.config.gnn.input_threshold == 0.05  # --dense_input_threshold
    assert back2.stage1_config.graph.approx == back2.dense.stage1_config.graph.approx == 2.0
    p = subprocess.run(
        [sys.executable, "launch/export_model.py", f"--workdir={out}",
         f"--out={tmp_path / 'bad'}", "--graph_approx=-1"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert p.returncode != 0 and "Traceback" not in p.stderr and "need >= 0" in p.stderr
    assert not (tmp_path / "bad").exists()
    # --extend_iterations: the track extension on for both variants, default sizes filled in
    from cgnn_jax.cluster.extend import DEFAULTS

    for variant in (back2, back2.dense):
        cc = variant.config.cluster
        assert cc.extend_iterations == 2 and cc.extend_free_max == DEFAULTS["free_max"]
        assert cc.tree_rows == "atoms"  # --tree_rows, both variants too
    assert back2.dense_min_hits == 777 and _leaves_equal(back2.dense.params, back.dense.params)


def test_stage1_checkpoint_may_be_a_whole_pipeline(two_runs):
    from cgnn_jax.inference import Pipeline, restore_stage1

    pipe = Pipeline.restore(two_runs[0])
    s1 = restore_stage1(two_runs[0] / "pipeline")
    assert _leaves_equal(s1.emb_params, pipe.params["embedding"])
    with pytest.raises(Exception, match="no-such"):
        restore_stage1(two_runs[0] / "no-such")


def test_tree_comparisons():
    from cgnn_jax.utils.trees import same_leaves, shape_mismatch

    a = {"w": np.zeros((3, 4)), "b": np.ones(4)}
    assert shape_mismatch(a, {"w": np.ones((3, 4)), "b": np.zeros(4)}) is None
    assert "(3, 5), expected (3, 4)" in shape_mismatch(a, {"w": np.ones((3, 5)), "b": np.ones(4)})
    assert "missing" in shape_mismatch(a, {"w": np.ones((3, 4))})
    assert "more than expected" in shape_mismatch(a, {**a, "c": np.ones(1)})
    assert same_leaves(a, {"w": np.zeros((3, 4)), "b": np.ones(4)})
    assert not same_leaves(a, {"w": np.zeros((3, 4)), "b": np.full(4, 2.0)})


def test_export_model_takes_the_inference_settings_from_a_config(toy, tmp_path):
    """``--config=configs/default.py:export``: every inference setting of each variant from the
    config, a flag (or ``--config.<key>``) over it; a config of another kind is refused."""
    from cgnn_jax.inference import Pipeline
    from configs.default import export

    pipe, dense, _, _ = toy
    pipe.with_dense(dense, min_hits=777).save(tmp_path / "model" / "checkpoints")
    env = {**os.environ, "CGNN_JAX_CACHE_DIR": "off"}
    out = tmp_path / "again"
    args = [
        sys.executable, "launch/export_model.py", "--config=configs/default.py:export",
        f"--workdir={tmp_path / 'model'}", f"--out={out}",
        "--config.calibrate_merge_events=0", "--config.calibrate_stop_events=0",
    ]  # fmt: skip
    p = subprocess.run(
        [*args, "--input_threshold=0.01", "--config.dense.cluster.extend_iterations=1"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    want = export()
    back = Pipeline.restore(out)
    assert back.dense_min_hits == want.dense_min_hits  # the config's, over the model's 777
    assert back.stage1_config.graph.approx == pytest.approx(want.graph_approx)
    assert back.config.gnn.input_threshold == pytest.approx(0.01)  # the flag's
    assert back.dense.config.gnn.input_threshold == pytest.approx(want.dense.input_threshold)
    for variant, settings in ((back, want.sparse), (back.dense, want.dense)):
        for key, value in settings.cluster.items():
            expected = 1 if variant is back.dense and key == "extend_iterations" else value
            assert variant.config.cluster[key] == expected, key
    assert _leaves_equal(back.params, pipe.params)
    assert _leaves_equal(back.dense.params["gnn"], dense.params["gnn"])
    assert back.stage3.stop_threshold == pipe.stage3.stop_threshold  # no calibration asked for
    # a training config is not an export config: one line naming the flag, nothing written
    bad = subprocess.run(
        [sys.executable, "launch/export_model.py", "--config=configs/default.py",
         f"--workdir={tmp_path / 'model'}", f"--out={tmp_path / 'bad'}"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--config=configs/default.py: not an export config" in bad.stderr
    assert not (tmp_path / "bad").exists()
