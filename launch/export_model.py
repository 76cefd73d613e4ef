"""Copy a trained pipeline into the package as the pretrained default model.

    python launch/export_model.py --config=configs/default.py:export --workdir=workdirs/default_mix \
        --gnn=workdirs/default_sparse --dense=workdirs/default_dense [--out=cgnn_jax/pretrained/default]
    python launch/export_model.py --config=configs/default.py:export \
        --workdir=cgnn_jax/pretrained/default --out=/tmp/reexport   # make reexport
    python launch/export_model.py --workdir=cgnn_jax/pretrained/default --stage1=W --out=M
    python launch/export_model.py --workdir=workdirs/default [--out=...] \
        [--zone_bins=8 --zone_k=40 --zone_candidates=64] [--dense=workdirs/dense --dense_min_hits=N] \
        [--gnn=workdirs/sparse] [--input_threshold=0.005] [--extend_iterations=2] \
        [--tree_rows=atoms] [--calibrate_merge_events=2] [--calibrate_stop_events=2]

``--config`` gives the inference settings (``configs/default.py:export``, :func:`configs.default.
export`): stage 1's ``graph_approx``, ``dense_min_hits``, per variant (``sparse``: the model,
``dense``: its dense variant) the GNN's ``input_threshold`` and the ``cluster`` settings (the tree,
the extension, the layer merge the calibration starts from), and the calibration's events. A flag
given on the command line overrides the config's value (``--config.dense.input_threshold=0.1``
too); without ``--config`` only the flags given change the model. Re-exported from the shipped
model itself (``--workdir=cgnn_jax/pretrained/default``, no ``--gnn``/``--dense``: its dense
variant kept), the config's settings and calibrations give the shipped model's submissions again.

``--dense`` attaches the stages 2-3 of another pipeline trained on the same stage 1 (e.g. on full
mu = 200 events), or the GNN of a stage-2 workdir fine-tuned from this model's (with this
model's Split/Stop), as the model's dense variant: ``Pipeline.reconstruct`` runs it on events of at
least ``--dense_min_hits`` hits (:meth:`cgnn_jax.inference.Pipeline.for_hits`).
``--gnn`` replaces the (non-dense) model's GNN by a stage-2 workdir's, fine-tuned from it on
the same stage 1 (its Split/Stop kept). ``--input_threshold`` sets the edge-filter cut of the
(non-dense) model's GNN input graph (``gnn.input_threshold``), an inference setting.

``--stage1`` puts another stage 1 (a stage-1 workdir or a pipeline; e.g. the model's own with a
context filter trained onto it, ``configs/experiments/context_filter.py``) under the model and
its dense variant (:func:`cgnn_jax.inference.variants.with_stage1`): its config, parameters and
learned cuts; stages 2-3 kept.

``--extend_iterations=N`` sets the track extension along helix roads
(:mod:`cgnn_jax.cluster.extend`, an inference step after the clustering; 0: off) of the model and
its dense variant, with the extension's default road widths where their configs have none.

``--tree_rows=atoms`` runs the inference tree of the model and its dense variant on one weighted row
per atom instead of one per hit (``cluster.tree_rows``, :func:`cgnn_jax.cluster.recursion.atom_rows`;
``points``: per hit).

``--calibrate_merge_events=N`` chooses the layer merge's cut and shared-layer limit
(``cluster.merge_threshold``, ``merge_max_shared``) and, with the extension on, its free size
(``extend_free_max``, ``extend_min_size``), by :func:`cgnn_jax.train.stage3.calibrate_merge` over
its grid, scoring the tracks as ``reconstruct`` delivers them; per variant on ``N`` validation
events, as below, between two choices of Stop's cut (with ``--calibrate_stop_events``).

``--calibrate_stop_events=N`` chooses Stop's cut again, for the GNN each variant now runs
(:func:`cgnn_jax.train.stage3.calibrate_stop_threshold` over its grid), on ``N`` validation
events of the model's config (the seeds stage-3 training validates on, never a test seed): the
model at its GNN training events' track fraction, the dense variant on full events.

``--zone_bins`` > 0 adds (or replaces) the stage-1 zone map (:mod:`cgnn_jax.graph.zones`),
learned from the truth of the stage-1 training events (simulated again from the stage-1
config's data seed), to a model trained without one; nothing else of the model changes.

The checkpoint is written to a temporary folder beside ``--out`` and swapped in only when
complete, so an interrupted export leaves the previous pretrained model intact.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import _bootstrap  # noqa: F401
import _cli
import ml_collections
from absl import flags
from ml_collections import config_flags

from cgnn_jax.inference import PRETRAINED_DIR

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Inference settings (configs/default.py:export).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Training workdir (or pipeline checkpoint).", required=True)
flags.DEFINE_string("out", str(PRETRAINED_DIR), "Destination folder.")
flags.DEFINE_string("stage1", None, "Stage-1 workdir or pipeline whose stage 1 the model takes.")
flags.DEFINE_integer("zone_bins", 0, "> 0: learn a zone map with this many zones per layer.")
flags.DEFINE_integer("zone_k", 40, "With --zone_bins: neighbours per hit in allowed zones.")
flags.DEFINE_integer("zone_candidates", 64, "With --zone_bins: nearest hits queried first.")
flags.DEFINE_string(
    "dense", None, "Pipeline, or stage-2 workdir, whose stages 2-3 reconstruct dense events."
)
flags.DEFINE_integer(
    "dense_min_hits", None, "Events of >= this many hits use the dense variant (default 50000)."
)
flags.DEFINE_string(
    "gnn", None, "Stage-2 workdir whose GNN (fine-tuned from this model's) replaces the GNN."
)
flags.DEFINE_float(
    "input_threshold", None, "Set the GNN input graph's filter cut (not the dense's)."
)
flags.DEFINE_float(
    "dense_input_threshold", None, "Set the dense variant's GNN input graph's filter cut."
)
flags.DEFINE_float(
    "graph_approx", None, "Set the stage-1 kd-tree query's approximation (graph.approx), both."
)
flags.DEFINE_integer(
    "extend_iterations", None, "Set the track extension's rounds (0: off), both variants."
)
flags.DEFINE_enum(
    "tree_rows",
    None,
    ["points", "atoms"],
    "Set what a row of the inference tree is, both variants.",
)
flags.DEFINE_integer(
    "calibrate_merge_events", None, "> 0: choose each variant's merge/extension sizes on N events."
)
flags.DEFINE_integer(
    "calibrate_stop_events",
    None,
    "> 0: choose each variant's Stop cut again on N validation events.",
)

#: The keys of an export config (``configs/default.py:export``) and of each of its variants.
EXPORT_KEYS = (
    "graph_approx",
    "dense_min_hits",
    "sparse",
    "dense",
    "calibrate_merge_events",
    "calibrate_stop_events",
)
VARIANT_KEYS = ("input_threshold", "cluster")
DEFAULT_DENSE_MIN_HITS = 50000


def export_settings(config: ml_collections.ConfigDict | None, where: str) -> dict:
    """The inference settings of ``config`` (an export config) as a dict, None for those it does
    not give; ``ValueError`` naming ``where`` (the flag) if it is not an export config."""
    if config is None:
        return {k: None for k in EXPORT_KEYS}
    missing = [k for k in EXPORT_KEYS if k not in config]
    for v in ("sparse", "dense"):
        if v in config:
            missing += [f"{v}.{k}" for k in VARIANT_KEYS if k not in config[v]]
    if missing:
        raise ValueError(
            f"{where}: not an export config (lacks {', '.join(missing)}); "
            "use e.g. --config=configs/default.py:export"
        )
    out = {k: config[k] for k in EXPORT_KEYS}
    for v in ("sparse", "dense"):
        out[v] = {"input_threshold": config[v].input_threshold, "cluster": dict(config[v].cluster)}
    return out


def either(flag: str, value):
    """The flag's value if it was given, else ``value`` (the config's)."""
    given = getattr(FLAGS, flag)
    return value if given is None else given


def with_zone_map(pipe, bins: int, k: int, candidates: int):
    """``pipe`` with a zone map learned from its stage-1 training events."""
    import dataclasses

    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.stage1 import training_zone_map

    c1 = pipe.stage1_config.copy_and_resolve_references()
    events = TrainingEvents(c1, log=lambda *a: None).train
    zm = training_zone_map(events, bins)
    with c1.unlocked():
        c1.graph.zone_bins, c1.graph.zone_k, c1.graph.candidates = bins, k, candidates
    meta = dict(pipe.meta)
    meta["learned"] = {**pipe.learned, "zone_map": zm.to_json()}
    print(f"zone map: {bins} zones per layer from {len(events)} stage-1 training events")
    return dataclasses.replace(pipe, stage1_config=c1, meta=meta)


def with_stage2_gnn(pipe, path: str, flag: str):
    """``pipe`` (without its dense variant) with the GNN of the stage-2 workdir ``path``,
    fine-tuned from it on the same stage 1; its Split/Stop and Stop's cut kept."""
    from cgnn_jax.inference import Stage2

    s2 = Stage2.restore(path)
    s1 = (
        None
        if s2.stage1 is None
        else {"embedding": s2.stage1.emb_params, "filter": s2.stage1.filter_params}
    )
    try:
        return pipe.with_dense(None).with_gnn(s2.params, s1)
    except ValueError as e:
        raise ValueError(f"{flag}={path}: {e}") from None


