"""Plots: efficiency / fake rate, event display, cluster tree view, and their launch scripts."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.figure
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection

from cgnn_jax.baselines import reconstruct_baseline
from cgnn_jax.cluster.recursion import unrolled_clustering
from cgnn_jax.cluster.tree import ClusterTree, build_tree, write_tree
from cgnn_jax.io import write_event, write_submission
from cgnn_jax.metrics.efficiency import combine_track_efficiency, track_efficiency
from cgnn_jax.sim import simulate_event
from cgnn_jax.viz import (
    default_levels,
    efficiency_by_method,
    parse_range,
    plot_efficiency,
    plot_event,
    plot_tree_region,
    region_mask,
    region_subtree,
    submission_track_ids,
)
from cgnn_jax.viz._common import hit_coordinates

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVENT_ID = 21


def _assert_png(path: Path, min_bytes: int = 20_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank canvas
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    assert not leftovers, f"temporary files left: {leftovers}"


def _truth_submission(truth: pd.DataFrame) -> pd.DataFrame:
    """A perfect submission: one track per particle, each noise hit alone."""
    pid = truth["particle_id"].to_numpy(np.int64)
    _, tid = np.unique(pid, return_inverse=True)
    noise = pid == 0
    tid = tid.astype(np.int64) + 1
    tid[noise] = tid.max() + 1 + np.arange(int(noise.sum()))
    return pd.DataFrame({"hit_id": truth["hit_id"].to_numpy(), "track_id": tid})


def _sub(hits: pd.DataFrame, tracks: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"hit_id": hits["hit_id"].to_numpy(), "track_id": tracks})


def _make_tree(event, depth: int = 10) -> ClusterTree:
    """A tree from hand-written Split/Stop: split at the widest of (φ, η) around the cluster
    mean; stop clusters holding a single particle (an oracle stop)."""
    c = hit_coordinates(event.hits)
    pid = event.truth.set_index("hit_id").loc[event.hits["hit_id"], "particle_id"].to_numpy()
    h = np.stack([c["phi"], c["eta"], (pid % 1_000_003).astype(np.float64)], 1)

    def stats(x, seg, mask, n):
        m = mask.astype(jnp.float32)[:, None]
        cnt = jnp.maximum(jax.ops.segment_sum(m[:, 0], seg, n), 1.0)[:, None]
        mean = jax.ops.segment_sum(x * m, seg, n) / cnt
        var = jax.ops.segment_sum((x - mean[seg]) ** 2 * m, seg, n) / cnt
        return mean, var

    def split_fn(x, seg, mask, n):
        mean, var = stats(x[:, :2], seg, mask, n)
        d = jnp.argmax(var, axis=1)[seg][:, None]
        v = jnp.take_along_axis(x[:, :2] - mean[seg], d, 1)[:, 0]
        return jax.nn.sigmoid(
            8.0 * v / (jnp.sqrt(jnp.take_along_axis(var[seg], d, 1)[:, 0]) + 1e-6)
        )

    def stop_fn(x, seg, mask, n):
        p = x[:, 2]
        pure = jax.ops.segment_max(jnp.where(mask, p, -1.0), seg, n) == jax.ops.segment_min(
            jnp.where(mask, p, 1e9), seg, n
        )
        return jnp.where(pure, 0.9, 0.2)

    out = unrolled_clustering(
        split_fn, stop_fn, jnp.asarray(h, jnp.float32), jnp.ones(len(h), bool), depth
    )
    return build_tree(out, event.hits["hit_id"].to_numpy(), event.event_id)


@pytest.fixture(scope="module")
def event():
    return simulate_event(seed=4, mu=10, event_id=EVENT_ID)


@pytest.fixture(scope="module")
def dbscan_tracks(event):
    return reconstruct_baseline(event.hits, "dbscan")


@pytest.fixture(scope="module")
def tree(event):
    return _make_tree(event)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, event, dbscan_tracks, tree):
    """A one-event dataset on disk, its dbscan submission, a submission of another event and
    the event's tree file."""
    root = tmp_path_factory.mktemp("viz")
    write_event(event, root / "data")
    sub = _sub(event.hits, dbscan_tracks).assign(event_id=EVENT_ID)
    write_submission(sub[["event_id", "hit_id", "track_id"]], root / "sub.csv")
    write_submission(sub.assign(event_id=EVENT_ID + 1), root / "other.csv")
    write_tree(tree, root / "trees" / f"event{EVENT_ID:09d}-tree.npz")
    return root


