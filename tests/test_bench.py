"""benchmarks/bench_pipeline.py: the per-stage timing and memory table on a tiny, untrained
pipeline and a μ = 10 event, and the memory helper on a toy allocation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_pipeline.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_measure_call_sees_an_allocation(bench):
    out, m = bench.measure_call(lambda: np.ones(2**25))  # 256 MiB, kept by the result
    assert out.nbytes == 2**28 and m["s"] > 0
    assert m["peak_gib"] >= m["growth_gib"]
    if m["method"] == "VmHWM":  # Linux: exact per-call peak
        assert 0.2 < m["growth_gib"] < 0.5
    first = {"s": 2.0, "growth_gib": 0.3, "peak_gib": 1.0, "method": "VmHWM"}
    runs = [{"s": s, "growth_gib": g, "peak_gib": 0.9, "method": "VmHWM"} for s, g in
            [(0.3, 0.1), (0.1, 0.2), (0.2, 0.3)]]  # fmt: skip
    r = bench.summarize(first, runs)
    assert (r["min_s"], r["median_s"], r["max_s"], r["n"]) == (0.1, 0.2, 0.3, 3)
    assert r["compile_s"] == pytest.approx(1.8) and r["peak_gib"] == 1.0
    assert (r["growth_min_gib"], r["growth_median_gib"], r["growth_max_gib"]) == (0.1, 0.2, 0.3)


def test_stage_table_on_a_tiny_pipeline(bench, tmp_path):
    from configs.default import get_config
    from tests.helpers import shrink_stage1

    c = shrink_stage1(get_config())
    c.gnn.update(num_layers=1, hidden=8, kernel_hidden=4)
    c.gnn.out_dim = c.embedding.dim
    c.cluster.update(split_hidden=(8,), stop_hidden=(8,), max_depth=6, prior_dims=0)
    pipe = bench.random_pipeline(c)
    res = bench.measure_stages(pipe, mu=10.0, repeats=2, events=1, seed=3, workdir=tmp_path)
    rows = res["rows"]
    assert list(rows) == list(bench.STAGES)
    for name, r in rows.items():
        assert r["n"] == 2, name
        assert r["first_s"] > 0 and r["min_s"] > 0, name
        assert r["min_s"] <= r["median_s"] <= r["max_s"], name
        assert 0 <= r["growth_min_gib"] <= r["growth_median_gib"] <= r["growth_max_gib"], name
        assert r["peak_gib"] > 0, name
    assert res["n_hits"][0] > 1000 and len(res["track_id"]) == res["n_hits"][0]
    assert 0 <= res["scores"]["cgnn"][0] <= 1 and 0 <= res["scores"]["dbscan"][0] <= 1
    table = bench.stage_table(rows).splitlines()
    assert len(table) == 2 + len(bench.STAGES)
    for name, line in zip(bench.STAGES, table[2:], strict=True):
        assert line.startswith(f"| {name} |")
