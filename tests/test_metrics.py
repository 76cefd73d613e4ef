"""Tests of cgnn_jax.metrics against slow, literal implementations of the definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.metrics import (
    ORDER_MATRIX,
    analyze_tracks,
    compute_weights,
    edge_purity_recall,
    hit_order,
    score_event,
    track_efficiency,
    weight_pt,
)

# --------------------------------------------------------------------------- helpers


def make_event(
    seed: int, n_particles: int = 30, n_noise: int = 25
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small synthetic event: ``(truth with weights, particles)``.

    Particles get 1..16 hits (some below 4), TrackML-like large ids, a vertex, and a
    momentum spanning the p_T weight ramp; hits get shuffled ids and positions ``t*`` along
    straight lines from the vertex.  A few hits repeat their |tz - vz| to exercise ties.
    """
    rng = np.random.default_rng(seed)
    pids = rng.choice(np.arange(1, 10**6), size=n_particles, replace=False).astype(np.int64)
    pids = pids * np.int64(4_503_599_627)  # large, like real particle ids
    pt = rng.uniform(0.02, 6.0, n_particles)
    phi = rng.uniform(-np.pi, np.pi, n_particles)
    eta = rng.uniform(-3.5, 3.5, n_particles)
    particles = pd.DataFrame(
        {
            "particle_id": pids,
            "vx": rng.normal(0, 0.01, n_particles).astype(np.float32),
            "vy": rng.normal(0, 0.01, n_particles).astype(np.float32),
            "vz": rng.normal(0, 5.0, n_particles).astype(np.float32),
            "px": (pt * np.cos(phi)).astype(np.float32),
            "py": (pt * np.sin(phi)).astype(np.float32),
            "pz": (pt * np.sinh(eta)).astype(np.float32),
            "q": rng.choice([-1, 1], n_particles).astype(np.int32),
        }
    )
    nhits = rng.integers(1, 17, n_particles)
    nhits[:3] = [1, 2, 3]  # make sure short particles exist
    nhits[3] = 25  # and one longer than the order matrix
    rows = []
    for i in range(n_particles):
        s = np.sort(rng.uniform(30, 1000, nhits[i]))
        if nhits[i] >= 6 and i % 4 == 0:
            s[2] = s[3]  # a tie in |tz - vz|
        d = np.array([np.cos(phi[i]), np.sin(phi[i]), np.sinh(eta[i])])
        d /= np.linalg.norm(d)
        pos = particles.loc[i, ["vx", "vy", "vz"]].to_numpy(np.float64) + s[:, None] * d
        for k in range(nhits[i]):
            rows.append((pids[i], *pos[k]))
    for _ in range(n_noise):
        rows.append((0, *rng.uniform(-1000, 1000, 3)))
    arr = np.array(rows, dtype=object)
    n = len(arr)
    truth = pd.DataFrame(
        {
            "hit_id": rng.permutation(np.arange(1, n + 1)).astype(np.int32),
            "particle_id": arr[:, 0].astype(np.int64),
            "tx": arr[:, 1].astype(np.float32),
            "ty": arr[:, 2].astype(np.float32),
            "tz": arr[:, 3].astype(np.float32),
        }
    )
    truth = truth.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    counts = truth["particle_id"].value_counts()
    particles["nhits"] = particles["particle_id"].map(counts).fillna(0).astype(np.int32)
    truth["weight"] = compute_weights(truth, particles)
    return truth, particles


def perfect_submission(truth: pd.DataFrame) -> pd.DataFrame:
    """Every particle its own track, every noise hit a singleton track."""
    pid = truth["particle_id"].to_numpy()
    track = np.where(pid != 0, pid, -np.arange(1, len(pid) + 1))
    return pd.DataFrame({"hit_id": truth["hit_id"].to_numpy(), "track_id": track})


