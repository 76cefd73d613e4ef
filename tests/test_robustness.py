"""Bad input, tried on purpose: the readers, the scorer, the launch scripts and checkpoints.

Property tests (hypothesis) cut, garble and mistype the files of a small valid simulated event
and its submission. Every outcome must be either a successful read whose result is consistent,
or a :class:`~cgnn_jax.io.TrackMLFormatError` (scoring: ``ValueError``; checkpoints:
:class:`~cgnn_jax.train.checkpoint.CheckpointError`) that names the file, never a raw pandas,
numpy, zlib, orbax or tensorstore exception. Nothing the user had is modified by a failed run.

``ROBUSTNESS_EXAMPLES=2000 pytest tests/test_robustness.py`` searches longer.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgnn_jax.inference.checkpoint import MANIFEST, DamagedCheckpointError, write_manifest
from cgnn_jax.io import (
    DTYPES,
    PARTS,
    Event,
    TrackMLFormatError,
    event_prefix,
    read_event,
    read_submission,
    write_event,
    write_submission,
)
from cgnn_jax.metrics import score_event
from cgnn_jax.sim import simulate_event
from cgnn_jax.train.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    restore_checkpoint,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
EID = 0
N_HITS = 40
FORMATS = ("csv", "csv.gz", "zip")

# Warnings that mean bad input must have become errors (or been silenced) inside the readers.
pytestmark = [
    pytest.mark.filterwarnings("error::pandas.errors.ParserWarning"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

PROPERTY = settings(
    max_examples=int(os.environ.get("ROBUSTNESS_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- fixtures


def small_event() -> Event:
    """The first ``N_HITS`` hits of a simulated mu=5 event, with their cells, truth, particles."""
    ev = simulate_event(seed=0, mu=5, event_id=EID)
    hits = ev.hits.sort_values("hit_id").head(N_HITS).reset_index(drop=True)
    keep = hits["hit_id"].to_numpy()
    assert ev.truth is not None and ev.cells is not None and ev.particles is not None
    truth = ev.truth[ev.truth["hit_id"].isin(keep)].reset_index(drop=True)
    cells = ev.cells[ev.cells["hit_id"].isin(keep)].reset_index(drop=True)
    particles = ev.particles[ev.particles["particle_id"].isin(truth["particle_id"])]
    return Event(EID, hits, cells, particles.reset_index(drop=True), truth)


@pytest.fixture(scope="module")
def event() -> Event:
    return small_event()


class CsvFiles(dict):
    """``{part: csv bytes}``, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"<csv files of the small event: {', '.join(self)}>"