def dense_variant(pipe, path: str):
    """The dense variant in ``path``: a whole pipeline (its stages 2-3), or a stage-2 workdir whose
    GNN (fine-tuned from ``pipe``'s on the same stage 1) replaces ``pipe``'s, with ``pipe``'s
    Split/Stop and Stop's cut."""
    from cgnn_jax.inference import Pipeline
    from cgnn_jax.inference.checkpoint import CheckpointError

    try:
        return Pipeline.restore(path).with_dense(None)
    except CheckpointError as first:
        try:
            return with_stage2_gnn(pipe, path, "--dense")
        except (CheckpointError, FileNotFoundError):
            raise first from None


def with_input_threshold(pipe, cut: float, what: str = "GNN input graph"):
    """``pipe`` with its GNN input graph's filter cut ``gnn.input_threshold`` set to ``cut``."""
    import dataclasses

    config = pipe.config.copy_and_resolve_references()
    with config.unlocked():
        config.gnn.input_threshold = float(cut)
    print(f"{what}: filter cut {cut}")
    return dataclasses.replace(pipe, config=config)


def with_graph_approx(pipe, approx: float):
    """``pipe`` with its stage-1 kd-tree query's approximation ``graph.approx`` set to ``approx``
    (neighbours within ``1 + approx`` times the true k-th distance; the dense variant shares it)."""
    import dataclasses

    c1 = pipe.stage1_config.copy_and_resolve_references()
    with c1.unlocked():
        c1.graph.approx = float(approx)
    print(f"stage-1 graph: kd-tree approximation {approx}")
    return dataclasses.replace(pipe, stage1_config=c1)


