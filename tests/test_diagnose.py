"""The stage-ceiling diagnostic: the ceilings of :mod:`cgnn_jax.metrics.ceilings` on small
simulated events and synthetic trees, and ``launch/diagnose.py`` as a user runs it."""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cgnn_jax.analysis.diagnose import CHAIN, DROPS, largest_drop, principal_tree, summary_line
from cgnn_jax.cluster.recursion import unrolled_clustering
from cgnn_jax.metrics import consecutive_pairs, score_event
from cgnn_jax.metrics.ceilings import (
    compactness,
    edge_efficiency_purity,
    oracle_components_ceiling,
    oracle_stop,
    roc_auc,
    score_labels,
)
from cgnn_jax.models.split_stop import Split, Stop
from cgnn_jax.sim import simulate_event

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_event():
    """A μ = 10 event (a few thousand hits): ``(event, pid, weight, pos)`` in hit row order."""
    ev = simulate_event(5, 10.0, event_id=3)
    tr = ev.truth.set_index("hit_id").reindex(ev.hits["hit_id"].to_numpy())
    pid = tr["particle_id"].to_numpy(np.int64)
    weight = tr["weight"].to_numpy(np.float64)
    pos = ev.hits[["x", "y", "z"]].to_numpy(np.float64)
    assert (pid == 0).any() and len(np.unique(pid)) > 20  # noise and many particles
    return ev, pid, weight, pos


def _score_event(ev, labels: np.ndarray) -> float:
    sub = pd.DataFrame({"hit_id": ev.hits["hit_id"].to_numpy(), "track_id": labels})
    return score_event(ev.truth, sub)


# ------------------------------------------------------------------ graph ceilings


def test_truth_graph_ceiling_is_the_signal_weight(small_event):
    _, pid, weight, pos = small_event
    s, r = consecutive_pairs(pos, pid)
    ceiling = oracle_components_ceiling(s, r, pid, weight)
    # every particle becomes one pure track: the score is the weight share of non-noise hits,
    # which is exactly 1 with the TrackML weights (noise weighs 0)
    signal_share = weight[pid != 0].sum() / weight.sum()
    assert ceiling == pytest.approx(signal_share, abs=1e-12)
    assert weight[pid == 0].sum() == 0.0
    assert ceiling == pytest.approx(1.0, abs=1e-12)
    # one direction of the consecutive pairs is enough (edges are undirected for components)
    half = len(s) // 2
    assert oracle_components_ceiling(s[:half], r[:half], pid, weight) == pytest.approx(ceiling)


def test_empty_graph_ceiling_is_the_singleton_score(small_event):
    ev, pid, weight, _ = small_event
    empty = np.zeros(0, np.int64)
    ceiling = oracle_components_ceiling(empty, empty, pid, weight)
    singletons = np.arange(len(pid))
    assert ceiling == pytest.approx(_score_event(ev, singletons), abs=1e-12)
    # a singleton is good only for a one-hit particle
    ids, cnt = np.unique(pid, return_counts=True)
    one_hit = np.isin(pid, ids[(cnt == 1) & (ids != 0)])
    assert ceiling == pytest.approx(weight[one_hit].sum() / weight.sum(), abs=1e-12)
    assert ceiling < 0.05


def test_false_edges_do_not_lower_the_ceiling_missing_true_ones_do(small_event):
    _, pid, weight, pos = small_event
    s, r = consecutive_pairs(pos, pid)
    rng = np.random.default_rng(0)
    keep = rng.random(len(s)) < 0.6
    base = oracle_components_ceiling(s[keep], r[keep], pid, weight)
    fs, fr = rng.integers(0, len(pid), (2, 5000))
    false = pid[fs] != pid[fr]
    fs, fr = fs[false], fr[false]
    with_false = oracle_components_ceiling(np.r_[s[keep], fs], np.r_[r[keep], fr], pid, weight)
    assert with_false == pytest.approx(base, abs=1e-12)
    full = oracle_components_ceiling(s, r, pid, weight)
    assert base < full - 0.05  # 40 % of the consecutive edges missing cuts many tracks