# --------------------------------------------------------------------------- efficiency


def test_combine_track_efficiency_pools_counts(event, dbscan_tracks):
    one = track_efficiency(event.truth, event.particles, _sub(event.hits, dbscan_tracks))
    two = combine_track_efficiency([one, one])
    assert two.n_reconstructable == 2 * one.n_reconstructable
    assert two.n_fake == 2 * one.n_fake
    assert two.efficiency == pytest.approx(one.efficiency)
    np.testing.assert_array_equal(two.efficiency_eta["n"], 2 * one.efficiency_eta["n"])
    np.testing.assert_allclose(two.efficiency_pt["error"], one.efficiency_pt["error"] / np.sqrt(2))
    other = track_efficiency(
        event.truth, event.particles, _sub(event.hits, dbscan_tracks), bins_pt=(0.0, 1.0, 9.0)
    )
    with pytest.raises(ValueError, match="bins differ"):
        combine_track_efficiency([one, other])
    with pytest.raises(ValueError, match="at least one"):
        combine_track_efficiency([])


def test_plot_efficiency_overlays_methods(tmp_path, event, dbscan_tracks):
    perfect = _truth_submission(event.truth)
    dbscan = _sub(event.hits, dbscan_tracks)
    methods = {
        "truth": [(event.truth, event.particles, perfect)],
        "dbscan": [(event.truth, event.particles, dbscan)] * 2,  # pooled over "two events"
    }
    effs = efficiency_by_method(methods)
    assert list(effs) == ["truth", "dbscan"]
    assert effs["truth"].efficiency == 1.0 and effs["truth"].fake_rate == 0.0
    assert effs["dbscan"].efficiency < 1.0
    # a precomputed TrackEfficiency and a single triple work too
    again = efficiency_by_method({"a": effs["dbscan"], "b": (event.truth, event.particles, dbscan)})
    assert again["a"] is effs["dbscan"]
    assert again["b"].efficiency == pytest.approx(effs["dbscan"].efficiency)
    assert again["b"].n_tracks * 2 == effs["dbscan"].n_tracks
    path = tmp_path / "sub" / "eff.png"  # the folder is created
    fig = plot_efficiency(methods, path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) >= 4
    _assert_png(path)


def test_failed_plots_keep_the_old_file(tmp_path, event, dbscan_tracks, tree, monkeypatch):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    short = _sub(event.hits, dbscan_tracks).iloc[:-5]  # misses hits
    with pytest.raises(ValueError, match="method 'bad', event #0"):
        plot_efficiency({"bad": [(event.truth, event.particles, short)]}, path)
    with pytest.raises(ValueError, match="no methods"):
        plot_efficiency({}, path)
    with pytest.raises(ValueError, match="shape"):
        plot_event(event.hits, dbscan_tracks[:-1], path)
    with pytest.raises(ValueError, match="no hits in the region"):
        plot_event(event.hits, dbscan_tracks, path, eta_range=(7.0, 8.0))
    with pytest.raises(ValueError, match="outside the tree"):
        plot_tree_region(tree, event.hits, (-1, 1, -1, 1), levels=(1, 99), path=path)
    with pytest.raises(ValueError, match="lacks"):
        plot_tree_region(tree, event.hits.assign(hit_id=event.hits.hit_id + 10**6), None, path=path)
    assert path.read_bytes() == b"old"

    # a failure while the PNG is being written (half a file out) leaves the old one too
    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_MAGIC + b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_event(event.hits, dbscan_tracks, path)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


# --------------------------------------------------------------------------- event display


def test_region_mask_and_ranges(event):
    c = hit_coordinates(event.hits)
    m = region_mask(c, (-1.0, 1.0), (0.0, 1.0))
    assert m.any() and np.all(np.abs(c["eta"][m]) < 1.0) and np.all(c["phi"][m] >= 0.0)
    wrap = region_mask(c, None, (3.0, -3.0))  # across ±π
    assert wrap.any() and np.all(np.abs(c["phi"][wrap]) >= 3.0)
    assert parse_range("0.5, 1", "eta") == (0.5, 1.0)
    assert parse_range(None, "eta") is None
    for bad in ("1", "a,b", "2,1"):
        with pytest.raises(ValueError):
            parse_range(bad, "eta")


