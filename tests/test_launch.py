"""The launch scripts end to end, as a user runs them: simulate -> dataset_stats -> reconstruct -> eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    if ok and p.returncode != 0:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    run("simulate.py", f"--out={out}", "--events=2", "--mu=5", "--seed=3", "--first_event=7")
    return out


def test_simulate_writes_trackml_files(dataset):
    names = sorted(p.name for p in dataset.iterdir())
    assert names == [
        f"event00000000{i}-{part}.csv"
        for i in (7, 8)
        for part in ("cells", "hits", "particles", "truth")
    ]


def test_dataset_stats_prints_and_writes_json(dataset, tmp_path):
    js = tmp_path / "stats.json"
    p = run("dataset_stats.py", f"--data={dataset}", f"--json_out={js}")
    assert "noise" in p.stdout and "hits per volume" in p.stdout
    rows = json.loads(js.read_text())
    assert [r["event_id"] for r in rows] == [7, 8]
    assert all(0.05 < r["noise_fraction"] < 0.2 for r in rows)


def test_reconstruct_then_eval(dataset, tmp_path):
    sub = tmp_path / "sub.csv.gz"
    run("reconstruct.py", f"--data={dataset}", "--method=dbscan", f"--out={sub}", "--workers=2")
    df = pd.read_csv(sub)
    assert list(df.columns) == ["event_id", "hit_id", "track_id"]
    assert sorted(df.event_id.unique()) == [7, 8]
    js = tmp_path / "eval.json"
    p = run("eval.py", f"--data={dataset}", f"--submission={sub}", f"--json_out={js}")
    assert "mean" in p.stdout
    report = json.loads(js.read_text())
    assert report  # per-event scores present
    text = js.read_text()
    assert '"score"' in text


def test_eval_rejects_submission_of_other_event(dataset, tmp_path):
    sub = tmp_path / "bad.csv"
    pd.DataFrame({"event_id": [999], "hit_id": [1], "track_id": [1]}).to_csv(sub, index=False)
    p = run("eval.py", f"--data={dataset}", f"--submission={sub}", ok=False)
    assert p.returncode != 0
    assert "999" in (p.stdout + p.stderr) or "event" in (p.stdout + p.stderr)


def test_reconstruct_rejects_unknown_method(dataset, tmp_path):
    p = run(
        "reconstruct.py",
        f"--data={dataset}",
        "--method=nope",
        f"--out={tmp_path / 's.csv'}",
        ok=False,
    )
    assert p.returncode != 0
    assert "dbscan" in p.stderr + p.stdout
    assert not (tmp_path / "s.csv").exists()


def test_dataset_stats_missing_data_is_a_clear_error(tmp_path):
    p = run("dataset_stats.py", f"--data={tmp_path / 'nothing'}", ok=False)
    assert p.returncode != 0
    assert "nothing" in p.stderr + p.stdout


def test_analysis_scripts_default_to_the_shipped_model(dataset, tmp_path):
    """graph_quality.py and gnn_quality.py look inside the shipped model with no --checkpoint."""
    js = tmp_path / "graph.json"
    p = run("graph_quality.py", f"--data={dataset}", f"--json_out={js}")
    # the shipped stage 1's first graph: the module map's candidates (the kNN builder: embedding)
    assert "candidates" in p.stdout and "refined" in p.stdout
    rows = json.loads(js.read_text())["per_event"]
    assert {r["graph"] for r in rows} == {"all pairs", "candidates", "refined"}
    assert all(0 <= r["purity"] <= 1 for r in rows)
    p = run("gnn_quality.py", f"--data={dataset}")
    assert "stage1" in p.stdout and "gnn" in p.stdout
