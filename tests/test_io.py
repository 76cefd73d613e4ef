"""Tests of the TrackML file layer (cgnn_jax.io): round trips, laziness, errors, atomicity."""

from __future__ import annotations

import gzip
import inspect
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cgnn_jax.io import (
    DTYPES,
    Event,
    TrackMLFormatError,
    atomic_write,
    event_prefix,
    iter_events,
    list_event_ids,
    read_event,
    read_submission,
    write_event,
    write_submission,
)

EID = 1000


def make_event(
    event_id: int = EID, n_hits: int = 50, seed: int = 0, particle_type: bool = True
) -> Event:
    """A small consistent event: hits, 1-3 cells per hit, particles and truth."""
    rng = np.random.default_rng(seed)
    hit_id = np.arange(1, n_hits + 1, dtype=np.int32)

    def f32(scale: float, n: int = n_hits) -> np.ndarray:
        return (rng.normal(size=n) * scale).astype(np.float32)

    hits = pd.DataFrame(
        {
            "hit_id": hit_id,
            # Values near 1000 need 8+ significant digits to round-trip as float32.
            "x": f32(100.0) + np.float32(1000.0),
            "y": f32(100.0),
            "z": f32(1000.0),
            "volume_id": rng.integers(7, 10, n_hits).astype(np.int32),
            "layer_id": rng.integers(1, 8, n_hits).astype(np.int32) * 2,
            "module_id": rng.integers(1, 3000, n_hits).astype(np.int32),
        }
    )
    n_cells = rng.integers(1, 4, n_hits)
    cells = pd.DataFrame(
        {
            "hit_id": np.repeat(hit_id, n_cells),
            "ch0": rng.integers(0, 1200, n_cells.sum()).astype(np.int32),
            "ch1": rng.integers(0, 1200, n_cells.sum()).astype(np.int32),
            "value": rng.random(n_cells.sum()).astype(np.float32),
        }
    )
    n_particles = 8
    # Above 2**53, so a float64 detour would corrupt them.
    particle_id = (4_503_599_627_370_496 * 2 + np.arange(n_particles) * 1_000_003).astype(np.int64)
    particles = {"particle_id": particle_id}
    if particle_type:
        particles["particle_type"] = rng.choice([-211, 211, 11, -13], n_particles).astype(np.int32)
    for c in ("vx", "vy", "vz", "px", "py", "pz"):
        particles[c] = f32(1.0, n_particles)
    particles["q"] = rng.choice([-1, 1], n_particles).astype(np.int32)
    owner = rng.integers(-1, n_particles, n_hits)  # -1: noise
    pid_of_hit = np.where(owner >= 0, particle_id[np.maximum(owner, 0)], 0).astype(np.int64)
    particles["nhits"] = np.bincount(owner[owner >= 0], minlength=n_particles).astype(np.int32)
    truth = pd.DataFrame(
        {
            "hit_id": hit_id,
            "particle_id": pid_of_hit,
            "tx": hits["x"].to_numpy(),
            "ty": hits["y"].to_numpy(),
            "tz": hits["z"].to_numpy(),
            "tpx": f32(1.0),
            "tpy": f32(1.0),
            "tpz": f32(1.0),
            "weight": (rng.random(n_hits) * 1e-4).astype(np.float32),
        }
    )
    return Event(event_id, hits, cells, pd.DataFrame(particles), truth)


def assert_events_equal(a: Event, b: Event) -> None:
    assert a.event_id == b.event_id
    assert a.parts().keys() == b.parts().keys()
    for name, df in a.parts().items():
        pd.testing.assert_frame_equal(df, b.parts()[name], check_exact=True)


def part_path(d: Path, part: str, eid: int = EID, gz: bool = False) -> Path:
    return d / f"{event_prefix(eid)}-{part}.csv{'.gz' if gz else ''}"