def perturbed_submission(truth: pd.DataFrame, p: float, seed: int) -> pd.DataFrame:
    """The perfect submission with each hit moved, with probability ``p``, to a random track
    (an existing one or one of a few new ones); rows shuffled."""
    rng = np.random.default_rng(seed)
    sub = perfect_submission(truth)
    track = sub["track_id"].to_numpy().copy()
    choices = np.r_[np.unique(track), 10**12 + np.arange(5)]
    move = rng.random(len(track)) < p
    track[move] = rng.choice(choices, move.sum())
    sub["track_id"] = track
    return sub.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def literal_score(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The TrackML score written out literally, one track at a time."""
    pid_of = dict(zip(truth["hit_id"].tolist(), truth["particle_id"].tolist(), strict=True))
    w_of = dict(zip(truth["hit_id"].tolist(), truth["weight"].tolist(), strict=True))
    particle_total: dict[int, int] = {}
    for p in truth["particle_id"].tolist():
        particle_total[p] = particle_total.get(p, 0) + 1
    tracks: dict[int, list[int]] = {}
    for h, t in zip(submission["hit_id"].tolist(), submission["track_id"].tolist(), strict=True):
        tracks.setdefault(t, []).append(h)
    score = 0.0
    for hits in tracks.values():
        counts: dict[int, int] = {}
        for h in hits:
            counts[pid_of[h]] = counts.get(pid_of[h], 0) + 1
        best = max(counts.values())
        major = min(p for p, c in counts.items() if c == best)
        if 2 * best > len(hits) and 2 * best > particle_total[major]:
            score += sum(w_of[h] for h in hits if pid_of[h] == major)
    return score / sum(w_of.values())


def literal_weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    """The phase-1 weights written out literally, one hit at a time (float64)."""
    proposal = [10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0]
    prow = {int(r.particle_id): r for r in particles.itertuples(index=False)}
    pids = truth["particle_id"].tolist()
    tz = truth["tz"].to_numpy()
    out = np.zeros(len(truth))
    for i, p in enumerate(pids):
        if p == 0 or p not in prow:
            continue
        mates = [j for j, q in enumerate(pids) if q == p]
        n = len(mates)
        if n < 4:
            continue
        vz = prow[p].vz
        d = {j: abs(tz[j] - vz) for j in mates}
        less = sum(1 for j in mates if d[j] < d[i])
        equal = sum(1 for j in mates if d[j] == d[i])
        ihit = int(less + (equal + 1) / 2 - 1)  # pandas average rank, minus 1, truncated
        if ihit >= 20:
            continue
        m = min(n, 20)
        # order weight: proposal stretched over m hits, interpolated, normalised to sum 1
        xs = [k * (m - 1) / 8 for k in range(9)]
        ws = []
        for x in range(m):
            for k in range(8):
                if xs[k] <= x <= xs[k + 1]:
                    f = (x - xs[k]) / (xs[k + 1] - xs[k])
                    ws.append(proposal[k] + f * (proposal[k + 1] - proposal[k]))
                    break
        w_order = ws[ihit] / sum(ws)
        pt = float(np.hypot(np.float64(prow[p].px), np.float64(prow[p].py)))
        if pt < 0.05:
            w_pt = 0.0
        elif pt <= 0.5:
            w_pt = 0.2
        elif pt < 3.0:
            w_pt = 0.2 + 0.8 * (pt - 0.5) / 2.5
        else:
            w_pt = 1.0
        out[i] = w_pt * w_order
    return out / out.sum()


# --------------------------------------------------------------------------- score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perfect_submission_scores_one(seed: int) -> None:
    truth, _ = make_event(seed)
    assert score_event(truth, perfect_submission(truth)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.8])
def test_random_reassignment_matches_literal(seed: int, p: float) -> None:
    truth, _ = make_event(seed)
    sub = perturbed_submission(truth, p, seed=100 + seed)
    got = score_event(truth, sub)
    want = literal_score(truth, sub)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    tracks = analyze_tracks(truth, sub)
    assert tracks["major_weight"][tracks["good"]].sum() == pytest.approx(got, rel=1e-9, abs=1e-12)
    assert tracks["nhits"].sum() == len(truth)
    assert tracks["track_id"].is_monotonic_increasing


def test_literal_score_is_not_trivial() -> None:
    truth, _ = make_event(5)
    scores = [score_event(truth, perturbed_submission(truth, p, 7)) for p in (0.1, 0.4, 0.8)]
    assert 1.0 > scores[0] > scores[1] > scores[2] >= 0.0


def _truth(pids: list[int], weights: list[float] | None = None) -> pd.DataFrame:
    n = len(pids)
    return pd.DataFrame(
        {
            "hit_id": np.arange(1, n + 1),
            "particle_id": np.asarray(pids, dtype=np.int64),
            "weight": np.asarray(weights if weights is not None else [1.0] * n),
        }
    )


def _sub(tracks: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"hit_id": np.arange(1, len(tracks) + 1), "track_id": tracks})


def test_majority_tie_goes_to_smaller_particle_id() -> None:
    # Track 7 holds two hits each of particles 5 and 3 (5's first) plus one noise hit.
    truth = _truth([5, 5, 3, 3, 0, 5, 3])
    tracks = analyze_tracks(truth, _sub([7, 7, 7, 7, 7, 8, 9]))
    row = tracks.set_index("track_id").loc[7]
    assert row["major_particle_id"] == 3
    assert row["major_nhits"] == 2
    assert row["major_particle_nhits"] == 3
    assert not row["good"]
    # Track 1 holds two hits of particle 9 and two of 4: the tie goes to 4 and the track,
    # holding 2 of 4's 3 hits but only half of its own, is not good.
    truth = _truth([9, 9, 4, 4, 4, 9])
    tracks = analyze_tracks(truth, _sub([1, 1, 1, 1, 2, 3])).set_index("track_id")
    assert tracks.loc[1, "major_particle_id"] == 4
    assert not tracks.loc[1, "good"]


def test_noise_hits() -> None:
    # Particle 1: 4 hits weighing 1 each; noise hits weigh 0.
    pids = [1, 1, 1, 1, 0, 0, 0, 0]
    truth = _truth(pids, [1, 1, 1, 1, 0, 0, 0, 0])
    # A track of only noise scores 0 (its majority "particle" 0 weighs nothing).
    assert score_event(truth, _sub([1, 2, 3, 4, 9, 9, 9, 9])) == 0.0
    # Noise added to a good track leaves its weight alone ...
    assert score_event(truth, _sub([1, 1, 1, 1, 1, 1, 1, 2])) == 1.0
    tracks = analyze_tracks(truth, _sub([1, 1, 1, 1, 1, 1, 1, 2])).set_index("track_id")
    assert tracks.loc[1, "nhits"] == 7 and tracks.loc[1, "major_nhits"] == 4
    # ... but changes the fractions: 4 of 8 is not a majority.
    assert score_event(truth, _sub([1] * 8)) == 0.0


def test_split_track_scores_majority_part_only() -> None:
    truth = _truth([1] * 5 + [2] * 3, [0.1, 0.2, 0.3, 0.2, 0.2, 1, 1, 1])
    # particle 1 split 3 + 2: the 3-hit part is good (3/5 > 1/2) and scores 0.6 / 3.8.
    s = score_event(truth, _sub([1, 1, 1, 2, 2, 3, 3, 3]))
    assert s == pytest.approx((0.1 + 0.2 + 0.3 + 3.0) / 4.0)


def test_errors() -> None:
    truth = _truth([1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"misses 1 of the truth's 4 hits: hit_id\(s\) \[4\]"):
        score_event(truth, pd.DataFrame({"hit_id": [1, 2, 3], "track_id": [1, 1, 2]}))
    with pytest.raises(ValueError, match=r"more than once: \[2\]"):
        score_event(truth, pd.DataFrame({"hit_id": [1, 2, 2, 3, 4], "track_id": [1] * 5}))
    with pytest.raises(ValueError, match=r"absent from the truth: \[99\]"):
        score_event(truth, pd.DataFrame({"hit_id": [1, 2, 3, 99], "track_id": [1] * 4}))
    with pytest.raises(ValueError, match="lacks column"):
        score_event(truth, pd.DataFrame({"hit_id": [1, 2, 3, 4]}))
    with pytest.raises(ValueError, match="lacks column"):
        score_event(truth.drop(columns="weight"), _sub([1, 1, 2, 2]))
    with pytest.raises(ValueError, match="non-integer"):
        score_event(truth, pd.DataFrame({"hit_id": [1, 2, 3, 4], "track_id": [1, 1, np.nan, 2]}))
    sub = _sub([1, 1, 2, 2]).assign(event_id=1000)
    assert score_event(truth, sub, event_id=1000) == 1.0
    assert score_event(truth, sub) == 1.0
    with pytest.raises(ValueError, match=r"event_id\(s\) \[1000\]"):
        score_event(truth, sub, event_id=1001)
    with pytest.raises(ValueError, match="several events"):
        score_event(truth, sub.assign(event_id=[1000, 1000, 1001, 1001]))


# --------------------------------------------------------------------------- weights


def test_weight_pt_values() -> None:
    np.testing.assert_allclose(weight_pt(np.array([0.3, 1.75, 5.0])), [0.2, 0.6, 1.0])
    np.testing.assert_allclose(weight_pt(np.array([0.5, 3.0, 100.0, 0.01])), [0.2, 1.0, 1.0, 0])


def test_order_matrix() -> None:
    np.testing.assert_allclose(ORDER_MATRIX[4:].sum(axis=1), 1.0)
    assert np.all(ORDER_MATRIX[:4] == 0)
    # 9 hits: the proposal itself, normalised.
    proposal = np.array([10, 8, 6, 5, 3, 3, 3, 5, 6], dtype=float)
    np.testing.assert_allclose(ORDER_MATRIX[9, :9], proposal / proposal.sum())


def test_hit_order_average_ranks() -> None:
    pid = np.array([1, 1, 1, 1, 2, 2, 1])
    d = np.array([5.0, 1.0, 3.0, 3.0, 2.0, 1.0, 3.0])
    # particle 1: 1.0 -> 0; three 3.0s share rank 3 -> 2; 5.0 -> 4. particle 2: 1, 0.
    np.testing.assert_array_equal(hit_order(pid, d), [4, 0, 2, 2, 1, 0, 2])
    # Two tied at positions 1, 2 share rank 2.5 -> int(1.5) = 1.
    np.testing.assert_array_equal(hit_order(np.ones(3, int), np.array([0.0, 1.0, 1.0])), [0, 1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_properties_and_literal(seed: int) -> None:
    truth, particles = make_event(seed)
    w = compute_weights(truth, particles)
    assert w.dtype == np.float32 and w.shape == (len(truth),)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(w >= 0)
    counts = truth["particle_id"].map(truth["particle_id"].value_counts()).to_numpy()
    assert np.all(w[truth["particle_id"].to_numpy() == 0] == 0)
    assert np.all(w[counts < 4] == 0)
    assert np.any(w[counts >= 4] > 0)
    np.testing.assert_allclose(w, literal_weights(truth, particles), rtol=1e-5, atol=1e-9)


def test_weights_particle_missing_from_table() -> None:
    truth, particles = make_event(4)
    w = compute_weights(truth, particles.iloc[1:])
    missing = particles["particle_id"].iloc[0]
    assert np.all(w[truth["particle_id"].to_numpy() == missing] == 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="repeats particle_id"):
        compute_weights(truth, pd.concat([particles, particles.iloc[:1]]))


# --------------------------------------------------------------------------- edges


def test_edge_purity_recall_hand_case() -> None:
    pid = np.array([1, 1, 1, 2, 2, 0, 0])
    senders = np.array([0, 0, 1, 0, 3, 5, 0])
    receivers = np.array([1, 1, 0, 0, 4, 6, 3])
    out = edge_purity_recall(senders, receivers, pid)
    # true: 0->1 (twice), 1->0, 3->4; not: self-loop 0->0, noise 5->6, 0->3.
    assert out["n_edges"] == 7
    assert out["n_true_edges"] == 4
    assert out["n_true_distinct"] == 3
    assert out["n_true_total"] == 3 * 2 + 2 * 1
    assert out["purity"] == pytest.approx(4 / 7)
    assert out["recall"] == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="outside"):
        edge_purity_recall(np.array([0]), np.array([7]), pid)


def test_edge_full_graph_recall_one() -> None:
    pid = np.array([3, 3, 3, 0, 7, 7])
    s, r = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    out = edge_purity_recall(s.ravel(), r.ravel(), pid)
    assert out["recall"] == 1.0
    assert out["n_true_edges"] == 8


# --------------------------------------------------------------------------- efficiency


@pytest.mark.parametrize("seed", [0, 1])
def test_efficiency_perfect(seed: int) -> None:
    truth, particles = make_event(seed, n_particles=60)
    res = track_efficiency(truth, particles, perfect_submission(truth))
    n_reco = int((truth.loc[truth.particle_id != 0, "particle_id"].value_counts() >= 4).sum())
    assert res.n_reconstructable == n_reco
    assert res.efficiency == 1.0 and res.fake_rate == 0.0
    for table in (res.efficiency_pt, res.efficiency_eta):
        populated = table[table["n"] > 0]
        assert len(populated) > 1
        assert np.all(populated["efficiency"] == 1.0)
        assert np.all(populated["error"] == 0.0)
        assert table.loc[table["n"] == 0, "efficiency"].isna().all()
    for table in (res.fake_rate_pt, res.fake_rate_eta):
        populated = table[table["n"] > 0]
        assert len(populated) > 1 and np.all(populated["efficiency"] == 0.0)
    assert res.efficiency_pt["n"].sum() == n_reco  # every p_T lies in [0, inf)


def test_efficiency_hand_case() -> None:
    # Particle 1 (6 hits) found; particle 2 (4 hits) split 2 + 2; particle 3 (2 hits) is
    # not reconstructable; one fake 3-hit track of noise.
    pids = [1] * 6 + [2] * 4 + [3] * 2 + [0] * 3
    truth = pd.DataFrame(
        {
            "hit_id": np.arange(1, 16),
            "particle_id": pids,
            "tx": np.ones(15),
            "ty": np.zeros(15),
            "tz": np.zeros(15),
        }
    )
    particles = pd.DataFrame(
        {"particle_id": [1, 2, 3], "px": [0.7, 2.5, 1.0], "py": [0.0, 0.0, 0.0], "pz": [0, 0, 0]}
    )
    tracks = [1] * 6 + [2, 2, 3, 3] + [4, 4] + [5, 5, 5]
    sub = pd.DataFrame({"hit_id": np.arange(1, 16), "track_id": tracks})
    res = track_efficiency(truth, particles, sub)
    assert (res.n_reconstructable, res.n_matched) == (2, 1)
    assert res.efficiency == 0.5 and res.efficiency_error == pytest.approx(0.5 / np.sqrt(2))
    # tracks with >= 3 hits: 1 (matched) and 5 (noise, fake).
    assert (res.n_tracks, res.n_fake) == (2, 1)
    pt = res.efficiency_pt.set_index("bin_lo")
    assert pt.loc[0.5, "efficiency"] == 1.0 and pt.loc[2.0, "efficiency"] == 0.0
    # The noise track has no p_T; both tracks sit at η = 0.
    assert res.fake_rate_pt["n"].sum() == 1
    eta = res.fake_rate_eta.set_index("bin_lo")
    assert eta.loc[0.0, "n"] == 2 and eta.loc[0.0, "efficiency"] == 0.5


# --------------------------------------------------------------------------- evaluate


def test_evaluate_submission(tmp_path) -> None:
    pytest.importorskip("cgnn_jax.io.read")
    from cgnn_jax.io.schema import DTYPES, event_prefix
    from cgnn_jax.metrics import evaluate_submission

    subs = []
    for k, eid in enumerate([1000, 1001]):
        truth, particles = make_event(k)
        truth = truth.assign(tpx=0.0, tpy=0.0, tpz=0.0)
        pre = tmp_path / event_prefix(eid)
        hits = truth[["hit_id", "tx", "ty", "tz"]].rename(columns={"tx": "x", "ty": "y", "tz": "z"})
        hits.assign(volume_id=8, layer_id=2, module_id=1).to_csv(f"{pre}-hits.csv", index=False)
        truth[list(DTYPES["truth"])].to_csv(f"{pre}-truth.csv", index=False)
        particles[list(DTYPES["particles"])].to_csv(f"{pre}-particles.csv", index=False)
        sub = perfect_submission(truth) if k == 0 else perturbed_submission(truth, 0.3, 1)
        subs.append(sub.assign(event_id=eid))
        if k == 1:
            want = literal_score(truth, sub)
    sub = pd.concat(subs, ignore_index=True)
    res = evaluate_submission(tmp_path, sub)
    assert res["event_id"].tolist() == [1000, 1001]
    assert res["score"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert res["score"].iloc[1] == pytest.approx(want, rel=1e-5)
    assert res["efficiency"].iloc[0] == 1.0 and res["fake_rate"].iloc[0] == 0.0
    with pytest.raises(ValueError, match=r"lacks 1 event\(s\) of the data: \[1001\]"):
        evaluate_submission(tmp_path, sub[sub.event_id == 1000])
    with pytest.raises(ValueError, match=r"not in the data: \[7\]"):
        evaluate_submission(tmp_path, pd.concat([sub, sub.iloc[:1].assign(event_id=7)]))
