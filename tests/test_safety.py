"""Nothing a user has is overwritten, and every failure ends in one line: output paths that are or
lie inside an input, Ctrl-C at any moment, damaged checkpoints, and the remaining bad flags.

The launch scripts run as a user runs them (subprocesses) on tiny simulated events; the path
rules are also checked in-process (:func:`cgnn_jax.io.guard.check_outputs`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from cgnn_jax.inference import PRETRAINED_DIR, Pipeline
from cgnn_jax.inference.checkpoint import DamagedCheckpointError
from cgnn_jax.io import write_event
from cgnn_jax.io.guard import OutputPathError, check_outputs, pretrained_dir
from cgnn_jax.sim import simulate_event

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar update
HITS = "event000000007-hits.csv"
TRUTH = "event000000007-truth.csv"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["CGNN_JAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("CGNN_DEBUG", None)
    return e


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two small simulated events (ids 7, 8) with all their parts."""
    d = tmp_path_factory.mktemp("safety") / "data"
    d.mkdir()
    for i, eid in enumerate((7, 8)):
        write_event(simulate_event(seed=30 + i, mu=5, event_id=eid), d)
    return d


def command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch" / script), *args]


def run(env, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(script, *args), capture_output=True, text=True, cwd=ROOT, timeout=300, env=env
    )


def message_lines(stderr: str) -> list[str]:
    """stderr's lines without progress-bar updates and absl's help hint under flag errors."""
    lines = stderr.replace("\r", "\n").splitlines()
    return [
        ln
        for ln in lines
        if ln.strip() and not PROGRESS.search(ln) and not ln.startswith("Pass --helpshort")
    ]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ----------------------------------------------------------------- the path rules, in-process


