"""Tests for the DBSCAN baselines on small synthetic helix events (no simulator needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.baselines import METHODS, get_method, reconstruct_baseline
from cgnn_jax.baselines.dbscan import cluster_labels, dbscan_features, dbscan_tracks
from cgnn_jax.baselines.helix import helix_dbscan_tracks, kappa_from_pt, kappa_grid, merge_step
from cgnn_jax.baselines.tune import tune_eps
from cgnn_jax.inference import reconstruct_dataset
from cgnn_jax.io import Event

HIT_COLUMNS = ["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]
RADII = np.geomspace(30.0, 1000.0, 10)


def synthetic_event(
    n_tracks: int = 40,
    pt_range: tuple[float, float] = (1.0, 10.0),
    n_noise: int = 10,
    seed: int = 0,
    sigma: float = 0.05,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Helices from the origin in a 2 T field crossing 10 barrel cylinders, plus noise.

    Returns:
      ``(hits, particle)``: hits ``[n]`` in schema column order (shuffled rows) and the
      ``[n]`` int64 particle of each hit (0 for noise).
    """
    rng = np.random.default_rng(seed)
    pt = rng.uniform(*pt_range, n_tracks)
    eta = rng.uniform(-2.0, 2.0, n_tracks)
    phi0 = rng.uniform(-np.pi, np.pi, n_tracks)
    charge = rng.choice([-1.0, 1.0], n_tracks)
    radius = pt / (0.0003 * 2.0)  # mm
    r = RADII[None, :]
    reach = r < 2.0 * radius[:, None]
    bend = np.arcsin(np.clip(r / (2.0 * radius[:, None]), -1.0, 1.0))
    phi = phi0[:, None] - charge[:, None] * bend
    z = 2.0 * radius[:, None] * bend * np.sinh(eta)[:, None]
    x, y = r * np.cos(phi), r * np.sin(phi)
    pid = np.broadcast_to(np.arange(1, n_tracks + 1)[:, None], x.shape)
    x, y, z, pid = x[reach], y[reach], z[reach], pid[reach]
    x, y, z = (v + rng.normal(0.0, sigma, len(v)) for v in (x, y, z))
    rn = rng.choice(RADII, n_noise)
    pn = rng.uniform(-np.pi, np.pi, n_noise)
    zn = rng.uniform(-1.0, 1.0, n_noise) * rn * np.sinh(2.0)
    x = np.concatenate([x, rn * np.cos(pn)])
    y = np.concatenate([y, rn * np.sin(pn)])
    z = np.concatenate([z, zn])
    pid = np.concatenate([pid, np.zeros(n_noise, dtype=np.int64)])
    perm = rng.permutation(len(x))
    n = len(x)
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, n + 1, dtype=np.int32),
            "x": x[perm].astype(np.float32),
            "y": y[perm].astype(np.float32),
            "z": z[perm].astype(np.float32),
            "volume_id": np.full(n, 8, dtype=np.int32),
            "layer_id": np.full(n, 2, dtype=np.int32),
            "module_id": np.ones(n, dtype=np.int32),
        }
    )[HIT_COLUMNS]
    return hits, pid[perm].astype(np.int64)


def truth_frame(hits: pd.DataFrame, pid: np.ndarray) -> pd.DataFrame:
    """A minimal truth frame (uniform weights over hits of real particles)."""
    weight = (pid > 0).astype(np.float32)
    return pd.DataFrame(
        {"hit_id": hits["hit_id"].to_numpy(), "particle_id": pid, "weight": weight / weight.sum()}
    )


def track_efficiency(pid: np.ndarray, track_id: np.ndarray) -> float:
    """Fraction of particles with >= 50 % of their hits in one cluster that is >= 50 % pure."""
    df = pd.DataFrame({"p": pid, "c": track_id})
    n_particle = df.groupby("p")["c"].transform("size")
    n_cluster = df.groupby("c")["p"].transform("size")
    n_both = df.groupby(["p", "c"])["p"].transform("size")
    good = (n_both >= 0.5 * n_particle) & (n_both >= 0.5 * n_cluster) & (df["p"] > 0)
    particles = np.unique(pid[pid > 0])
    return float(np.isin(particles, df.loc[good, "p"].unique()).mean())


