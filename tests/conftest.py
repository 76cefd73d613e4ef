"""Shared fixtures: one training of every stage on ``configs/test.py`` for the whole test run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTERRUPT_AFTER = (
    6  # steps (or one before a shorter run's end); configs/test.py checkpoints every 4
)


RESUME_DRIVER = textwrap.dedent(
    """
    import json, sys
    from cgnn_jax.inference.jax_cache import enable_compilation_cache
    enable_compilation_cache(sys.argv[3])
    from cgnn_jax.train import stage1, stage2, stage3, train_and_evaluate
    from cgnn_jax.train import loop
    from configs.test import get_config

    workdir, after = sys.argv[1], int(sys.argv[2])
    interrupted = set()

    class Interrupted(Exception):
        pass

    def fit(state, step_fn, batch_at, **kw):  # interrupt each run once, after `after` steps
        desc = kw.get("desc")
        if desc in interrupted or batch_at is None:
            return loop.fit(state, step_fn, batch_at, **kw)
        s0 = int(state.step)
        # within the run whatever its length (steps per epoch depend on the device count)
        cut = min(after, kw["num_steps"] - 1)

        def dying(step):
            if step - s0 >= cut:
                interrupted.add(desc)
                raise Interrupted(desc)
            return batch_at(step)

        return loop.fit(state, step_fn, dying, **kw)

    for module in (stage1, stage2, stage3):
        module.fit = fit
    logs = []
    for attempt in range(10):
        try:
            train_and_evaluate(get_config(), workdir, log=logs.append)
            break
        except Interrupted as e:
            logs.append(f"interrupted: {e}")
    print("LOGS=" + json.dumps(logs))
    """
)


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory):
    """``(whole, resumed, logs)``: the workdirs of an uninterrupted ``launch/train.py`` run on
    ``configs/test.py`` and of one whose every run was interrupted and resumed, and its logs.
    Read-only: a test that trains on copies them first.

    Trained once per test run, also under pytest-xdist (``make test`` runs ``-n auto``): the
    first worker that needs them trains them in the workers' shared temporary folder, under a
    file lock; the others wait for it and read the result."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this test run
    tmp = root / "two_runs"
    with open(root / "two_runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = tmp / "logs.json"
        if not done.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # a half-made one of a crashed worker
            tmp.mkdir()
            logs = _train_two_runs(tmp)
            done.write_text(json.dumps(logs))
        logs = json.loads(done.read_text())
    return tmp / "whole", tmp / "resumed", logs


def _train_two_runs(tmp: Path) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["CGNN_JAX_CACHE_DIR"] = str(tmp / "jax_cache")
    whole, resumed = tmp / "whole", tmp / "resumed"
    proc = subprocess.run(
        [sys.executable, "launch/train.py", "--config=configs/test.py", f"--workdir={whole}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RESUME_DRIVER,
            str(resumed),
            str(INTERRUPT_AFTER),
            str(tmp / "jax_cache"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = json.loads(proc.stdout.split("LOGS=")[-1])
    return logs


@pytest.fixture(scope="session")
def map_events():
    """Two small simulated events (2 % of the tracks) for the module-map tests."""
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    return [
        simulate_event(event_seed(6, i), 200.0, track_fraction=0.02, event_id=1 + i)
        for i in range(2)
    ]


@pytest.fixture(scope="session")
def untrained_stage1_params():
    """``make(config, prepared_event) -> (emb_params, filter_params)``: stage 1's two networks
    randomly initialised for ``config`` and the event's hit features."""
    import jax
    import jax.numpy as jnp

    from cgnn_jax.features.pairs import n_pair_features
    from cgnn_jax.models import create_model

    def make(config, pe):
        f = pe.hf.x.shape[1]
        emb = create_model(config, "embedding").init(jax.random.PRNGKey(0), jnp.zeros((2, f)))
        filt = create_model(config, "filter").init(
            jax.random.PRNGKey(1),
            jnp.zeros((2, f)),
            jnp.zeros((1, n_pair_features())),
            jnp.zeros(1, jnp.int32),
            jnp.ones(1, jnp.int32),
        )
        return emb, filt

    return make