def test_score_labels_is_the_trackml_score(small_event):
    ev, pid, weight, _ = small_event
    rng = np.random.default_rng(1)
    labels = np.where(rng.random(len(pid)) < 0.8, pid, rng.integers(0, 50, len(pid)))
    assert score_labels(pid, labels, weight) == pytest.approx(_score_event(ev, labels), abs=1e-12)


# ------------------------------------------------------------------ oracle Stop


PAD, DEPTH = 256, 14  # one compilation serves every tree of these tests


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _cluster(split, stop, min_size, ps, pt, h, mask, use_stop):
    """Split/Stop clustering of ``h``; with ``use_stop`` False, Stop never stops (full tree)."""
    return unrolled_clustering(
        lambda *a: split.apply(ps, *a),
        lambda *a: jnp.where(use_stop, stop.apply(pt, *a), 0.0),
        h,
        mask,
        DEPTH,
        min_size,
        0.5,
    )


def _trees(h: np.ndarray, seed: int, min_size: int = 2):
    """The full tree of a random Split (Stop off) and the tree a random Stop prunes it to,
    unpadded to the ``n <= PAD`` points of ``h``."""
    n = len(h)
    assert n <= PAD
    split, stop = Split((16,), output_scale=2.0), Stop((16,))
    hp, mask = np.zeros((PAD, h.shape[1]), np.float32), np.arange(PAD) < n
    hp[:n] = h
    seg0 = np.zeros(PAD, np.int32)
    k1, k2 = jax.random.split(jax.random.key(seed))
    ps = split.init(k1, hp, seg0, mask, PAD)
    pt = stop.init(k2, hp, seg0, mask, PAD)
    full, pruned = (_cluster(split, stop, min_size, ps, pt, hp, mask, u) for u in (False, True))
    return _unpad(full, n), _unpad(pruned, n)


def _unpad(tree: dict, n: int) -> dict[str, np.ndarray]:
    return {
        "segment": np.asarray(tree["segment"])[:, :n],
        "active": np.asarray(tree["active"])[:, :n],
        "cluster": np.asarray(tree["cluster"])[:n],
    }


def test_oracle_stop_bounds_the_actual_stop_and_its_labels_reach_it(small_event):
    _, pid, weight, pos = small_event
    particles = np.unique(pid[pid != 0])[:15]
    sel = np.r_[np.flatnonzero(np.isin(pid, particles)), np.flatnonzero(pid == 0)[:20]]
    assert 100 < len(sel) <= PAD
    p, w = pid[sel], weight[sel]
    h = np.c_[pos[sel] / 1000.0, np.random.default_rng(0).normal(size=(len(sel), 2))]
    h = h.astype(np.float32)
    for seed in range(3):
        full, pruned = _trees(h, seed)
        assert full["active"].sum() > pruned["active"].sum()  # the random Stop stops some
        ceiling, labels = oracle_stop(full["segment"], full["active"], p, w)
        actual = score_labels(p, pruned["cluster"], w)
        assert actual <= ceiling + 1e-12
        assert 0.0 <= ceiling <= 1.0 + 1e-12
        assert score_labels(p, labels, w) == pytest.approx(ceiling, abs=1e-12)
        # stopping everything at the root or nowhere are prunings too
        assert ceiling >= score_labels(p, np.zeros(len(p)), w) - 1e-12
        assert ceiling >= score_labels(p, full["cluster"], w) - 1e-12


def _prunings(segment: np.ndarray, active: np.ndarray, lev: int, pts: np.ndarray):
    """Every pruning of the subtree of cluster ``pts`` at level ``lev``, as lists of point sets."""
    depth = len(active)
    while lev < depth and not active[lev][segment[lev][pts[0]]]:
        lev += 1  # carried unchanged
    if lev == depth:
        return [[pts]]
    kids = [pts[segment[lev + 1][pts] == c] for c in np.unique(segment[lev + 1][pts])]
    below = [
        [c for part in combo for c in part]
        for combo in itertools.product(*(_prunings(segment, active, lev + 1, k) for k in kids))
    ]
    return [[pts], *below]