@pytest.fixture(scope="module")
def high_pt() -> tuple[pd.DataFrame, np.ndarray]:
    return synthetic_event(pt_range=(1.0, 10.0), seed=1)


@pytest.fixture(scope="module")
def low_pt() -> tuple[pd.DataFrame, np.ndarray]:
    return synthetic_event(pt_range=(0.5, 1.0), seed=2)


def test_features_shape_and_standardised(high_pt):
    hits, _ = high_pt
    f = dbscan_features(hits)
    assert f.shape == (len(hits), 3)
    np.testing.assert_allclose(f.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(f.std(0), 1.0, atol=1e-9)


def test_dbscan_one_id_per_hit_and_consecutive(high_pt):
    hits, _ = high_pt
    ids = dbscan_tracks(hits)
    assert ids.shape == (len(hits),)
    assert ids.dtype == np.int64
    assert ids.min() == 1
    np.testing.assert_array_equal(np.unique(ids), np.arange(1, ids.max() + 1))


def test_dbscan_finds_high_pt_tracks(high_pt):
    hits, pid = high_pt
    assert track_efficiency(pid, dbscan_tracks(hits, eps=0.02)) >= 0.8


def test_dbscan_min_samples_noise_becomes_singletons(high_pt):
    hits, _ = high_pt
    ids = dbscan_tracks(hits, eps=0.02, min_samples=3)
    assert ids.shape == (len(hits),) and ids.min() == 1
    np.testing.assert_array_equal(np.unique(ids), np.arange(1, ids.max() + 1))


def test_ckdtree_backend_equals_sklearn(high_pt):
    hits, _ = high_pt
    f = dbscan_features(hits)
    a = cluster_labels(f, 0.02, backend="sklearn")
    b = cluster_labels(f, 0.02, backend="ckdtree")
    # the same partition: a one-to-one map between the labels
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    assert len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_kappa_grid():
    g = kappa_grid(7, 1e-3)
    np.testing.assert_allclose(g, [0, 1e-3 / 3, -1e-3 / 3, 2e-3 / 3, -2e-3 / 3, 1e-3, -1e-3])
    assert len(kappa_grid(100)) == 100
    assert kappa_from_pt(1.0) == pytest.approx(3e-4)


def test_merge_step_moves_to_larger_clusters_only():
    labels = np.array([0, 1, 2, 3, 3])
    sizes = np.array([1, 1, 1, 2, 2])
    new = np.array([0, 0, 0, 1, 0])  # cluster 0 has 4 hits
    out, out_sizes = merge_step(labels, sizes, new, max_track_size=20)
    assert len(np.unique(out[[0, 1, 2, 4]])) == 1 and out[3] != out[0]
    np.testing.assert_array_equal(out_sizes, [4, 4, 4, 1, 4])
    out, _ = merge_step(labels, sizes, new, max_track_size=3)  # too big: nobody moves
    np.testing.assert_array_equal(out, labels)


def test_helix_beats_dbscan_on_low_pt(low_pt):
    hits, pid = low_pt
    best_plain = max(track_efficiency(pid, dbscan_tracks(hits, eps=e)) for e in (0.01, 0.02, 0.04))
    ids = helix_dbscan_tracks(hits)
    assert ids.shape == (len(hits),) and ids.dtype == np.int64 and ids.min() == 1
    helix = track_efficiency(pid, ids)
    assert helix >= 0.8
    assert helix >= best_plain
    # at the eps that finds >= 80 % of the high-p_T tracks, plain dbscan misses most of these
    assert track_efficiency(pid, dbscan_tracks(hits, eps=0.02)) < 0.6


def test_helix_high_pt(high_pt):
    hits, pid = high_pt
    assert track_efficiency(pid, helix_dbscan_tracks(hits, n_scan=41)) >= 0.8


def test_helix_steps_on_threads_give_the_serial_tracks(low_pt, monkeypatch):
    """The scan's steps are clustered ahead on threads and merged in scan order: the same ids
    as one thread, for more steps than the threads look ahead."""
    import cgnn_jax.baselines.helix as helix

    hits, _ = low_pt
    runs = {}
    for cpus in (1, 2, 3):
        monkeypatch.setattr(helix, "usable_cpus", lambda cpus=cpus: cpus)
        runs[cpus] = helix_dbscan_tracks(hits, n_scan=31)
    assert len(np.unique(runs[1])) > 10
    np.testing.assert_array_equal(runs[2], runs[1])
    np.testing.assert_array_equal(runs[3], runs[1])


def test_unknown_method_lists_valid():
    with pytest.raises(ValueError, match=r"valid methods: dbscan, helix_dbscan"):
        get_method("nope")
    hits, _ = synthetic_event(n_tracks=3, n_noise=0)
    with pytest.raises(ValueError, match="unknown method 'cgnn'"):
        reconstruct_baseline(hits, "cgnn")
    assert set(METHODS) >= {"dbscan", "helix_dbscan"}


def test_tune_eps_with_custom_score(high_pt):
    hits, pid = high_pt
    events = [Event(event_id=7, hits=hits, truth=truth_frame(hits, pid))]

    def score_fn(truth: pd.DataFrame, sub: pd.DataFrame) -> float:
        assert list(sub.columns) == ["event_id", "hit_id", "track_id"]
        return track_efficiency(truth["particle_id"].to_numpy(), sub["track_id"].to_numpy())

    best, table = tune_eps(events, "dbscan", [0.001, 0.02], score_fn=score_fn)
    assert best == 0.02
    assert list(table["eps"]) == [0.001, 0.02]
    assert {"score", "std", "seconds", "event_7"} <= set(table.columns)
    assert table["score"].iloc[1] > table["score"].iloc[0]


def _write_dataset(root: Path, seeds: dict[int, int]) -> dict[int, pd.DataFrame]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for event_id, seed in seeds.items():
        hits, _ = synthetic_event(n_tracks=10, n_noise=3, seed=seed)
        hits.to_csv(root / f"event{event_id:09d}-hits.csv", index=False)
        out[event_id] = hits
    return out


@pytest.mark.parametrize("method", ["dbscan", "helix_dbscan"])
def test_reconstruct_dataset(tmp_path, method):
    events = _write_dataset(tmp_path / "data", {1: 11, 2: 12})
    kwargs = {"n_scan": 11} if method == "helix_dbscan" else {}
    sub = reconstruct_dataset(tmp_path / "data", method, progress=False, **kwargs)
    assert list(sub.columns) == ["event_id", "hit_id", "track_id"]
    assert len(sub) == sum(len(h) for h in events.values())
    for event_id, hits in events.items():
        part = sub[sub["event_id"] == event_id]
        np.testing.assert_array_equal(part["hit_id"].to_numpy(), hits["hit_id"].to_numpy())
        assert part["track_id"].min() >= 1
    with pytest.raises(ValueError, match="valid methods"):
        reconstruct_dataset(tmp_path / "data", "cgnn", progress=False)


def test_reconstruct_dataset_workers_match_serial(tmp_path):
    _write_dataset(tmp_path / "data", {3: 21, 5: 22})
    serial = reconstruct_dataset(tmp_path / "data", "dbscan", progress=False, eps=0.02)
    parallel = reconstruct_dataset(tmp_path / "data", "dbscan", workers=2, progress=False, eps=0.02)
    pd.testing.assert_frame_equal(serial, parallel)
    assert sorted(serial["event_id"].unique()) == [3, 5]
