"""Real against simulated inputs (``cgnn_jax.analysis.sim_vs_real``, ``benchmarks/sim_vs_real.py``)."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cgnn_jax.analysis.sim_vs_real import event_samples, half_phi, ks_table, markdown, pool
from cgnn_jax.data import real_sample
from cgnn_jax.features import FEATURE_NAMES, PAIR_FEATURE_NAMES
from cgnn_jax.sim import simulate_event

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real():
    return event_samples(real_sample())


@functools.lru_cache(maxsize=2)
def _sim(sigma):
    return event_samples(half_phi(simulate_event(9, track_fraction=0.05, vertex_sigma_z=sigma)))


def test_half_phi_keeps_the_particles_and_noise_of_one_half():
    ev = simulate_event(3, track_fraction=0.02)
    half = half_phi(ev)
    p = half.particles
    assert len(p) and np.all(np.arctan2(p.py, p.px) >= 0)
    pid = half.truth.set_index("hit_id").loc[half.hits.hit_id, "particle_id"].to_numpy()
    noise = pid == 0
    assert noise.any() and np.all(np.arctan2(half.hits.y, half.hits.x)[noise] >= 0)
    assert set(pid[~noise]) <= set(p.particle_id)
    # Whole particles: every hit of a kept particle is kept.
    full = ev.truth[ev.truth.particle_id.isin(p.particle_id)]
    assert len(full) == (~noise).sum()
    assert half.cells.hit_id.isin(half.hits.hit_id).all()
    assert len(half.cells) == ev.cells.hit_id.isin(half.hits.hit_id).sum()


def test_samples_cover_every_model_input(real):
    quantities = {q for _, q in real}
    wanted = {f for f in FEATURE_NAMES if not f.startswith("vol_") and f != "is_barrel"}
    assert wanted | {"dir_error"} <= quantities
    for group in ("pairs true", "pairs false"):
        assert {q for g, q in real if g == group} == set(PAIR_FEATURE_NAMES)
    assert {("tracks", "residual_xy"), ("tracks", "residual_rz"), ("tracks", "z0")} <= set(real)
    assert {("noise", "r"), ("noise", "z"), ("particles", "vz")} <= set(real)
    n_true = len(real[("pairs true", "dr")])
    assert 0.9 * n_true <= len(real[("pairs false", "dr")]) <= n_true
    assert 2000 < n_true < 2851  # consecutive pairs of 245 particles' 2,461 hits


def test_ks_table_is_zero_on_itself_and_sorted(real):
    same = ks_table(real, pool([real, real]))
    assert len(same) > 100 and np.allclose(same.ks, 0.0)
    table = ks_table(real, _sim(50.0))
    assert np.all(np.diff(table.ks.to_numpy()) <= 0)
    assert np.all((table.ks_95 > 0) & (table.ks_95 < 1))
    text = markdown(table, 5)
    assert text.count("\n") == 6 and text.startswith("| group |")


def test_the_luminous_region_shows_in_the_vertices(real):
    ks = {}
    for sigma in (None, 50.0):
        t = ks_table(real, _sim(sigma)).set_index(["group", "quantity"])
        ks[sigma] = t.loc[("particles", "vz"), "ks"]
    assert ks[None] > 0.3 and ks[50.0] < 0.2  # 6 mm, then 50 mm, against the real 50 mm


def _script():
    spec = importlib.util.spec_from_file_location(
        "sim_vs_real", ROOT / "benchmarks" / "sim_vs_real.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sim_vs_real_script(tmp_path, monkeypatch, capsys):
    script = _script()
    out = tmp_path / "r" / "svr.json"
    argv = ["sim_vs_real.py", "--events=1", "--track_fraction=0.02", "--no_scores", "--top=3"]
    monkeypatch.setattr(sys, "argv", [*argv, f"--json_out={out}"])
    script.main()
    printed = capsys.readouterr().out
    assert printed.count("\n| hits vol") + printed.count("\n| pairs") <= 3
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) > 100 and rows[0]["ks"] >= rows[-1]["ks"]
    monkeypatch.setattr(sys, "argv", ["sim_vs_real.py", "--vertex_sigma_z=wide"])
    with pytest.raises(SystemExit, match="--vertex_sigma_z"):
        script.main()


def test_like_real_sample_matches_the_real_event_in_size_and_luminous_region():
    from cgnn_jax.analysis.sim_vs_real import like_real_sample

    real_ev = real_sample()
    like = like_real_sample(5, event_id=7)
    assert like.event_id == 7
    # the same kind of event: hits within a factor 1.5 of the real one's (2,851), a long
    # luminous region (collisions spread by ~50 mm, against ~6 mm for the default simulation)
    assert 1 / 1.5 < len(like.hits) / len(real_ev.hits) < 1.5
    prompt = np.hypot(like.particles.vx, like.particles.vy) < 1.0
    assert np.std(like.particles.vz[prompt]) > 25.0
    default = simulate_event(5, track_fraction=0.05)
    prompt_d = np.hypot(default.particles.vx, default.particles.vy) < 1.0
    assert np.std(default.particles.vz[prompt_d]) < 15.0