def test_oracle_stop_is_the_best_pruning_by_brute_force():
    rng = np.random.default_rng(3)
    n = 12
    # 3 particles of 3-4 hits and 2 noise hits, points near their particle's centre
    pid = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0])
    weight = rng.uniform(0.5, 2.0, n) * (pid != 0)
    centre = rng.normal(size=(4, 5)) * 2.0
    for seed in range(5):
        h = (centre[pid] + rng.normal(size=(n, 5))).astype(np.float32)  # 5 columns: as above
        full, _ = _trees(h, seed)
        ceiling, _ = oracle_stop(full["segment"], full["active"], pid, weight)
        prunings = _prunings(full["segment"], full["active"], 0, np.arange(n))
        assert len(prunings) > 20  # a real tree (12 points, leaves of 1-2)
        scores = []
        for clusters in prunings:
            labels = np.empty(n, np.int64)
            for i, c in enumerate(clusters):
                labels[c] = i
            scores.append(score_labels(pid, labels, weight))
        assert ceiling == pytest.approx(max(scores), abs=1e-12)


def test_oracle_stop_rejects_bad_trees():
    with pytest.raises(ValueError, match="active"):
        oracle_stop(np.zeros((3, 5), int), np.zeros((3, 5), bool), np.ones(5, int), np.ones(5))
    with pytest.raises(ValueError, match="segment ids"):
        oracle_stop(np.full((2, 5), 7), np.zeros((1, 5), bool), np.ones(5, int), np.ones(5))


# ------------------------------------------------------------------ GNN figures


def test_compactness_smaller_for_separated_clusters():
    rng = np.random.default_rng(0)
    pid = np.repeat(np.arange(1, 31), 8)
    noise = rng.normal(size=(len(pid), 6))
    apart = rng.normal(size=(31, 6)) * 50.0
    separated = compactness(apart[pid] + noise, pid)
    mixed = compactness(noise, pid)
    assert len(separated) == len(mixed) == 30
    assert np.median(separated) < 0.2
    assert np.median(mixed) > 0.8
    assert np.quantile(separated, 0.9) < np.quantile(mixed, 0.9)
    # noise hits are not "other particles": adding them far away changes nothing
    pid_n = np.r_[pid, np.zeros(5, int)]
    pts_n = np.r_[apart[pid] + noise, rng.normal(size=(5, 6)) * 1e4]
    np.testing.assert_allclose(compactness(pts_n, pid_n), separated)
    # one-hit particles are left out
    assert len(compactness(np.r_[noise, [[0.0] * 6]], np.r_[pid, 99])) == 30


def test_principal_tree_ceiling_higher_for_separated_clusters():
    rng = np.random.default_rng(1)
    pid = np.repeat(np.arange(1, 31), 8)
    weight = np.ones(len(pid))
    noise = rng.normal(size=(len(pid), 4)).astype(np.float32)
    apart = rng.normal(size=(31, 4)).astype(np.float32) * 50.0
    ceilings = []
    for pts in (apart[pid] + noise, noise):
        tree = principal_tree(pts, max_depth=16, min_size=3)
        assert tree["segment"].shape == (17, len(pid))
        assert np.bincount(tree["cluster"]).max() < 3  # split down to the smallest clusters
        ceilings.append(oracle_stop(tree["segment"], tree["active"], pid, weight)[0])
    assert ceilings[0] > 0.9
    assert ceilings[1] < 0.5


def test_roc_auc_and_edge_cut():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    s = np.round(rng.random(500) + 0.5 * y, 1)  # ties
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(roc_auc(s, np.ones(500, bool)))
    q = edge_efficiency_purity(np.array([0.9, 0.2, 0.7, 0.6]), np.array([1, 1, 0, 1]), 0.5)
    assert q == {"efficiency": pytest.approx(2 / 3), "purity": pytest.approx(2 / 3)}