def test_outputs_clashing_with_inputs_are_refused(data, tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(data / HITS, HITS)
    link = tmp_path / "link"
    link.symlink_to(data)
    folder = tmp_path / "folder"
    folder.mkdir()
    plain = tmp_path / "plain"
    plain.write_text("x")
    refused = [
        ({"--data": data}, {"--out": data / HITS}, {}, "lies inside the input --data"),
        ({"--data": data}, {"--out": data / "new.csv"}, {}, "lies inside the input --data"),
        ({"--data": data}, {"--out": data}, {}, "is a folder"),
        ({"--data": archive}, {"--out": archive}, {}, "is the input --data"),
        ({"--data": data / "event000000007"}, {"--out": data / TRUTH}, {}, "its file"),
        ({"--data": link}, {"--out": data / HITS}, {}, "lies inside the input --data"),
        ({"--data": data}, {"--out": link / HITS}, {}, "lies inside the input --data"),
        ({"--data": data}, {}, {"--tree_dir": data}, "is the input --data"),
        ({"--checkpoint": folder}, {"--json_out": folder / "r.json"}, {}, "--checkpoint"),
        ({"m": pretrained_dir()}, {"--out": pretrained_dir() / "x.csv"}, {}, "lies inside m"),
        ({}, {"--out": f"{tmp_path / 'newdir'}/"}, {}, "ends with a slash"),
        ({}, {"--out": folder}, {}, "is a folder"),
        ({}, {}, {"--plots_dir": plain}, "is a file"),
    ]
    for inputs, files, folders, message in refused:
        with pytest.raises(OutputPathError, match=re.escape(message)):
            check_outputs(inputs, files=files, folders=folders)
    with pytest.raises(OutputPathError, match="holds the input --workdir"):
        check_outputs({"--workdir": folder / "w"}, replaced={"--out": folder})
    # beside the inputs, not inside: fine
    check_outputs({"--data": data, "--checkpoint": folder}, files={"--out": tmp_path / "s.csv"})
    check_outputs({"--data": data / "event000000007"}, files={"--out": data.parent / "s.csv"})
    assert pretrained_dir() == PRETRAINED_DIR


# ----------------------------------------------------------------- every case, run as written


def test_each_case_is_one_line_and_changes_nothing(env, data, tmp_path):
    """The cases of the robustness page: non-zero exit, one line, no file changed or left."""
    work = tmp_path / "work"
    work.mkdir()
    d = shutil.copytree(data, work / "data")
    archive = work / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(d.iterdir()):
            z.write(f, f.name)
    (work / "empty").mkdir()
    sub = work / "sub.csv"
    hits = pd.read_csv(d / HITS)
    pd.DataFrame({"event_id": 7, "hit_id": hits.hit_id, "track_id": 1}).to_csv(sub, index=False)
    model = shutil.copytree(PRETRAINED_DIR, work / "model")
    state = model / "checkpoints" / "0" / "state"
    blob = max((p for p in state.rglob("*") if p.is_file()), key=os.path.getsize)
    raw = bytearray(blob.read_bytes())
    raw[1000:1008] = b"\x00\xff" * 4  # eight bytes overwritten, same size
    blob.write_bytes(bytes(raw))
    out = work / "out.csv"
    cases = [
        (("reconstruct.py", f"--data={d}", f"--out={d / HITS}", "--method=dbscan"), HITS),
        (("reconstruct.py", f"--data={d}", f"--out={d / TRUTH}"), TRUTH),
        (("reconstruct.py", f"--data={archive}", f"--out={archive}", "--method=dbscan"), "zip"),
        (
            ("eval.py", f"--data={d}", f"--submission={sub}", f"--json_out={d / TRUTH}"),
            "--json_out",
        ),
        (("eval.py", f"--data={work / 'empty'}"), "no events"),
        (("dataset_stats.py", f"--data={work / 'empty'}"), "no events"),
        (
            ("train.py", "--config=configs/test.py", "--config.xxx=1", f"--workdir={work / 'w'}"),
            "--config.xxx=1",
        ),
        (
            ("reconstruct.py", f"--data={d}", f"--out={out}", "--method=helix_dbscan", "--eps=-1"),
            "--eps",
        ),
        (
            ("reconstruct.py", f"--data={d}", f"--out={out}", "--method=helix_dbscan", "--eps=nan"),
            "--eps",
        ),
        (("reconstruct.py", f"--data={d}", f"--out={out}", "--method=dbscan", "--eps=0"), "--eps"),
        (
            ("reconstruct.py", f"--data={d}", f"--out={work / 'newdir'}/", "--method=dbscan"),
            "slash",
        ),
        (
            ("reconstruct.py", f"--data={d}", f"--out={out}", f"--checkpoint={model}"),
            blob.name,
        ),
    ]
    before = snapshot(work)
    with ThreadPoolExecutor(2) as pool:  # two processes at a time: the imports dominate
        done = list(pool.map(lambda c: run(env, *c[0]), cases))
    for (args, named), p in zip(cases, done, strict=True):
        lines = message_lines(p.stderr)
        where = f"{' '.join(args)}:\n{p.stderr}"
        assert p.returncode != 0, where
        assert len(lines) == 1 and "Traceback" not in p.stderr, where
        assert lines[0].startswith(("error: ", "FATAL Flags parsing error")), where
        assert named in lines[0], where
    assert snapshot(work) == before, "a refused run changed or left files"


def test_damaged_copy_of_the_shipped_model_is_refused(tmp_path):
    model = shutil.copytree(PRETRAINED_DIR, tmp_path / "model")
    f = model / "checkpoints" / "0" / "meta" / "metadata"
    raw = bytearray(f.read_bytes())
    raw[-20:-12] = b"00000000"
    f.write_bytes(bytes(raw))
    with pytest.raises(DamagedCheckpointError, match="meta/metadata differs"):
        Pipeline.restore(model)


# ----------------------------------------------------------------- Ctrl-C


def interrupt(env, args: list[str], when) -> subprocess.CompletedProcess:
    """Start ``args``, wait for ``when(proc)`` to return true, send SIGINT to its process group
    (as a terminal's Ctrl-C does), and collect it."""
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # its own process group, for os.killpg
    )
    deadline = time.monotonic() + 240
    while not when(proc) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def importing_numpy(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` has loaded numpy's extension: its imports are under way."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{proc.pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_ctrl_c_during_start_up_and_after_a_part(env, data, tmp_path):
    """SIGINT during the imports, and just after the first event's part is written (where JAX's
    clean-up used to crash): status 130, one line ``interrupted``, the part intact, no temporary
    file, no ``--out``."""
    out = tmp_path / "sub.csv"
    parts = Path(f"{out}.parts")
    args = command("reconstruct.py", f"--data={data}", f"--out={out}")
    early = interrupt(env, args, importing_numpy)
    part = lambda p: any(parts.glob("run-*/event*.csv.gz"))  # noqa: E731
    late = interrupt(env, args, part)
    for p in (early, late):
        assert p.returncode == 130, p.stderr
        assert message_lines(p.stderr) == ["interrupted"], p.stderr
    assert not out.exists()
    leftovers = [p for p in tmp_path.rglob(".*")]
    assert not leftovers, leftovers
    done = sorted(parts.glob("run-*/event*.csv.gz"))
    assert done
    for f in done:
        got = pd.read_csv(f)
        eid = int(got.event_id.iloc[0])
        hits = pd.read_csv(data / f"event{eid:09d}-hits.csv")
        assert got.hit_id.tolist() == hits.hit_id.tolist()