def set_field(path: Path, line: int, column: str, value: str) -> None:
    """Overwrite one field of a plain csv (``line`` is 1-based, header = 1)."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def written(tmp_path: Path, event: Event | None = None) -> Path:
    d = tmp_path / "ev"
    write_event(event or make_event(), d)
    return d


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip_dir(tmp_path: Path, compress: bool) -> None:
    ev = make_event()
    paths = write_event(ev, tmp_path, compress=compress)
    ext = ".csv.gz" if compress else ".csv"
    assert [p.name for p in paths] == [f"event000001000-{p}{ext}" for p in DTYPES]
    assert paths[0].read_bytes()[:2] == (b"\x1f\x8b" if compress else b"hi")
    back = read_event(tmp_path)  # the only event: no event_id needed
    assert_events_equal(back, ev)
    for name, df in back.parts().items():
        assert dict(df.dtypes.astype(str)) == {
            **DTYPES[name],
            **({"particle_type": "int32"} if "particle_type" in df else {}),
        }


def test_written_format_matches_challenge(tmp_path: Path) -> None:
    ev = make_event()
    write_event(ev, tmp_path)
    header = part_path(tmp_path, "particles").read_text().splitlines()[0]
    assert header == "particle_id,particle_type,vx,vy,vz,px,py,pz,q,nhits"
    hits_lines = part_path(tmp_path, "hits").read_text().splitlines()
    assert hits_lines[0] == "hit_id,x,y,z,volume_id,layer_id,module_id"
    assert len(hits_lines) == 51


def test_float32_roundtrip_exact(tmp_path: Path) -> None:
    ev = make_event(n_hits=5)
    vals = np.array([1000.0001, 1023.99994, 1e-30, -3.4e38, 0.1], dtype=np.float32)
    ev.hits["x"] = vals
    write_event(ev, tmp_path, compress=True)
    assert np.array_equal(read_event(tmp_path, validate=False).hits["x"].to_numpy(), vals)


@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip_zip_with_subfolder(tmp_path: Path, compress: bool) -> None:
    events = [make_event(eid, seed=eid) for eid in (1000, 1001)]
    src = tmp_path / "src"
    for ev in events:
        write_event(ev, src, compress=compress)
    zpath = tmp_path / "train_sample.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train_100_events/", "")
        for f in sorted(src.iterdir()):
            zf.write(f, f"train_100_events/{f.name}")
        zf.writestr("train_100_events/README.txt", "not an event file")
    assert list_event_ids(zpath) == [1000, 1001]
    assert_events_equal(read_event(zpath, 1001), events[1])
    assert [e.event_id for e in iter_events(zpath)] == [1000, 1001]
    with pytest.raises(TrackMLFormatError, match="holds 2 events"):
        read_event(zpath)


def test_prefix_path(tmp_path: Path) -> None:
    ev = make_event()
    write_event(ev, tmp_path)
    write_event(make_event(2000, seed=3), tmp_path)
    assert_events_equal(read_event(tmp_path / "event000001000"), ev)
    assert_events_equal(read_event(str(part_path(tmp_path, "hits"))), ev)
    assert list_event_ids(tmp_path / "event000001000") == [1000]
    with pytest.raises(ValueError, match="names event 1000"):
        read_event(tmp_path / "event000001000", event_id=2000)


def test_parts_selection_hits_cells_only(tmp_path: Path) -> None:
    ev = make_event()
    test_ev = Event(ev.event_id, ev.hits, cells=ev.cells)
    paths = write_event(test_ev, tmp_path, compress=True)
    assert len(paths) == 2
    back = read_event(tmp_path, parts=("hits", "cells"))
    assert back.particles is None and back.truth is None
    assert_events_equal(back, test_ev)
    only_hits = read_event(tmp_path, parts=["hits"])
    assert only_hits.cells is None
    with pytest.raises(ValueError, match="must include 'hits'"):
        read_event(tmp_path, parts=("cells",))


@pytest.mark.parametrize("particle_type", [True, False])
def test_particles_with_and_without_particle_type(tmp_path: Path, particle_type: bool) -> None:
    ev = make_event(particle_type=particle_type)
    write_event(ev, tmp_path)
    back = read_event(tmp_path)
    assert ("particle_type" in back.particles.columns) is particle_type
    assert_events_equal(back, ev)


def test_extra_columns_ignored(tmp_path: Path) -> None:
    d = written(tmp_path)
    p = part_path(d, "hits")
    lines = p.read_text().splitlines()
    p.write_text("\n".join([lines[0] + ",extra"] + [ln + ",foo" for ln in lines[1:]]) + "\n")
    assert list(read_event(d).hits.columns) == list(DTYPES["hits"])


def test_iter_events_lazy_and_ordered(tmp_path: Path) -> None:
    for eid in (1002, 1000, 1001):
        write_event(make_event(eid, seed=eid), tmp_path, compress=eid == 1001)
    assert list_event_ids(tmp_path) == [1000, 1001, 1002]
    it = iter_events(tmp_path, parts=("hits", "truth"))
    assert inspect.isgenerator(it)
    first = next(it)
    assert first.event_id == 1000 and first.cells is None
    # Not read yet: a change made now is what the iterator sees.
    part_path(tmp_path, "hits", 1002).unlink()
    assert next(it).event_id == 1001
    with pytest.raises(TrackMLFormatError, match=r"event000001002-hits\.csv"):
        next(it)
    chosen = [e.event_id for e in iter_events(tmp_path, event_ids=[1001, 1000])]
    assert chosen == [1001, 1000]


def test_event_id_required_when_many_and_no_events(tmp_path: Path) -> None:
    write_event(make_event(1000), tmp_path)
    write_event(make_event(1001), tmp_path)
    with pytest.raises(TrackMLFormatError, match=r"holds 2 events \[1000, 1001\]"):
        read_event(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrackMLFormatError, match="holds no event"):
        read_event(empty)
    with pytest.raises(FileNotFoundError):
        read_event(tmp_path / "nope" / "deeper")


# --------------------------------------------------------------------------- errors


def test_error_missing_file(tmp_path: Path) -> None:
    d = written(tmp_path)
    part_path(d, "truth").unlink()
    with pytest.raises(
        TrackMLFormatError,
        match=r"missing file.*'truth'.*event000001000-truth\.csv or event000001000-truth\.csv\.gz",
    ):
        read_event(d)


def test_error_missing_column(tmp_path: Path) -> None:
    d = written(tmp_path)
    p = part_path(d, "hits")
    p.write_text(p.read_text().replace("hit_id,x,y,z,", "hit_id,x,why,z,", 1))
    with pytest.raises(TrackMLFormatError, match=r"event000001000-hits\.csv.*column 'y'"):
        read_event(d)


def test_error_unparsable_value(tmp_path: Path) -> None:
    d = written(tmp_path)
    set_field(part_path(d, "hits"), 5, "x", "abc")
    with pytest.raises(
        TrackMLFormatError,
        match=r"event000001000-hits\.csv: unparsable value.*column 'x', line 5, hit_id 4, value 'abc'",
    ) as ei:
        read_event(d)
    assert (ei.value.column, ei.value.line, ei.value.hit_id) == ("x", 5, 4)


def test_error_unparsable_int_and_missing_field(tmp_path: Path) -> None:
    d = written(tmp_path)
    set_field(part_path(d, "cells"), 7, "ch1", "1.5")
    with pytest.raises(TrackMLFormatError, match=r"cells\.csv.*column 'ch1', line 7.*value '1\.5'"):
        read_event(d)
    set_field(part_path(d, "cells"), 7, "ch1", "")
    with pytest.raises(
        TrackMLFormatError, match=r"cells\.csv: missing value.*column 'ch1', line 7"
    ):
        read_event(d)


@pytest.mark.parametrize(("column", "value"), [("x", "nan"), ("y", "inf"), ("tpz", "-inf")])
def test_error_non_finite(tmp_path: Path, column: str, value: str) -> None:
    d = written(tmp_path)
    part = "truth" if column.startswith("t") else "hits"
    set_field(part_path(d, part), 10, column, value)
    with pytest.raises(
        TrackMLFormatError,
        match=rf"event000001000-{part}\.csv: non-finite value.*column '{column}', line 10, hit_id 9",
    ):
        read_event(d)


def test_error_duplicate_hit_id(tmp_path: Path) -> None:
    d = written(tmp_path)
    set_field(part_path(d, "hits"), 4, "hit_id", "2")
    with pytest.raises(
        TrackMLFormatError, match=r"hits\.csv: duplicate hit_id.*column 'hit_id', line 4, value '2'"
    ):
        read_event(d)


def test_error_truth_hit_not_in_hits(tmp_path: Path) -> None:
    d = written(tmp_path)
    set_field(part_path(d, "truth"), 3, "hit_id", "999")
    with pytest.raises(
        TrackMLFormatError,
        match=r"truth\.csv: 1 row\(s\) whose hit_id is not in the hits file.*line 3, value '999'",
    ):
        read_event(d)


def test_error_hits_missing_from_truth(tmp_path: Path) -> None:
    d = written(tmp_path)
    p = part_path(d, "truth")
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:6] + lines[7:]) + "\n")  # drop hit_id 6
    with pytest.raises(
        TrackMLFormatError, match=r"truth\.csv: 1 hit\(s\) of .*have no truth row.*value '6'"
    ):
        read_event(d)


def test_error_cells_hit_not_in_hits(tmp_path: Path) -> None:
    d = written(tmp_path)
    set_field(part_path(d, "cells"), 2, "hit_id", "51")
    with pytest.raises(
        TrackMLFormatError,
        match=r"cells\.csv: 1 row\(s\) whose hit_id is not in.*column 'hit_id', line 2, value '51'",
    ):
        read_event(d)


def test_error_empty_event(tmp_path: Path) -> None:
    ev = make_event(n_hits=0)
    write_event(Event(ev.event_id, ev.hits), tmp_path)
    with pytest.raises(TrackMLFormatError, match=r"event000001000-hits\.csv: empty event"):
        read_event(tmp_path, parts=("hits",))
    part_path(tmp_path, "hits").write_text("")
    with pytest.raises(TrackMLFormatError, match=r"event000001000-hits\.csv: empty file"):
        read_event(tmp_path, parts=("hits",))


def test_error_truncated_gzip(tmp_path: Path) -> None:
    d = tmp_path / "ev"
    write_event(make_event(n_hits=2000), d, compress=True)
    p = part_path(d, "cells", gz=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrackMLFormatError, match=r"event000001000-cells\.csv\.gz: truncated"):
        read_event(d)
    p.write_bytes(b"this is not gzip data at all")
    with pytest.raises(TrackMLFormatError, match=r"event000001000-cells\.csv\.gz"):
        read_event(d)


def test_error_ragged_rows(tmp_path: Path) -> None:
    d = written(tmp_path)
    p = part_path(d, "particles")
    lines = p.read_text().splitlines()
    lines[3] += ",7"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrackMLFormatError, match=r"event000001000-particles\.csv: garbled.*line 4"):
        read_event(d)


def test_error_corrupt_zip_member(tmp_path: Path) -> None:
    src = written(tmp_path)
    zpath = tmp_path / "ev.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"sub/{f.name}")
    data = bytearray(zpath.read_bytes())
    name = b"sub/event000001000-hits.csv"
    start = data.index(name) + len(name) + 20  # inside the stored hits data
    data[start : start + 4] = b"XXXX"
    zpath.write_bytes(bytes(data))
    with pytest.raises(TrackMLFormatError, match=r"ev\.zip:sub/event000001000-hits\.csv"):
        read_event(zpath)


def test_error_is_picklable() -> None:
    e = TrackMLFormatError("bad", file="f.csv", column="x", line=3, hit_id=2, value="abc")
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) == "f.csv: bad (column 'x', line 3, hit_id 2, value 'abc')"
    assert isinstance(e2, ValueError)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    ev = make_event()
    write_event(ev, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    import cgnn_jax.io.atomic as atomic_mod

    real_fdopen = os.fdopen

    class DiesHalfway:  # writes the first half of what it is given, then the disk is full
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("disk full")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(atomic_mod.os, "fdopen", lambda *a, **k: DiesHalfway(real_fdopen(*a, **k)))
    ev2 = make_event(seed=1)
    with pytest.raises(OSError, match="disk full"):
        write_event(ev2, tmp_path)
    with pytest.raises(OSError, match="disk full"):
        write_submission(
            pd.DataFrame({"event_id": [1], "hit_id": [1], "track_id": [1]}), tmp_path / "s.csv"
        )
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # same files, same bytes, no temp file left


def test_atomic_write_helper(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    with atomic_write(target, "w") as f:
        f.write("one")
    assert target.read_text() == "one"
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("two")
        raise RuntimeError
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("three")
        assert target.read_text() == "one"
    assert target.read_text() == "three"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="write mode"):
        with atomic_write(target, "r"):
            pass


def test_write_event_replaces_other_format(tmp_path: Path) -> None:
    write_event(make_event(seed=1), tmp_path)
    ev = make_event(seed=2)
    write_event(ev, tmp_path, compress=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"event000001000-{part}.csv.gz" for part in DTYPES
    )
    assert_events_equal(read_event(tmp_path), ev)


# --------------------------------------------------------------------------- submissions


def make_submission(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "event_id": np.repeat(np.array([1000, 1001], dtype=np.int64), n // 2),
            "hit_id": np.tile(np.arange(1, n // 2 + 1, dtype=np.int32), 2),
            "track_id": rng.integers(0, 2**40, n).astype(np.int64),
        }
    )


@pytest.mark.parametrize("name", ["sub.csv", "sub.csv.gz"])
def test_submission_roundtrip(tmp_path: Path, name: str) -> None:
    sub = make_submission()
    path = write_submission(sub, tmp_path / name)
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes()).startswith(b"event_id,hit_id,track_id\n")
    back = read_submission(path)
    pd.testing.assert_frame_equal(back, sub)
    assert dict(back.dtypes.astype(str)) == {
        "event_id": "int64",
        "hit_id": "int32",
        "track_id": "int64",
    }


def test_submission_errors(tmp_path: Path) -> None:
    p = tmp_path / "sub.csv"
    write_submission(make_submission(), p)
    good = p.read_text()

    p.write_text(good.replace("track_id", "trk", 1))
    with pytest.raises(TrackMLFormatError, match=r"sub\.csv: missing column.*column 'track_id'"):
        read_submission(p)

    p.write_text(good)
    set_field(p, 6, "track_id", "seven")
    with pytest.raises(
        TrackMLFormatError, match=r"sub\.csv: unparsable.*column 'track_id', line 6.*'seven'"
    ):
        read_submission(p)

    p.write_text(good)
    set_field(p, 8, "track_id", "nan")
    with pytest.raises(TrackMLFormatError, match=r"sub\.csv: non-finite.*'track_id', line 8"):
        read_submission(p)

    p.write_text(good)
    set_field(p, 9, "hit_id", "3")  # event 1000 already has hit 3 on line 4
    with pytest.raises(
        TrackMLFormatError, match=re.escape("duplicate (event_id, hit_id) pair (1000, 3)")
    ) as ei:
        read_submission(p)
    assert ei.value.line == 9 and "sub.csv" in str(ei.value)

    with pytest.raises(ValueError, match="duplicate"):
        write_submission(pd.concat([make_submission()] * 2), tmp_path / "dup.csv")
    with pytest.raises(ValueError, match="lacks column"):
        write_submission(make_submission().drop(columns="track_id"), tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        read_submission(tmp_path / "none.csv")


def test_parallel_event_writing_writes_the_same_bytes(tmp_path):
    """write_event(workers=2) forks writers (in a process without JAX): same files as serial."""
    import subprocess
    import sys

    from cgnn_jax.sim import simulate_event

    ev = simulate_event(5, mu=5.0, event_id=3)
    serial = tmp_path / "serial"
    write_event(ev, serial)
    code = (
        "import sys, pickle; from cgnn_jax.io import write_event; "
        "ev = pickle.load(open(sys.argv[1], 'rb')); "
        "assert 'jax' not in sys.modules; write_event(ev, sys.argv[2], workers=2)"
    )
    (tmp_path / "ev.pkl").write_bytes(pickle.dumps(ev))
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ev.pkl"), str(tmp_path / "par")],
        check=True,
        timeout=120,
    )
    names = sorted(p.name for p in serial.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "par").iterdir()) and len(names) == 4
    for n in names:
        assert (serial / n).read_bytes() == (tmp_path / "par" / n).read_bytes(), n


def test_csv_bytes_equals_pandas() -> None:
    """The fast writer's bytes are pandas' bytes: shortest float32 repr, NaN empty, ints, bools."""
    from cgnn_jax.io.write import csv_bytes

    rng = np.random.default_rng(0)
    f32 = np.concatenate(
        [rng.normal(size=200) * 10.0 ** rng.integers(-9, 9, 200), [np.nan, np.inf, -0.0, 1e20]]
    ).astype(np.float32)
    n = len(f32)
    df = pd.DataFrame(
        {
            "a": f32,
            "b": rng.integers(-(2**62), 2**62, n, dtype=np.int64),
            "c": rng.integers(0, 255, n).astype(np.uint8),
            "d": rng.random(n) < 0.5,
            "e": rng.normal(size=n),  # float64
        }
    )
    assert csv_bytes(df) == df.to_csv(index=False, lineterminator="\n").encode()
    # long columns of repeated values (formatted once per distinct value), NaN, -0.0 and 0.0
    m = 20_000
    rep = pd.DataFrame(
        {
            "id": rng.integers(0, 50, m).astype(np.int32),
            "big": rng.integers(-(2**40), 2**40, 40)[rng.integers(0, 40, m)],
            "charge": rng.choice(np.float32([0.3, 0.05, 1.25e-3, np.nan, 0.0]), m),
            "signed": rng.choice(np.float32([-0.0, 0.0, 2.5]), m),
            "flag": rng.random(m) < 0.1,
            # runs of a sorted id column (cells' hit ids), formatted once per run
            "sorted": np.sort(rng.integers(-5, 2**31 - 1, m // 3))[rng.integers(0, m // 3, m)],
            "runs": np.repeat(np.arange(m, dtype=np.int64) * 7, 3)[:m],
        }
    )
    rep["sorted"] = np.sort(rep["sorted"].to_numpy())
    assert csv_bytes(rep) == rep.to_csv(index=False, lineterminator="\n").encode()
    empty = df.iloc[:0]
    assert csv_bytes(empty) == empty.to_csv(index=False, lineterminator="\n").encode()