def test_largest_drop_names_the_stage():
    chain = dict(zip([k for k, _ in CHAIN], [1.0, 0.9, 0.8, 0.3, 0.25], strict=True))
    d = largest_drop(chain)
    assert d["stage"] == DROPS[2] and d["drop"] == pytest.approx(0.5)
    assert "oracle-Stop" in summary_line(chain)
    chain["pipeline"] = float("nan")
    assert largest_drop(chain)["stage"] == DROPS[2]


# ------------------------------------------------------------------ the script


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / "diagnose.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_script_prints_and_writes_json(tmp_path):
    out = tmp_path / "sub" / "d.json"
    p = _run("--events=1", "--fraction=0.02", "--seed=7", f"--json_out={out}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "largest drop:" in p.stdout and "oracle-Stop" in p.stdout
    rep = json.loads(out.read_text())
    assert not list(out.parent.glob("*.tmp*"))  # atomic write left nothing behind
    assert rep["simulated"]["fraction"] == 0.02 and len(rep["events"]) == 1
    ev, mean = rep["events"][0], rep["mean"]
    for g in ("embedding", "refined"):
        for k in ("purity", "recall_consecutive", "ceiling"):
            assert 0.0 <= ev[g][k] <= 1.0, (g, k)
        assert ev[g]["edges_per_hit"] > 0
    for k in ("auc_mean_layers", "auc_last_layer", "efficiency_last", "components_score"):
        assert 0.0 <= ev["gnn"][k] <= 1.0, k
    assert ev["gnn"]["compactness_median"] <= ev["gnn"]["compactness_q90"]
    for k in ("oracle_stop_ceiling", "principal_tree_gnn_ceiling", "stop_actual", "pipeline"):
        assert 0.0 <= ev["clustering"][k] <= 1.0 + 1e-9, k
    c = ev["chain"]
    assert c["perfect"] == pytest.approx(1.0)
    for k, _ in CHAIN:
        assert 0.0 <= c[k] <= 1.0 + 1e-9, k
    # the pipeline's tree is a pruning of the full Split tree
    assert c["oracle_stop_ceiling"] >= ev["clustering"]["stop_actual"] - 1e-9
    assert mean["chain"]["pipeline"] == pytest.approx(c["pipeline"])
    assert rep["largest_drop"]["stage"] in DROPS
    # the cluster-space references: Stop's cut, Stop off, DBSCAN at the tuned eps, HDBSCAN
    q, tuning = ev["clustering"], rep["dbscan_tuning"]
    for k in ("stop_off", "stop_off_tree", "dbscan_latent", "hdbscan_latent"):
        assert 0.0 <= q[k] <= 1.0 + 1e-9, k
    assert tuning["seed"] == 98 and tuning["events"] == 1
    assert q["dbscan_eps"] == tuning["eps"] == tuning["grid"][int(np.argmax(tuning["scores"]))]
    assert "Stop off" in p.stdout and "DBSCAN eps in the cluster space" in p.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data=/nonexistent/diag"], "/nonexistent/diag"),
        (["--events=0"], "--events"),
        (["--fraction=1.5"], "--fraction"),
        (["--tune_events=-1"], "--tune_events"),
        (["--checkpoint=/nonexistent/ckpt"], "/nonexistent/ckpt"),
    ],
)
def test_script_bad_input_is_one_error_line(args, words):
    p = _run(*args)
    assert p.returncode == 1
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert err[-1].startswith("error:") and words in err[-1], p.stderr
    assert "Traceback" not in p.stderr


# ------------------------------------------------------------------ cluster-space references


def _with_stop_cut(pipe, cut: float):
    """``pipe`` with Stop's calibrated cut replaced (what :attr:`Pipeline.stage3` reads)."""
    import dataclasses

    meta = {**pipe.meta, "learned": {**pipe.learned, "stop_threshold": cut}}
    return dataclasses.replace(pipe, meta=meta)