def test_plot_event_track_truth_and_region(tmp_path, event, dbscan_tracks):
    p1 = plot_event(event.hits, dbscan_tracks, tmp_path / "track.png", event_id=EVENT_ID)
    assert len(p1.axes) == 2
    _assert_png(tmp_path / "track.png")
    plot_event(
        event.hits,
        None,
        tmp_path / "truth.png",
        truth=event.truth,
        eta_range=(0.0, 2.0),
        phi_range=(-1.0, 1.0),
    )
    _assert_png(tmp_path / "truth.png")
    fig = plot_event(event.hits)  # no colouring (all hits grey), no file
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="needs truth"):
        plot_event(event.hits, None, color_by="truth")


def _helix_hits(
    radius: float, slope: float, turned: np.ndarray, centre_phi: float = 0.3, vz: float = 0.0
) -> np.ndarray:
    """``[n, 3]`` points of a helix from the beam line (``x = y = 0``, ``z = vz``): circle radius
    ``radius`` (mm), ``dz / ds_T = slope``, at the turning angles ``turned`` (rad, in path order)."""
    cx, cy = radius * np.cos(centre_phi), radius * np.sin(centre_phi)
    a = centre_phi + np.pi + turned  # the beam line seen from the centre, then turning on
    return np.stack(
        [cx + radius * np.cos(a), cy + radius * np.sin(a), vz + slope * radius * turned], 1
    )


def _drawn_segments(fig) -> np.ndarray:
    """``[m, 2, 2]`` the segments drawn in the x–y view."""
    (lines,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    return np.asarray(lines.get_segments())


def test_event_display_joins_hits_along_the_helix():
    """A looper (back in towards the beam line after half a turn, barely moving in z), a
    two-turn looper moving along z, and a track from a displaced vertex: each hit is joined to
    its neighbours along the particle's path, not in order of distance from the origin (which
    runs out to r = 700 mm and back in, and back out, on the looper)."""
    from cgnn_jax.viz.event_display import helix_path

    tracks = {
        11: _helix_hits(350.0, 0.03, np.array([0.1, 0.3, 0.6, 1.0, 1.6, 2.4, 3.2, 4.0, 4.8, 5.6])),
        22: _helix_hits(300.0, 0.3, np.linspace(0.2, 4 * np.pi - 0.5, 14), centre_phi=2.0),
        33: _helix_hits(20_000.0, 0.4, np.linspace(0.0015, 0.05, 9), centre_phi=-1.0, vz=-180.0),
    }
    pid = np.concatenate([np.full(len(v), k) for k, v in tracks.items()])
    pos = np.concatenate(list(tracks.values()))
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(pid))  # hits in no particular order
    pid, pos = pid[rows], pos[rows]
    hits = pd.DataFrame({"hit_id": np.arange(1, len(pid) + 1), "x": pos[:, 0], "y": pos[:, 1]})
    hits["z"] = pos[:, 2]
    truth = pd.DataFrame({"hit_id": hits["hit_id"], "particle_id": pid})
    fig = plot_event(hits, truth=truth, color_by="truth", lines=True)
    drawn = {tuple(np.round(s, 6).ravel()) for s in _drawn_segments(fig)}
    want = set()
    for points in tracks.values():
        for a, b in itertools.pairwise(points):
            want.add(tuple(np.round(np.r_[a[:2], b[:2]], 6)))
    assert drawn == want
    # the key itself: increasing along each path
    key = helix_path(pos[:, 0], pos[:, 1], pos[:, 2], pid)
    for k, points in tracks.items():
        order = np.argsort(key[pid == k])
        np.testing.assert_allclose(pos[pid == k][order], points)
    # distance from the origin, the old key, runs out and back in on both loopers
    for k in (11, 22):
        by_distance = np.argsort(np.linalg.norm(tracks[k], axis=1))
        assert not np.array_equal(by_distance, np.arange(len(tracks[k])))