@pytest.fixture(scope="module")
def plain(event: Event, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The event's plain csv content, by part."""
    d = tmp_path_factory.mktemp("plain")
    write_event(event, d)
    return CsvFiles({part: (d / f"{event_prefix(EID)}-{part}.csv").read_bytes() for part in PARTS})


@pytest.fixture(scope="module")
def submission(event: Event) -> pd.DataFrame:
    """A perfect submission: one track per particle (noise hits share track 0)."""
    assert event.truth is not None
    pid = event.truth["particle_id"].to_numpy()
    _, track = np.unique(pid, return_inverse=True)
    return pd.DataFrame({"event_id": EID, "hit_id": event.truth["hit_id"], "track_id": track})


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examples")


def new_dir(scratch: Path) -> Path:
    """A fresh directory per hypothesis example (``tmp_path`` is shared by all examples)."""
    return Path(tempfile.mkdtemp(dir=scratch))


def part_name(part: str, fmt: str = "csv") -> str:
    return f"{event_prefix(EID)}-{part}.{'csv.gz' if fmt == 'csv.gz' else 'csv'}"


def write_dataset(
    plain: dict[str, bytes], root: Path, fmt: str, changed: dict[str, bytes] | None = None
) -> Path:
    """The event as ``fmt`` files under ``root`` (csv content of ``changed`` parts replaced).

    Returns what to give ``read_event``: the directory, or the zip archive.
    """
    contents = {**plain, **(changed or {})}
    if fmt == "zip":
        root.mkdir(parents=True, exist_ok=True)
        archive = root / "event.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for part, data in contents.items():
                zf.writestr(f"train/{part_name(part)}", data)
        return archive
    d = root / "event"
    d.mkdir(parents=True)
    for part, data in contents.items():
        out = gzip.compress(data, mtime=0) if fmt == "csv.gz" else data
        (d / part_name(part, fmt)).write_bytes(out)
    return d


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def assert_valid(ev: Event) -> None:
    """A successfully read event is consistent: schema dtypes, finite, unique and cross-referenced."""
    assert ev.event_id == EID and ev.n_hits > 0
    for part, df in ev.parts().items():
        assert list(df.columns) == list(DTYPES[part]), part
        assert df.dtypes.astype(str).to_dict() == DTYPES[part], part
        floats = df.select_dtypes("float32").to_numpy()
        assert np.isfinite(floats).all(), part
    hit_ids = ev.hits["hit_id"].to_numpy()
    assert len(np.unique(hit_ids)) == len(hit_ids)
    assert ev.truth is not None and ev.cells is not None and ev.particles is not None
    truth_ids = ev.truth["hit_id"].to_numpy()
    assert len(truth_ids) == len(hit_ids) and set(truth_ids) == set(hit_ids)
    assert np.isin(ev.cells["hit_id"].to_numpy(), hit_ids).all()
    assert ev.particles["particle_id"].is_unique


def read_outcome(target: Path, names: str) -> Event | TrackMLFormatError:
    """``read_event(target)``; only a TrackMLFormatError naming ``names`` may come out."""
    before = snapshot(target)
    try:
        ev = read_event(target)
    except TrackMLFormatError as e:
        assert str(e).startswith(e.file), str(e)
        assert names in str(e), str(e)
        outcome: Event | TrackMLFormatError = e
    else:
        assert_valid(ev)
        outcome = ev
    assert snapshot(target) == before  # reading never touches the files
    return outcome


# --------------------------------------------------------------------------- strategies

INTERESTING_BYTES = list(b',\n\r"-+.e0159 \t\x00\xff\xc3')
a_byte = st.one_of(st.sampled_from(INTERESTING_BYTES), st.integers(0, 255))
an_edit = st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.floats(0, 1), a_byte)