@pytest.fixture(scope="module")
def references():
    """The shipped model on a 2 %-track event (its sparse variant) at Stop's cut 1 and at a cut
    every vote exceeds: ``(pipe, event, row at cut 1, row at cut -1)``."""
    from cgnn_jax.analysis.diagnose import diagnose_event
    from cgnn_jax.inference import Pipeline

    pipe = Pipeline.restore()
    ev = simulate_event(11, 200.0, track_fraction=0.02, event_id=4)
    assert pipe.for_hits(len(ev.hits)) is pipe  # below the dense variant's cut
    at_one = diagnose_event(_with_stop_cut(pipe, 1.0), ev, dbscan_eps=0.2)
    stop_all = diagnose_event(_with_stop_cut(pipe, -1.0), ev, dbscan_eps=0.2, hdbscan_max_hits=0)
    return pipe, ev, at_one["clustering"], stop_all["clustering"]


def test_references_are_scores_and_stop_off_is_the_pipeline_at_a_cut_of_one(references):
    from cgnn_jax.baselines.space import dbscan_space, hdbscan_space

    pipe, ev, q, _ = references
    for k in ("stop_off", "stop_off_tree", "dbscan_latent", "hdbscan_latent", "pipeline"):
        assert 0.0 <= q[k] <= 1.0 + 1e-9, k
    assert q["stop_threshold"] == 1.0
    # no vote exceeds 1: Stop decides nothing, so Stop off is the pipeline itself
    assert q["stop_off"] == pytest.approx(q["pipeline"], abs=1e-12)
    assert q["stop_off_tree"] == pytest.approx(q["stop_actual"], abs=1e-12)
    assert q["stop_off_tracks"] == q["tracks"]
    assert q["stop_off_tree"] > 0.5  # a real tree, not one cluster
    # the references are DBSCAN / HDBSCAN of the cluster space h the tree sees
    pid = ev.truth.set_index("hit_id").loc[ev.hits["hit_id"], "particle_id"].to_numpy()
    weight = ev.truth.set_index("hit_id").loc[ev.hits["hit_id"], "weight"].to_numpy()
    h = pipe.stage_outputs(ev, cluster=False)["h"]
    assert q["dbscan_eps"] == 0.2
    assert q["dbscan_latent"] == pytest.approx(score_labels(pid, dbscan_space(h, 0.2), weight))
    assert q["hdbscan_latent"] == pytest.approx(score_labels(pid, hdbscan_space(h, 3), weight))


def test_stop_off_ignores_a_stop_that_stops_everything(references):
    _, _, at_one, q = references
    assert q["stop_threshold"] == -1.0
    assert q["tracks"] == 1  # every vote exceeds the cut: the root is a leaf
    assert q["stop_actual"] < 0.05
    # Stop off does not depend on the cut: the same tree as at a cut of 1
    assert q["stop_off_tree"] == pytest.approx(at_one["stop_off_tree"], abs=1e-12)
    assert q["stop_off"] == pytest.approx(at_one["pipeline"], abs=1e-12)
    assert q["stop_off_tree"] > q["stop_actual"] + 0.5
    assert np.isnan(q["hdbscan_latent"])  # above hdbscan_max_hits = 0: skipped


def test_tune_dbscan_eps_picks_the_best_radius_of_the_grid(references):
    from cgnn_jax.analysis.diagnose import tune_dbscan_eps

    pipe, ev, _, _ = references
    t = tune_dbscan_eps(pipe, [ev], grid=(0.02, 0.2, 5.0))
    assert t["grid"] == [0.02, 0.2, 5.0] and t["events"] == 1 and len(t["scores"]) == 3
    assert t["eps"] == 0.2  # tiny: singletons; huge: a few giant clusters
    assert t["scores"][1] > max(t["scores"][0], t["scores"][2])
    with pytest.raises(ValueError, match="no validation events"):
        tune_dbscan_eps(pipe, [])