def each_variant(pipe, fn):
    """``pipe`` with ``fn(variant, dense)`` applied to the model (``dense`` False) and to its dense
    variant (True), if it has one."""
    out = fn(pipe.with_dense(None), False)
    if pipe.dense is not None:
        out = out.with_dense(fn(pipe.dense, True), pipe.dense_min_hits)
    return out


def with_extension(pipe, iterations: int):
    """``pipe`` and its dense variant with ``cluster.extend_iterations = iterations`` (the road
    widths and sizes of :data:`cgnn_jax.cluster.extend.DEFAULTS` where a config has none)."""
    from cgnn_jax.cluster.extend import DEFAULTS

    def one(p):
        missing = {
            f"extend_{k}": v for k, v in DEFAULTS.items() if f"extend_{k}" not in p.config.cluster
        }
        return p.with_cluster_config(**missing, extend_iterations=int(iterations))

    out = each_variant(pipe, lambda p, _: one(p))
    print(f"track extension: {iterations} rounds" if iterations else "track extension: off")
    return out


def with_calibrated(pipe, n_merge: int, n_stop: int):
    """``pipe`` (and its dense variant, on full events) with the layer merge's settings chosen on
    ``n_merge`` whole validation events of its config, then Stop's cut on ``n_stop`` (0: not);
    with both, Stop's cut is chosen first too, so that the merge is scored at the cut Stop gets."""
    from cgnn_jax.train.data import TrainingEvents
    from cgnn_jax.train.stage3 import calibrate_merge, calibrate_stop_threshold

    events = TrainingEvents(pipe.config)
    n = max(n_merge, n_stop)

    def one(p, fraction):
        val = events.validation_events(n, fraction)
        if n_merge and n_stop:  # the merge is scored at the cut Stop would get
            p = calibrate_stop_threshold(p, val[:n_stop])
        if n_merge:
            p = calibrate_merge(p, val[:n_merge])
        if n_stop:
            p = calibrate_stop_threshold(p, val[:n_stop])
        return p

    return each_variant(pipe, lambda p, dense: one(p, 1.0 if dense else events.gnn_fraction))


