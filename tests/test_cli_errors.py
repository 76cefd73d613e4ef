"""The launch scripts as a user meets them on bad input: one clear line, no traceback, a non-zero
exit, nothing half-written or left behind; and resumable reconstruction that never mixes runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar line


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The scripts' environment: a compilation cache of this test module only (not ~/.cache)."""
    e = dict(os.environ)
    e["CGNN_JAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))
    e.pop("CGNN_DEBUG", None)
    return e


def run(env, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=env,
    )


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


def simulate(env, out: Path, seed: int) -> Path:
    ok(
        run(
            env,
            "simulate.py",
            f"--out={out}",
            "--events=2",
            "--mu=5",
            f"--seed={seed}",
            "--first_event=7",
        )
    )
    return out


@pytest.fixture(scope="module")
def data_a(env, tmp_path_factory):
    return simulate(env, tmp_path_factory.mktemp("a") / "data", seed=3)


@pytest.fixture(scope="module")
def data_b(env, tmp_path_factory):
    return simulate(env, tmp_path_factory.mktemp("b") / "data", seed=4)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def assert_user_error(p: subprocess.CompletedProcess, *named: str) -> None:
    """Non-zero exit, no traceback, one message line (absl adds its help hint to flag errors;
    a progress bar drawn before the failing event may stand above it)."""
    err = p.stderr
    assert p.returncode != 0, f"exit 0 on bad input:\n{p.stdout}\n{err}"
    assert "Traceback" not in err, err
    lines = [
        ln
        for ln in err.replace("\r", "\n").splitlines()
        if ln.strip() and not ln.startswith("Pass --helpshort") and not PROGRESS.search(ln)
    ]
    assert len(lines) == 1, err
    assert lines[0].startswith(("error: ", "FATAL Flags parsing error")), err
    for thing in named:
        assert thing in lines[0], (thing, err)


def break_event(data: Path, event_id: int) -> bytes:
    """Truncate one event's hits file mid-line, after a row's first field (as an interrupted copy
    would); returns the bytes."""
    f = data / f"event{event_id:09d}-hits.csv"
    raw = f.read_bytes()
    start = raw.index(b"\n", len(raw) // 2) + 1
    f.write_bytes(raw[: raw.index(b",", start) + 1])
    return raw


# ----------------------------------------------------------------- runs never mix


def test_interrupted_run_on_other_data_is_never_reused(env, data_a, data_b, tmp_path):
    """Stop a run on dataset A after one event, run on B with the same --out: B's submission
    is B's alone (it used to contain A's tracks for the event A had finished)."""
    a = shutil.copytree(data_a, tmp_path / "a")
    out = tmp_path / "sub.csv"
    raw = break_event(a, 8)  # A's run stops at its second event, after saving the first
    p = run(env, "reconstruct.py", f"--data={a}", f"--out={out}")
    assert_user_error(p, "event000000008-hits.csv")
    assert not out.exists()
    (part_a,) = Path(f"{out}.parts").rglob("event000000007-*.csv.gz")  # A's part is kept
    sub_a = pd.read_csv(part_a)
    (a / "event000000008-hits.csv").write_bytes(raw)

    ok(run(env, "reconstruct.py", f"--data={data_b}", f"--out={out}"))
    got = pd.read_csv(out)
    for eid in (7, 8):
        hits_b = pd.read_csv(data_b / f"event{eid:09d}-hits.csv")
        assert got[got.event_id == eid].hit_id.tolist() == hits_b.hit_id.tolist()
    got7 = got[got.event_id == 7].reset_index(drop=True)
    assert len(sub_a) != len(got7) or not sub_a.equals(got7)  # not A's tracks
    assert not Path(f"{out}.parts").exists()  # finished: no parts left behind


def test_interrupted_run_with_other_options_is_never_reused(env, data_a, tmp_path):
    from cgnn_jax.inference import reconstruct_dataset

    a = shutil.copytree(data_a, tmp_path / "a")
    out = tmp_path / "sub.csv"
    raw = break_event(a, 8)
    p = run(env, "reconstruct.py", f"--data={a}", "--method=dbscan", "--eps=0.001", f"--out={out}")
    assert_user_error(p)
    (a / "event000000008-hits.csv").write_bytes(raw)
    ok(run(env, "reconstruct.py", f"--data={a}", "--method=dbscan", f"--out={out}"))
    want = reconstruct_dataset(a, "dbscan", progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(out), want, check_dtype=False)


def test_same_run_resumes_from_its_parts(data_a, tmp_path):
    """A re-run of the same method on the same files reuses the parts it finds (none recomputed)."""
    from cgnn_jax.inference import part_store, reconstruct_dataset

    parts = tmp_path / "parts"
    first = reconstruct_dataset(data_a, "dbscan", progress=False, parts_dir=parts)
    store = part_store(parts, "dbscan", {})
    made = sorted(store.dir.glob("event*.csv.gz"))
    assert len(made) == 2
    mtimes = [p.stat().st_mtime_ns for p in made]
    again = reconstruct_dataset(data_a, "dbscan", progress=False, parts_dir=parts)
    pd.testing.assert_frame_equal(first, again)
    assert [p.stat().st_mtime_ns for p in made] == mtimes
    store.finish()
    assert not parts.exists()


def test_model_fingerprint_follows_the_checkpoint_files(tmp_path):
    """Parts made by one checkpoint are never taken for another's: the run key hashes its files."""
    from cgnn_jax.inference import PRETRAINED_DIR, PipelineMethod

    copy = shutil.copytree(PRETRAINED_DIR, tmp_path / "model")
    assert PipelineMethod(copy).run_key()["model"] == PipelineMethod(None).run_key()["model"]
    f = next(p for p in sorted(copy.rglob("*")) if p.is_file() and p.stat().st_size > 0)
    f.write_bytes(f.read_bytes() + b" ")
    assert PipelineMethod(copy).run_key()["model"] != PipelineMethod(None).run_key()["model"]


def test_empty_dataset_never_replaces_the_output(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "sub.csv"
    out.write_text("event_id,hit_id,track_id\n1,1,1\n")
    for method in ("dbscan", "cgnn"):
        p = run(env, "reconstruct.py", f"--data={empty}", f"--method={method}", f"--out={out}")
        assert_user_error(p, "no events", str(empty))
        assert out.read_text() == "event_id,hit_id,track_id\n1,1,1\n"
        assert sorted(x.name for x in tmp_path.iterdir()) == ["empty", "sub.csv"]


# ----------------------------------------------------------------- one line per user error


def test_user_errors_are_one_line_and_leave_nothing(env, data_a, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    a_file = work / "plain_file"
    a_file.write_text("x")
    a_dir = work / "a_folder"
    a_dir.mkdir()
    broken = shutil.copytree(data_a, work / "broken")
    break_event(broken, 7)
    bad_ckpt = work / "ckpt"
    bad_ckpt.mkdir()
    (bad_ckpt / "meta").write_text("{not json")
    before = snapshot(work)
    cases = [
        # bad flag values
        (("simulate.py", f"--out={work / 'x'}", "--track_fraction=2"), ["track_fraction"]),
        (("simulate.py", f"--out={work / 'x'}", "--cluster_model=blob"), ["cluster_model", "blob"]),
        (("eval.py", "--vertex_sigma_z=wide"), ["vertex_sigma_z", "wide"]),
        (("embedding_proxy.py", f"--workdir={work / 'p'}", "--k=16,0"), ["--k"]),
        (
            ("reconstruct.py", f"--data={data_a}", "--method=nope", f"--out={work / 's.csv'}"),
            ["nope"],
        ),
        # missing or bad data
        (("dataset_stats.py", f"--data={work / 'missing'}"), ["missing"]),
        (
            ("reconstruct.py", f"--data={broken}", "--method=dbscan", f"--out={work / 's.csv'}"),
            ["event000000007-hits.csv"],
        ),
        (("eval.py", f"--data={data_a}", f"--submission={work / 'missing.csv'}"), ["missing.csv"]),
        # unwritable or clashing output paths
        (("simulate.py", f"--out={a_file / 'sub'}", "--mu=3"), ["plain_file"]),
        (("reconstruct.py", f"--data={data_a}", "--method=dbscan", f"--out={a_dir}"), ["a_folder"]),
        # a damaged checkpoint
        (
            (
                "reconstruct.py",
                f"--data={data_a}",
                f"--checkpoint={bad_ckpt}",
                f"--out={work / 's.csv'}",
            ),
            ["ckpt"],
        ),
    ]
    with ThreadPoolExecutor(2) as pool:  # two processes at a time: the imports dominate
        done = list(pool.map(lambda c: run(env, *c[0]), cases))
    for (args, named), p in zip(cases, done, strict=True):
        try:
            assert_user_error(p, *named)
        except AssertionError as e:
            raise AssertionError(f"{args}: {e}") from None
    assert snapshot(work) == before, "a failed run left or changed files"