def garble(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, byte in edits:
        k = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "insert":
            out[k:k] = bytes([byte])
        elif out and kind == "replace":
            out[k] = byte
        elif out:
            del out[k]
    return bytes(out)


def field_lines(data: bytes) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of a plain csv; ``rows[i]`` is on line ``i + 2``."""
    lines = data.decode().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def join_lines(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join(",".join(r) for r in [header, *rows]) + "\n").encode()


def set_field(data: bytes, row: int, column: str, value: str) -> bytes:
    header, rows = field_lines(data)
    rows[row][header.index(column)] = value
    return join_lines(header, rows)


# --------------------------------------------------------------------------- event files


@PROPERTY
@given(part=st.sampled_from(PARTS), fmt=st.sampled_from(FORMATS), where=st.floats(0, 1))
def test_truncated_at_any_byte(
    plain: dict[str, bytes], scratch: Path, part: str, fmt: str, where: float
) -> None:
    # Cut the file as stored: the plain csv, the .csv.gz, or the whole zip archive.
    target = write_dataset(plain, new_dir(scratch), fmt)
    if fmt == "zip":
        data = target.read_bytes()
        cut = int(where * len(data))
        target.write_bytes(data[:cut])
        name = target.name
    else:
        path = target / part_name(part, fmt)
        data = path.read_bytes()
        cut = int(where * len(data))
        path.write_bytes(data[:cut])
        name = path.name
    outcome = read_outcome(target, name)
    if cut == len(data):
        assert isinstance(outcome, Event)
    elif fmt != "csv":
        assert isinstance(outcome, TrackMLFormatError)  # gzip and zip know their length
    elif isinstance(outcome, Event):
        # Only a cut at a line end can pass, and then only cells or particles may lose rows
        # (hits and truth must match each other).
        assert data[:cut].endswith(b"\n") and part in ("cells", "particles")
        got = getattr(outcome, part)
        n = data[:cut].count(b"\n") - 1
        assert len(got) == n


@PROPERTY
@given(
    part=st.sampled_from(PARTS),
    mode=st.sampled_from(["csv", "gzip the garbled csv", "garble the gzip", "garble the zip"]),
    edits=st.lists(an_edit, min_size=1, max_size=4),
)
def test_garbled_bytes(
    plain: dict[str, bytes],
    scratch: Path,
    part: str,
    mode: str,
    edits: list[tuple[str, float, int]],
) -> None:
    root = new_dir(scratch)
    if mode == "garble the zip":
        target = write_dataset(plain, root, "zip")
        target.write_bytes(garble(target.read_bytes(), edits))
        name = target.name
    elif mode == "garble the gzip":
        target = write_dataset(plain, root, "csv.gz")
        path = target / part_name(part, "csv.gz")
        path.write_bytes(garble(path.read_bytes(), edits))
        name = path.name
    else:
        fmt = "csv" if mode == "csv" else "csv.gz"
        target = write_dataset(plain, root, fmt, {part: garble(plain[part], edits)})
        name = part_name(part, fmt)
    read_outcome(target, name)


NUMERIC_COLUMNS = [(part, col) for part in PARTS for col in DTYPES[part]]
# No digits (the text must not parse as a number), no field or line separators, no quotes.
NOT_A_NUMBER = st.text(alphabet="abcdefxyzINFnan -+._#!?/", max_size=8)


@PROPERTY
@given(
    target=st.sampled_from(NUMERIC_COLUMNS),
    text=NOT_A_NUMBER,
    row=st.integers(0, N_HITS),
    fmt=st.sampled_from(FORMATS),
)
def test_text_in_numeric_column(
    plain: dict[str, bytes], scratch: Path, target: tuple[str, str], text: str, row: int, fmt: str
) -> None:
    part, column = target
    _, rows = field_lines(plain[part])
    row %= len(rows)
    changed = set_field(plain[part], row, column, text)
    path = write_dataset(plain, new_dir(scratch), fmt, {part: changed})
    with pytest.raises(TrackMLFormatError) as ei:
        read_event(path)
    e = ei.value
    assert part_name(part) in e.file
    assert (e.column, e.line) == (column, row + 2), str(e)


FLOAT_COLUMNS = [(p, c) for p, c in NUMERIC_COLUMNS if DTYPES[p][c] == "float32"]
NON_FINITE = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-3.5e38"]


@PROPERTY
@given(
    target=st.sampled_from(NUMERIC_COLUMNS),
    text=st.sampled_from(NON_FINITE),
    row=st.integers(0, N_HITS),
)
def test_non_finite_values(
    plain: dict[str, bytes], scratch: Path, target: tuple[str, str], text: str, row: int
) -> None:
    part, column = target
    _, rows = field_lines(plain[part])
    row %= len(rows)
    path = write_dataset(
        plain, new_dir(scratch), "csv", {part: set_field(plain[part], row, column, text)}
    )
    with pytest.raises(TrackMLFormatError) as ei:
        read_event(path)
    e = ei.value
    assert part_name(part) in e.file and (e.column, e.line) == (column, row + 2), str(e)
    assert "non-finite" in e.reason or "not representable" in e.reason, str(e)
    if target in FLOAT_COLUMNS:  # without the data checks: a parse error, or read as it is
        try:
            got = getattr(read_event(path, validate=False), part)[column].iat[row]
        except TrackMLFormatError as e2:
            assert (e2.file, e2.column, e2.line) == (e.file, e.column, e.line)
        else:
            assert not np.isfinite(got)


ID_COLUMN = {"hits": "hit_id", "truth": "hit_id", "particles": "particle_id"}


@PROPERTY
@given(
    part=st.sampled_from(sorted(ID_COLUMN)),
    pair=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)),
    copy_row=st.booleans(),
    fmt=st.sampled_from(FORMATS),
)
def test_duplicate_ids(
    plain: dict[str, bytes],
    scratch: Path,
    part: str,
    pair: tuple[int, int],
    copy_row: bool,
    fmt: str,
) -> None:
    header, rows = field_lines(plain[part])
    i, j = pair[0] % len(rows), pair[1] % len(rows)
    if i == j:
        j = (i + 1) % len(rows)
    col = header.index(ID_COLUMN[part])
    if copy_row:  # the whole row once more, after row j
        rows.insert(j + 1, list(rows[i]))
        first_repeat = max(i if i <= j else i + 1, j + 1)
    else:  # row j takes row i's id
        rows[j][col] = rows[i][col]
        first_repeat = max(i, j)
    path = write_dataset(plain, new_dir(scratch), fmt, {part: join_lines(header, rows)})
    with pytest.raises(TrackMLFormatError, match=f"duplicate {ID_COLUMN[part]}") as ei:
        read_event(path)
    assert part_name(part) in ei.value.file and ei.value.line == first_repeat + 2


@pytest.mark.parametrize("part", PARTS)
def test_rows_longer_than_the_header(plain: dict[str, bytes], tmp_path: Path, part: str) -> None:
    """One more field on every data row: pandas would drop the last column with a warning."""
    header, rows = field_lines(plain[part])
    longer = join_lines(header, [[*r, "9"] for r in rows])
    path = write_dataset(plain, tmp_path, "csv", {part: longer})
    with pytest.raises(TrackMLFormatError, match="more fields than the header") as ei:
        read_event(path)
    assert part_name(part) in ei.value.file


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_only_event_is_an_error(plain: dict[str, bytes], tmp_path: Path, fmt: str) -> None:
    empty = {part: data.split(b"\n", 1)[0] + b"\n" for part, data in plain.items()}
    path = write_dataset(plain, tmp_path, fmt, empty)
    with pytest.raises(TrackMLFormatError, match="empty event") as ei:
        read_event(path)
    assert part_name("hits") in ei.value.file
    assert read_event(path, validate=False).n_hits == 0


def test_single_hit_event_reads_and_scores(event: Event, tmp_path: Path) -> None:
    assert event.truth is not None and event.cells is not None and event.particles is not None
    # the first hit with a score weight (a noise hit weighs 0 and would score 0)
    first = event.truth.loc[event.truth["weight"] > 0, "hit_id"].iat[0]
    truth = event.truth[event.truth["hit_id"] == first]
    one = Event(
        EID,
        event.hits[event.hits["hit_id"] == first],
        event.cells[event.cells["hit_id"] == first],
        event.particles[event.particles["particle_id"].isin(truth["particle_id"])],
        truth,
    )
    write_event(one, tmp_path, compress=True)
    back = read_event(tmp_path)
    assert back.n_hits == 1
    assert_valid(back)
    sub = pd.DataFrame({"event_id": [EID], "hit_id": [first], "track_id": [7]})
    write_submission(sub, tmp_path / "sub.csv")
    assert score_event(back.truth, read_submission(tmp_path / "sub.csv"), event_id=EID) == 1.0


@PROPERTY
@given(
    row=st.integers(0, N_HITS - 1),
    column=st.sampled_from(["x", "y", "z"]),
    magnitude=st.floats(6300.0, 1e9),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_hit_far_outside_the_detector(
    plain: dict[str, bytes], scratch: Path, row: int, column: str, magnitude: float, sign: float
) -> None:
    value = f"{sign * magnitude:.6g}"
    changed = set_field(plain["hits"], row, column, value)
    path = write_dataset(plain, new_dir(scratch), "csv", {"hits": changed})
    with pytest.raises(TrackMLFormatError, match="far outside the detector") as ei:
        read_event(path)
    e = ei.value
    assert part_name("hits") in e.file
    assert (e.column, e.line) == (column, row + 2) and float(e.value) == float(np.float32(value))
    ev = read_event(path, check_envelope=False)  # the opt-out, e.g. for another detector
    assert float(ev.hits[column].iat[row]) == float(np.float32(value))


def test_positions_in_micrometres_and_just_outside(plain: dict[str, bytes], tmp_path: Path) -> None:
    header, rows = field_lines(plain["hits"])
    xyz = [header.index(c) for c in ("x", "y", "z")]
    micro = [[f"{float(v) * 1000:g}" if k in xyz else v for k, v in enumerate(r)] for r in rows]
    path = write_dataset(plain, tmp_path / "a", "csv", {"hits": join_lines(header, micro)})
    with pytest.raises(TrackMLFormatError, match=r"40 hit\(s\) far outside.*wrong units") as ei:
        read_event(path)
    assert ei.value.line == 2
    # Beyond the detector (r 1100 mm) but not far: kept (stray or simulated hits).
    near = set_field(plain["hits"], 3, "x", "1500.5")
    path = write_dataset(plain, tmp_path / "b", "csv", {"hits": near})
    assert read_event(path).hits["x"].iat[3] == np.float32(1500.5)


# --------------------------------------------------------------------------- submissions


@PROPERTY
@given(
    gz=st.booleans(),
    edits=st.lists(an_edit, max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_garbled_submission_file(
    event: Event,
    submission: pd.DataFrame,
    scratch: Path,
    gz: bool,
    edits: list[tuple[str, float, int]],
    cut: float | None,
) -> None:
    path = new_dir(scratch) / ("sub.csv.gz" if gz else "sub.csv")
    write_submission(submission, path)
    data = garble(path.read_bytes(), edits)
    if cut is not None:
        data = data[: int(cut * len(data))]
    path.write_bytes(data)
    try:
        sub = read_submission(path)
    except TrackMLFormatError as e:
        assert str(e).startswith(str(path)), str(e)
        return
    assert list(sub.columns) == ["event_id", "hit_id", "track_id"]
    assert not sub.duplicated(["event_id", "hit_id"]).any()
    try:
        score = score_event(event.truth, sub, event_id=EID)
    except ValueError as e:
        assert str(e)
    else:
        assert 0.0 <= score <= 1.0


@PROPERTY
@given(
    drop=st.lists(st.integers(0, N_HITS - 1), max_size=3),
    repeat=st.lists(st.integers(0, N_HITS - 1), max_size=3),
    foreign=st.lists(st.tuples(st.integers(0, N_HITS - 1), st.integers(-5, 10**6)), max_size=2),
    other_event=st.lists(st.tuples(st.integers(0, N_HITS - 1), st.integers(1, 10**12)), max_size=2),
    relabel=st.integers(0, 2**62),
)
def test_scoring_a_wrong_submission(
    event: Event,
    submission: pd.DataFrame,
    drop: list[int],
    repeat: list[int],
    foreign: list[tuple[int, int]],
    other_event: list[tuple[int, int]],
    relabel: int,
) -> None:
    """Missing, repeated or foreign hits and rows of another event are each a clear error."""
    sub = submission.copy()
    sub["track_id"] = sub["track_id"].to_numpy(np.int64) * 7 + relabel  # any labels do
    for row, hit in foreign:
        sub.loc[row, "hit_id"] = hit
    for row, eid in other_event:
        sub.loc[row, "event_id"] = eid
    sub = pd.concat([sub.drop(index=drop), sub.iloc[repeat]], ignore_index=True)
    truth_ids = set(event.truth["hit_id"].tolist())
    ids = sub["hit_id"].tolist()
    # The problems in the order score_event reports them.
    problems = [
        ("event", bool((sub["event_id"] != EID).any())),
        ("more than once", len(set(ids)) != len(ids)),
        ("absent from the truth", not set(ids) <= truth_ids),
        ("misses", set(ids) != truth_ids),
    ]
    expected = next((msg for msg, present in problems if present), None)
    if expected is None:
        assert score_event(event.truth, sub, event_id=EID) == 1.0
    else:
        with pytest.raises(ValueError, match=expected):
            score_event(event.truth, sub, event_id=EID)


@pytest.mark.parametrize(
    "column, values",
    [
        ("track_id", ["a"] * N_HITS),
        ("track_id", [1e300] * N_HITS),
        ("track_id", [1j] * N_HITS),
        ("track_id", [pd.Timestamp("2020-01-01")] * N_HITS),
        ("hit_id", [None] * N_HITS),
        ("event_id", [np.nan] * N_HITS),
    ],
)
def test_scoring_columns_of_the_wrong_type(
    event: Event, submission: pd.DataFrame, column: str, values: list
) -> None:
    sub = submission.assign(**{column: values})
    with pytest.raises(ValueError, match=f"submission column '{column}'"):
        score_event(event.truth, sub, event_id=EID)


def test_scoring_garbled_frames(event: Event, submission: pd.DataFrame) -> None:
    assert event.truth is not None
    twice = pd.concat([submission, submission[["hit_id"]]], axis=1)
    with pytest.raises(ValueError, match=r"column\(s\) \['hit_id'\] more than once"):
        score_event(event.truth, twice, event_id=EID)
    with pytest.raises(ValueError, match="truth column 'weight' is not numeric"):
        score_event(event.truth.assign(weight="heavy"), submission, event_id=EID)


# --------------------------------------------------------------------------- launch scripts


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


OLD_REPORT = b'{"kept": "the report of an earlier run"}\n'


@pytest.fixture
def launch_files(
    plain: dict[str, bytes], submission: pd.DataFrame, tmp_path: Path
) -> dict[str, Path]:
    """A garbled dataset (hits cut mid-line), a good one, a good submission, an old report."""
    good = write_dataset(plain, tmp_path / "good", "csv")
    cut = plain["hits"][: len(plain["hits"]) // 2]
    garbled = write_dataset(plain, tmp_path / "garbled", "csv", {"hits": cut})
    sub = tmp_path / "sub.csv"
    write_submission(submission, sub)
    report = tmp_path / "report.json"
    report.write_bytes(OLD_REPORT)
    return {"good": good, "garbled": garbled, "sub": sub, "report": report}


def assert_failed_cleanly(p: subprocess.CompletedProcess, message: str, report: Path) -> None:
    assert p.returncode != 0, p.stdout + p.stderr
    assert message in p.stderr, p.stderr
    assert report.read_bytes() == OLD_REPORT  # the earlier report is kept byte for byte


def test_eval_garbled_dataset(launch_files: dict[str, Path]) -> None:
    f = launch_files
    p = run_script(
        "eval.py", f"--data={f['garbled']}", f"--submission={f['sub']}", f"--json_out={f['report']}"
    )
    assert_failed_cleanly(p, f"{f['garbled'] / part_name('hits')}: truncated file", f["report"])
    assert "Traceback" not in p.stderr


def test_eval_submission_of_another_event(launch_files: dict[str, Path], tmp_path: Path) -> None:
    f = launch_files
    other = tmp_path / "other.csv"
    other.write_text(f["sub"].read_text().replace("\n0,", "\n1,"))  # event 1, not in the data
    p = run_script(
        "eval.py", f"--data={f['good']}", f"--submission={other}", f"--json_out={f['report']}"
    )
    assert_failed_cleanly(p, "not in the data: [1]", f["report"])
    assert "lacks 1 event(s) of the data: [0]" in p.stderr


def test_eval_garbled_submission(launch_files: dict[str, Path], tmp_path: Path) -> None:
    f = launch_files
    bad = tmp_path / "bad.csv"
    bad.write_bytes(set_field(f["sub"].read_bytes(), 4, "track_id", "seven"))
    p = run_script(
        "eval.py", f"--data={f['good']}", f"--submission={bad}", f"--json_out={f['report']}"
    )
    assert_failed_cleanly(p, f"{bad}: unparsable value", f["report"])
    assert "line 6" in p.stderr


def test_dataset_stats_garbled_dataset(launch_files: dict[str, Path]) -> None:
    f = launch_files
    p = run_script("dataset_stats.py", f"--data={f['garbled']}", f"--json_out={f['report']}")
    assert_failed_cleanly(p, f"{f['garbled'] / part_name('hits')}: truncated file", f["report"])


# --------------------------------------------------------------------------- checkpoints

STATE = {
    "w": np.arange(600, dtype=np.float32).reshape(20, 30),
    "b": np.ones(3, np.float32),
    "step": np.int32(5),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    save_checkpoint(d, 3, STATE, kind="robustness", config={"hidden": [4, 4]})
    return d


@pytest.fixture
def copy_of(checkpoint: Path, tmp_path: Path) -> Callable[[], Path]:
    n = iter(range(10**6))

    def make() -> Path:
        d = tmp_path / f"copy{next(n)}"
        shutil.copytree(checkpoint, d)
        return d

    return make


def restore_fails(directory: Path, **kw: object) -> CheckpointError:
    """Restoring must raise CheckpointError naming the directory and leave it as it was."""
    before = snapshot(directory) if directory.exists() else None
    with pytest.raises(CheckpointError) as ei:
        restore_checkpoint(directory, **kw)
    assert str(directory) in str(ei.value)
    if before is not None:
        assert snapshot(directory) == before
    return ei.value


def test_checkpoint_roundtrip(copy_of: Callable[[], Path]) -> None:
    state, meta = restore_checkpoint(copy_of(), kind="robustness")
    assert meta["version"] == FORMAT_VERSION and meta["config"] == {"hidden": [4, 4]}
    assert all(np.array_equal(state[k], v) for k, v in STATE.items())


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"version": FORMAT_VERSION + 1}, "format version"),
        ({"version": str(FORMAT_VERSION)}, "format version"),
        ({"version": None}, "format version"),
        ({"format": "flax"}, "not a cgnn_jax checkpoint"),
    ],
)
def test_checkpoint_other_version_or_format(
    copy_of: Callable[[], Path], edit: dict, message: str
) -> None:
    d = copy_of()
    meta_file = d / "3" / "meta" / "metadata"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), **edit}))
    write_manifest(d / "3")  # as the other version would have written it: not damaged
    assert message in str(restore_fails(d))


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'"cgnn_jax"', b"\xff\xfe"])
def test_checkpoint_garbled_meta(copy_of: Callable[[], Path], content: bytes) -> None:
    d = copy_of()
    (d / "3" / "meta" / "metadata").write_bytes(content)
    restore_fails(d)


def test_checkpoint_wrong_kind_step_or_structure(copy_of: Callable[[], Path]) -> None:
    d = copy_of()
    restore_fails(d, kind="stage2")
    restore_fails(d, step=4)
    restore_fails(d, target={"w": np.zeros((2, 2), np.float32)})


def test_checkpoint_damaged_files(copy_of: Callable[[], Path]) -> None:
    """Delete, truncate or empty each file (and remove each item folder) of the checkpoint.

    Its checksum manifest lists every file, so any such damage is refused, naming the file;
    only a checkpoint without a manifest (older ones) is restored unchecked, and then it must
    restore the saved state.
    """
    files = sorted(snapshot(copy_of()))
    cases = [(f, how) for f in files for how in ("delete", "half", "empty")]
    cases += [("3/state", "rmtree"), ("3/meta", "rmtree"), ("3", "rmtree")]
    failed = []
    for rel, how in cases:
        d = copy_of()
        p = d / rel
        if how == "rmtree":
            shutil.rmtree(p)
        elif how == "delete":
            p.unlink()
        else:
            os.truncate(p, p.stat().st_size // 2 if how == "half" else 0)
        try:
            state, _ = restore_checkpoint(d)
        except CheckpointError as e:
            assert str(d) in str(e), (rel, how, str(e))
            failed.append((rel, how))
        else:
            assert all(np.array_equal(state[k], v) for k, v in STATE.items()), (rel, how)
    manifest = f"3/{MANIFEST}"
    assert manifest in files
    assert sorted(set(cases) - set(failed)) == [(manifest, "delete")]


def test_checkpoint_same_size_overwrite_is_detected(copy_of: Callable[[], Path]) -> None:
    """Eight bytes overwritten inside the largest data file (same size, same name): refused with
    one line naming the checkpoint step and the file; also after a restore filled the cache."""
    d = copy_of()
    restore_checkpoint(d)
    data = max((p for p in (d / "3" / "state").rglob("*") if p.is_file()), key=os.path.getsize)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 8] = b"\x00\xff" * 4
    stat = data.stat()
    data.write_bytes(bytes(raw))
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same time: a cache key hit
    e = restore_fails(d)
    assert isinstance(e, DamagedCheckpointError)
    assert str(d / "3") in str(e) and data.relative_to(d / "3").as_posix() in str(e)
    assert "\n" not in str(e)


def test_checkpoint_without_manifest_restores(copy_of: Callable[[], Path]) -> None:
    d = copy_of()
    (d / "3" / MANIFEST).unlink()
    state, _ = restore_checkpoint(d)
    assert all(np.array_equal(state[k], v) for k, v in STATE.items())


def test_shipped_model_carries_a_valid_manifest() -> None:
    from cgnn_jax.inference import PRETRAINED_DIR
    from cgnn_jax.inference.checkpoint import verify_manifest

    assert verify_manifest(PRETRAINED_DIR / "checkpoints" / "0")


FOREIGN_NAMES = st.sampled_from(
    ["0", "3", "17", "meta", "state", "metadata", "_METADATA", "x.bin", "d"]
)


@settings(PROPERTY, max_examples=max(10, PROPERTY.max_examples // 3))
@given(
    tree=st.lists(
        st.tuples(st.lists(FOREIGN_NAMES, min_size=1, max_size=3), st.binary(max_size=64)),
        max_size=6,
    )
)
def test_checkpoint_foreign_directory(scratch: Path, tree: list[tuple[list[str], bytes]]) -> None:
    d = new_dir(scratch) / "not_a_checkpoint"
    d.mkdir()
    for parts, content in tree:
        p = d.joinpath(*parts)
        if any(q.is_file() for q in [p, *p.parents] if q != d and d in q.parents):
            continue  # a file already sits where a folder is wanted
        if p.is_dir():
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    restore_fails(d)


def test_checkpoint_not_a_directory(tmp_path: Path) -> None:
    restore_fails(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    restore_fails(tmp_path / "file")