def test_submission_track_ids(event, dbscan_tracks):
    sub = _sub(event.hits, dbscan_tracks).assign(event_id=EVENT_ID)
    np.testing.assert_array_equal(
        submission_track_ids(sub.sample(frac=1.0, random_state=0), event.hits, EVENT_ID),
        dbscan_tracks,
    )
    with pytest.raises(ValueError, match=f"no rows of event {EVENT_ID}.*{EVENT_ID + 1}"):
        submission_track_ids(sub.assign(event_id=EVENT_ID + 1), event.hits, EVENT_ID)
    with pytest.raises(ValueError, match="does not match the event's hits"):
        submission_track_ids(sub.iloc[3:], event.hits, EVENT_ID)


# --------------------------------------------------------------------------- tree view


def test_region_subtree_layout(event, tree):
    c = hit_coordinates(event.hits)
    rows = np.flatnonzero(region_mask(c, (0.0, 1.0), (0.0, 1.0)))
    sub = region_subtree(tree, rows)
    ids = set(sub["node_id"])
    assert (sub["parent"] == -1).sum() == 1  # the root
    assert all(p in ids for p in sub["parent"] if p >= 0)  # closed under parents
    assert set(np.unique(tree.hit_node[rows, -1])) <= ids
    leaves_x = sub.loc[~sub["node_id"].isin(sub["parent"]), "x"].to_numpy()
    np.testing.assert_array_equal(np.sort(leaves_x), np.arange(len(leaves_x)))
    for pid, grp in sub[sub["parent"] >= 0].groupby("parent"):
        px = float(sub.loc[sub["node_id"] == pid, "x"].iloc[0])
        assert grp["x"].min() <= px <= grp["x"].max()
    assert default_levels(10) == (1, 2, 4, 8, 10)
    assert default_levels(3) == (1, 2, 3)


def test_plot_tree_region(tmp_path, event, tree):
    path = tmp_path / "tree.png"
    fig = plot_tree_region(tree, event.hits, (-1.0, 1.0, -1.5, 1.5), path=path)
    assert len(fig.axes) >= 2 * len(default_levels(tree.depth)) + 1
    _assert_png(path)
    # hits in another row order than the tree, one level, no r–z row
    shuffled = event.hits.sample(frac=1.0, random_state=1)
    fig = plot_tree_region(tree, shuffled, (0.0, 2.0, 0.0, 3.0), levels=[tree.depth], rz=False)
    assert len(fig.axes) >= 2


# --------------------------------------------------------------------------- launch scripts


def _run_all(*runs: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    """Run launch scripts ``(script, *args)`` concurrently, as a user runs them."""
    procs = [
        (
            [sys.executable, str(ROOT / "launch" / script), *args],
            subprocess.Popen(
                [sys.executable, str(ROOT / "launch" / script), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            ),
        )
        for script, *args in runs
    ]
    out = []
    for cmd, p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr))
    return out


def test_launch_display(dataset, tmp_path):
    data = f"--data={dataset / 'data'}"
    out = tmp_path / "display.png"
    old = tmp_path / "old.png"
    old.write_bytes(b"old")
    ok, bad, other = _run_all(
        (
            "display.py",
            data,
            f"--event={EVENT_ID}",
            f"--submission={dataset / 'sub.csv'}",
            "--eta=-2,2",
            "--phi=2.5,-2.5",
            f"--out={out}",
        ),
        ("display.py", data, "--event=999", "--color_by=truth", f"--out={old}"),
        ("display.py", data, f"--submission={dataset / 'other.csv'}", f"--out={old}"),
    )
    assert ok.returncode == 0, ok.stderr
    _assert_png(out)
    assert bad.returncode != 0
    assert "event 999" in bad.stderr and "Traceback" not in bad.stderr
    assert other.returncode != 0
    assert f"no rows of event {EVENT_ID}" in other.stderr and "Traceback" not in other.stderr
    assert old.read_bytes() == b"old"


def test_launch_tree(dataset, tmp_path):
    data = f"--data={dataset / 'data'}"
    trees = f"--tree_dir={dataset / 'trees'}"
    out = tmp_path / "tree.png"
    ok, bad = _run_all(
        ("tree.py", data, f"--event={EVENT_ID}", "--region=-1,1,-1.5,1.5", trees, f"--out={out}"),
        ("tree.py", data, "--event=999", "--region=-1,1,0,1", trees, f"--out={out}.bad"),
    )
    assert ok.returncode == 0, ok.stderr
    _assert_png(out)
    assert bad.returncode != 0
    assert "event 999" in bad.stderr and "Traceback" not in bad.stderr
    assert not Path(f"{out}.bad").exists()