def main(argv: list[str]) -> None:
    del argv
    from cgnn_jax.inference import Pipeline

    where = (
        "--config"
        if FLAGS.config is None
        else f"--config={config_flags.get_config_filename(FLAGS['config'])}"
    )
    cfg = export_settings(FLAGS.config, where)
    sparse, dense_cfg = cfg["sparse"] or {}, cfg["dense"] or {}
    graph_approx = either("graph_approx", cfg["graph_approx"])
    input_cut = either("input_threshold", sparse.get("input_threshold"))
    dense_cut = either("dense_input_threshold", dense_cfg.get("input_threshold"))
    n_merge = either("calibrate_merge_events", cfg["calibrate_merge_events"]) or 0
    n_stop = either("calibrate_stop_events", cfg["calibrate_stop_events"]) or 0
    for name, n in (("calibrate_merge_events", n_merge), ("calibrate_stop_events", n_stop)):
        if n < 0:
            raise ValueError(f"--{name}={n}: need >= 0")
    if FLAGS.extend_iterations is not None and FLAGS.extend_iterations < 0:
        raise ValueError(f"--extend_iterations={FLAGS.extend_iterations}: need >= 0")
    for name, cut in (("input_threshold", input_cut), ("dense_input_threshold", dense_cut)):
        if cut is not None and not cut < 1.0:
            raise ValueError(f"--{name}={cut}: need cut < 1 (< 0: stage 1's learned cut)")
    if graph_approx is not None and graph_approx < 0:
        raise ValueError(f"--graph_approx={graph_approx}: need >= 0")
    min_hits_given = either("dense_min_hits", cfg["dense_min_hits"])
    if min_hits_given is not None and min_hits_given < 1:
        raise ValueError(f"--dense_min_hits={min_hits_given}: need >= 1")
    pipe = Pipeline.restore(FLAGS.workdir)
    if FLAGS.stage1:
        from cgnn_jax.inference import restore_stage1
        from cgnn_jax.inference.variants import with_stage1

        pipe = with_stage1(pipe, restore_stage1(FLAGS.stage1))
        print(f"stage 1 from {FLAGS.stage1}")
    if graph_approx is not None:
        pipe = with_graph_approx(pipe, graph_approx)
    if FLAGS.zone_bins < 0 or FLAGS.zone_k < 1 or FLAGS.zone_candidates < FLAGS.zone_k:
        raise ValueError("need --zone_bins >= 0, --zone_k >= 1, --zone_candidates >= --zone_k")
    if FLAGS.zone_bins:
        pipe = with_zone_map(pipe, FLAGS.zone_bins, FLAGS.zone_k, FLAGS.zone_candidates)
    # kept unless --dense replaces it; re-attached below (with_dense gives it the stage-1 config)
    dense, min_hits = pipe.dense, pipe.dense_min_hits
    if FLAGS.dense:
        dense, min_hits = dense_variant(pipe, FLAGS.dense), DEFAULT_DENSE_MIN_HITS
    if min_hits_given is not None:
        min_hits = min_hits_given
    if FLAGS.gnn:
        pipe = with_stage2_gnn(pipe, FLAGS.gnn, "--gnn")
        print(f"GNN from {FLAGS.gnn}")
    if input_cut is not None:
        pipe = with_input_threshold(pipe, input_cut)
    if dense_cut is not None:
        if dense is None and FLAGS.dense_input_threshold is not None:
            raise ValueError("--dense_input_threshold: the model has no dense variant (--dense)")
        if dense is not None:
            dense = with_input_threshold(dense, dense_cut, "the dense variant's GNN input graph")
    if dense is not None:
        try:
            pipe = pipe.with_dense(dense, min_hits)
        except ValueError as e:
            raise ValueError(f"--dense={FLAGS.dense}: {e}") from None
        if FLAGS.dense:
            print(f"dense variant from {FLAGS.dense} for events of >= {min_hits} hits")
    if sparse or dense_cfg:  # the config's cluster settings, per variant
        pipe = each_variant(
            pipe,
            lambda p, is_dense: p.with_cluster_config(
                **(dense_cfg if is_dense else sparse).get("cluster", {})
            ),
        )
        print("cluster settings per variant from the config")
    if FLAGS.extend_iterations is not None:
        pipe = with_extension(pipe, FLAGS.extend_iterations)
    if FLAGS.tree_rows is not None:
        pipe = each_variant(pipe, lambda p, _: p.with_cluster_config(tree_rows=FLAGS.tree_rows))
        print(f"inference tree on {FLAGS.tree_rows}")
    if n_merge or n_stop:
        pipe = with_calibrated(pipe, n_merge, n_stop)
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        pipe.save(tmp / "checkpoints", step=0)
        Pipeline.restore(tmp)  # check it reads back before replacing anything
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"pretrained model -> {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    _cli.run(
        main,
        inputs=("workdir", "dense", "gnn", "stage1"),
        replaced=("out",),
        pretrained_is_input=False,
    )
