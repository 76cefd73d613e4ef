"""The configs: ``configs/default.py`` resolves every training step of the shipped model to the
settings it was trained with (``tests/data/default_config_steps.json``, recorded from the configs
it was trained from), and every config file loads."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS_JSON = Path(__file__).parent / "data" / "default_config_steps.json"


def resolved(config) -> dict:
    """A config as plain JSON values (tuples as lists), as the fixture holds it."""
    return json.loads(json.dumps(config.to_dict()))


def differences(want: dict, got: dict, prefix: str = "") -> list[str]:
    """``key: wanted -> got`` for every leaf that differs (missing: ``<none>``)."""
    out = []
    for k in sorted(set(want) | set(got)):
        a, b = want.get(k, "<none>"), got.get(k, "<none>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


@pytest.mark.parametrize("step", ["stage12", "mix", "dense", "sparse"])
def test_default_steps_resolve_as_trained(step):
    from configs import default

    want = json.loads(STEPS_JSON.read_text())[step]
    assert differences(want, resolved(default.get_config(step))) == []


@pytest.mark.parametrize("name", ["base", "test"])
def test_base_and_test_configs_resolve_as_before(name):
    from configs import default, test

    got = default.get_config() if name == "base" else test.get_config()
    want = json.loads(STEPS_JSON.read_text())[name]
    assert differences(want, resolved(got)) == []


def test_steps_differ_only_where_the_step_says():
    """The fixture's check is not vacuous: the steps are not all one config."""
    from configs import default

    base = resolved(default.base())
    assert differences(base, resolved(default.get_config("sparse"))) == [
        "data.vertex_sigma_z: [5.0, 60.0] -> [5.0, 100.0]",
        "gnn.learning_rate: 0.003 -> 0.001",
        "gnn.steps: 2000 -> 1000",
        "stages: ['stage1', 'stage2', 'stage3', 'e2e'] -> ['stage1', 'stage2']",
    ]


def test_export_settings_of_the_shipped_model():
    from configs import default

    e = default.get_config("export")
    assert e.graph_approx == pytest.approx(2.0)
    assert e.dense_min_hits == 25000
    assert e.sparse.input_threshold == pytest.approx(0.005)
    assert e.dense.input_threshold == pytest.approx(-1.0)  # stage 1's learned cut
    for v in (e.sparse, e.dense):
        assert v.cluster.tree_rows == "atoms"
        assert v.cluster.extend_iterations == 2
    assert (e.calibrate_merge_events, e.calibrate_stop_events) == (2, 2)


def test_knn_graph_is_the_thesis_stage1():
    """``knn_graph`` switches stage 1 to the kNN graph and nothing of stages 2-3 but the GNN's
    input cut; the shipped steps build a module map."""
    from configs import default

    base = resolved(default.base())
    assert base["graph"]["builder"] == "module_map"
    assert differences(base, resolved(default.knn_graph(default.base()))) == [
        "data.train_events: 6 -> 4",
        "filter.hidden: [64, 64, 64] -> [32, 32, 32]",
        "filter.prefilter_hidden: 32 -> 0",
        "filter.target_purity: 0.0 -> 0.5",
        "gnn.input_threshold: 0.005 -> 0.02",
        "graph.builder: 'module_map' -> 'knn'",
    ]


def test_unknown_step_names_the_valid_ones():
    from configs import default

    with pytest.raises(ValueError, match=r"configs/default.py:bogus: no such step; valid: stage12"):
        default.get_config("bogus")


@pytest.mark.parametrize(
    "path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("[!_]*.py"))
)
def test_every_config_loads(path):
    module = importlib.import_module(path[:-3].replace("/", "."))
    config = module.get_config()
    assert "stages" in config or "graph_approx" in config


def test_thesis_config_is_the_shipped_gnn_with_the_thesis_clustering():
    from cgnn_jax.inference.stage3 import atom_mode, tree_rows
    from configs import default, thesis

    c, base = thesis.get_config(), default.base()
    # every hit a row of the tree, no atoms, no layer merge, no extension; trained end to end
    assert atom_mode(c.cluster) is None and tree_rows(c.cluster) == "points"
    assert c.cluster.extend_iterations == 0 and c.cluster.e2e_epochs > 0
    assert c.stages == ("stage1", "stage2", "stage3", "e2e")
    # on the shipped stage 1 and the GNN of its 10 %-track variant, at that variant's input cut
    assert c.stage1_checkpoint == c.gnn.init_checkpoint == thesis.SHIPPED
    assert (ROOT / thesis.SHIPPED).is_dir()
    assert c.gnn.input_threshold == default.export().sparse.input_threshold
    changed = {k for k in base.gnn if c.gnn[k] != base.gnn[k]}
    assert changed == {"init_checkpoint", "steps"}
