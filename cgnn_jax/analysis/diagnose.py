"""The stage-ceiling diagnostic: where a trained pipeline loses its TrackML score.

For every event, :func:`diagnose_event` runs the pipeline once
(:meth:`cgnn_jax.Pipeline.stage_outputs`) and measures each stage against the truth with the
ceilings of :mod:`cgnn_jax.metrics.ceilings`:

==================  =========================================================================
stage               figures
==================  =========================================================================
embedding graph     edges per hit, purity, recall over consecutive hits, oracle-completed
                    connected-components ceiling (the best any later stage could do with it)
refined graph       the same, on the filtered graph the GNN sees
GNN                 ROC AUC of the learned edge weights ``a_ij`` on the refined graph (of their
                    mean over layers, and of the last layer), efficiency / purity of the edges
                    with ``a_ij > 0.5`` (last layer) and the score of their connected components;
                    in the GNN output space: the ROC AUC of ``-distance`` over the refined
                    graph's edges and the particles' compactness (median, 90 % quantile;
                    :func:`cgnn_jax.metrics.ceilings.compactness`)
clustering          the oracle-Stop ceiling (best pruning of the full Split tree), the same
                    ceiling of two reference trees with no learned part (principal-direction
                    divisive partitioning, :func:`principal_tree`, in the GNN output and in the
                    stage-1 embedding), and the pipeline's actual score; beside it the
                    references the learned tree must beat (:func:`cluster_space_references`):
                    Stop's cut in use, the pipeline with Stop never stopping (``stop_off``),
                    DBSCAN and HDBSCAN in the cluster space ``h`` Split/Stop see
==================  =========================================================================

Averages over events are plain means of the per-event figures (NaNs left out; for compactness, the
mean of the per-event median and 90 % quantile).

The *chain* ``perfect -> embedding ceiling -> refined ceiling -> oracle-Stop ceiling -> pipeline``
falls stage by stage; its largest drop (:func:`largest_drop`) names the stage to work on:

* perfect -> embedding: graph construction (the stage-1 embedding and its neighbour query);
* embedding -> refined: the stage-1 edge filter;
* refined -> oracle-Stop: the GNN's cluster space and Split (the full Split tree, pruned by an
  oracle). The GNN figures and the reference trees tell which of the two: a compact GNN space whose
  principal-axis tree allows more than the Split tree blames Split; a GNN space whose reference
  tree allows no more than the stage-1 embedding's blames the GNN;
* oracle-Stop -> pipeline: Stop; and, where the model has them, iterative re-clustering and the
  track extension along helix roads (:mod:`cgnn_jax.cluster.extend`), which gives hits the graph
  missed to their tracks and so may raise the pipeline above the oracle-Stop ceiling (a negative
  drop). The trees table shows the tree's own leaves (``tree``) beside the pipeline.

The full Split tree is the tree Split builds when Stop never stops (clusters are split until they
are smaller than ``cluster.min_size`` or ``cluster.max_depth`` levels are done); Split decides per
cluster, so the pipeline's own tree is one of its prunings and the oracle-Stop ceiling is never
below the pipeline's Stop (without iterative re-clustering). Split is not confined to the graph's
edges, so the oracle-Stop ceiling may exceed the refined-graph ceiling (a negative drop).

The references of the clustering (``clustering`` keys):

* ``stop_threshold``: Stop's cut used by the variant that ran (:attr:`Stage3.stop_threshold
  <cgnn_jax.inference.Stage3.stop_threshold>`; Stop stops a cluster whose vote exceeds it, so
  at 1 or more Stop decides nothing);
* ``stop_off`` / ``stop_off_tree``: the pipeline's score / its tree's leaves with Stop's cut at
  :data:`STOP_NEVER` (the tree split down to its leaves: clusters below ``cluster.min_size``,
  ``cluster.max_depth`` levels), everything else as the pipeline runs it (atoms, tree rows,
  re-clustering, extension). Equal to ``pipeline`` / ``stop_actual`` when the cut is already 1
  or more;
* ``dbscan_latent``: DBSCAN (``min_samples`` 2) in ``h`` at ``dbscan_eps``, the radius of
  :data:`DBSCAN_EPS_GRID` that scores best on separate validation events
  (:func:`tune_dbscan_eps`; NaN when none is given);
* ``hdbscan_latent``: HDBSCAN (``min_cluster_size`` 3) in ``h``; NaN on events of more than
  ``hdbscan_max_hits`` hits (scikit-learn's HDBSCAN grows as ``n^2.2``: ~50 s on a full event).

Neither reference gets the model's track extension: compare them with the tree (``stop_actual``).

Only the public :class:`cgnn_jax.Pipeline` API is used (``stage_outputs``, ``reconstruct``,
``params``, ``config``, ``stage2``, ``stage3``); the edge weights
``a_ij`` are recomputed from the restored parameters and checked against ``stage_outputs["gnn"]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from cgnn_jax.analysis.graph_quality import graph_figures
from cgnn_jax.baselines.space import dbscan_space, hdbscan_space
from cgnn_jax.cluster.recursion import unrolled_clustering
from cgnn_jax.graph.batch import padded_graph
from cgnn_jax.graph.module_map import map_coverage, module_keys
from cgnn_jax.inference.events import as_prepared
from cgnn_jax.inference.stage3 import pad_groups
from cgnn_jax.io.event import Event
from cgnn_jax.metrics.ceilings import (
    compactness,
    components,
    edge_efficiency_purity,
    edge_truth,
    oracle_stop,
    roc_auc,
    score_labels,
)
from cgnn_jax.models.split_stop import principal_projection
from cgnn_jax.utils.padding import padded_points

if TYPE_CHECKING:  # pragma: no cover
    from cgnn_jax.inference import Pipeline

#: The chain of ceilings, in pipeline order: (key, label).
CHAIN: tuple[tuple[str, str], ...] = (
    ("perfect", "perfect"),
    ("embedding_ceiling", "embedding-graph ceiling"),
    ("refined_ceiling", "refined-graph ceiling"),
    ("oracle_stop_ceiling", "oracle-Stop ceiling"),
    ("pipeline", "pipeline"),
)
#: What loses the score between two consecutive columns of :data:`CHAIN`.
DROPS: tuple[str, ...] = (
    "graph construction (stage-1 embedding and neighbour query)",
    "edge filter (stage 1)",
    "GNN cluster space + Split (stages 2-3)",
    "Stop (stage 3)",
)
A_CUT = 0.5
A_STRICT = 0.9  # a second, stricter cut: the components that stay pure
#: Stop's cut for ``stop_off``: above any vote (a sigmoid), so Stop never stops a cluster.
STOP_NEVER = 2.0
#: DBSCAN radii in the cluster space tried by :func:`tune_dbscan_eps`.
DBSCAN_EPS_GRID: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7)
#: Events above this many hits get no HDBSCAN reference (too slow; see the module docstring).
HDBSCAN_MAX_HITS = 60_000


def event_truth(event: Event) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(particle_id [n], weight [n], pos [n, 3])`` of an event's hits, in hit row order.

    Raises:
      ValueError: the event has no truth (particle ids and weights are needed).
    """
    if event.truth is None:
        raise ValueError(
            f"event {event.event_id} has no truth file: "
            "the diagnostic needs particle ids and weights"
        )
    tr = event.truth.set_index("hit_id").reindex(event.hits["hit_id"].to_numpy())
    if tr["particle_id"].isna().any():
        raise ValueError(f"event {event.event_id}: the truth lacks some hits of the hits file")
    pid = tr["particle_id"].to_numpy(np.int64)
    weight = tr["weight"].to_numpy(np.float64)
    pos = event.hits[["x", "y", "z"]].to_numpy(np.float64)
    return pid, weight, pos


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gnn_weights_jit(emb_model, gnn_model, p_emb, p_gnn, graph, edge_mask, node_mask):
    x = graph.nodes
    e = emb_model.apply(p_emb, x) * node_mask[:, None]
    g = graph._replace(nodes=jnp.concatenate([x, e], axis=-1))
    out, weights = gnn_model.apply(p_gnn, g, edge_mask, node_mask, return_weights=True)
    return out, jnp.stack(weights)


def gnn_edge_weights(
    pipe: Pipeline, features: np.ndarray, senders: np.ndarray, receivers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The GNN's output ``[n, out]`` and its learned edge weights ``a_ij [layers, E]`` on the
    graph ``senders -> receivers [E]`` of hits with features ``[n, F]``.

    Recomputed from ``pipe.params`` (``input_embedding``, ``gnn``) the way the pipeline's stage 2
    feeds the GNN: nodes ``[hit features, input embedding]``.
    """
    n, e = len(features), len(senders)
    g = padded_graph(np.asarray(features, np.float32), senders, receivers)
    stage2 = pipe.stage2
    out, a = _gnn_weights_jit(
        stage2.emb_model,
        stage2.gnn_model,
        pipe.params["input_embedding"],
        pipe.params["gnn"],
        g.graph,
        g.edge_mask,
        g.node_mask,
    )
    return np.asarray(out)[:n], np.asarray(a)[:, :e]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _split_tree_jit(split, max_depth, min_size, p_split, h, mask, groups=None):
    return unrolled_clustering(
        lambda *a: split.apply(p_split, *a),
        lambda h_, seg, mask_, n: jnp.zeros(n, h_.dtype),  # Stop never stops
        h,
        mask,
        max_depth,
        min_size,
        0.5,
        groups,
        compact=True,
    )


def split_tree(pipe: Pipeline, h: np.ndarray, groups: np.ndarray | None = None) -> dict:
    """The full Split tree on ``h [n, D]`` (Stop switched off), unpadded: ``segment [L+1, n]``,
    ``active [L, n]`` (per segment id), ``cluster [n]``; ``L = cluster.max_depth``. ``groups``:
    the graph-consistent Split's atoms, as the pipeline uses them."""
    cc = pipe.config.cluster
    n = len(h)
    hp, mask = padded_points(h)
    split, _ = pipe.stage3.split_stop
    out = _split_tree_jit(
        split,
        int(cc.max_depth),
        int(cc.min_size),
        pipe.params["split"],
        hp,
        mask,
        pad_groups(groups, len(hp)),
    )
    return {
        "segment": np.asarray(out["segment"])[:, :n],
        "active": np.asarray(out["active"])[:, :n],
        "cluster": np.asarray(out["cluster"])[:n],
    }


@functools.partial(jax.jit, static_argnums=(0, 1))
def _principal_tree_jit(max_depth, min_size, h, mask):
    return unrolled_clustering(
        lambda h_, seg, mask_, n: jax.nn.sigmoid(principal_projection(h_, seg, mask_, n)),
        lambda h_, seg, mask_, n: jnp.zeros(n, h_.dtype),
        h,
        mask,
        max_depth,
        min_size,
        0.5,
        compact=True,
    )


def principal_tree(h: np.ndarray, max_depth: int = 40, min_size: int = 3) -> dict[str, np.ndarray]:
    """A reference tree with no learned part: every cluster of ``h [n, D]`` is cut at its
    centroid across its first principal axis (principal-direction divisive partitioning), until
    it is smaller than ``min_size``; the same unpadded ``segment``/``active``/``cluster`` as
    :func:`split_tree`. Its oracle-Stop ceiling measures a space without Split."""
    n = len(h)
    hp, mask = padded_points(h)
    out = _principal_tree_jit(int(max_depth), int(min_size), hp, mask)
    return {
        "segment": np.asarray(out["segment"])[:, :n],
        "active": np.asarray(out["active"])[:, :n],
        "cluster": np.asarray(out["cluster"])[:n],
    }


def _with_tracks(pipe: Pipeline, event: Event, tree_tid: np.ndarray, stage3=None) -> np.ndarray:
    """The pipeline's tracks from its tree's leaves ``tree_tid [n]``: iterative re-clustering
    (by ``pipe.reconstruct``) or the track extension, where the model has them."""
    cc = pipe.config.cluster
    if cc.get("iterative_rounds", 0) > 0:
        return pipe.reconstruct(event)
    if cc.get("extend_iterations", 0) > 0:
        return (stage3 or pipe.stage3).extend(as_prepared(event), tree_tid)
    return np.asarray(tree_tid)


def stop_off(pipe: Pipeline, event: Event, parts: dict[str, Any]) -> dict[str, np.ndarray]:
    """The pipeline with Stop never stopping (its cut at :data:`STOP_NEVER`), everything else as
    it runs (the variant ``pipe`` itself, not :meth:`~cgnn_jax.Pipeline.for_hits`): ``{"tree":
    [n] the tree's leaves, "tracks": [n] after re-clustering / extension}``; ``parts``:
    ``pipe.stage_outputs(event)`` (its GNN output, edge scores and graph are reused)."""
    st3 = dataclasses.replace(pipe.stage3, stop_threshold=STOP_NEVER)
    cc = pipe.config.cluster
    iterative = cc.get("iterative_rounds", 0) > 0
    ev = as_prepared(event)
    out = st3.outputs(
        ev,
        np.asarray(parts["gnn"]),
        np.asarray(parts["edge_score"]),
        np.asarray(parts["senders"]),
        np.asarray(parts["receivers"]),
        votes=iterative,
    )
    tracks = st3.tracks(ev, out) if iterative else _with_tracks(pipe, event, out["track_id"], st3)
    return {"tree": np.asarray(out["track_id"]), "tracks": np.asarray(tracks)}


def tune_dbscan_eps(
    pipe: Pipeline, events: Iterable[Event], grid: Sequence[float] = DBSCAN_EPS_GRID
) -> dict[str, Any]:
    """The DBSCAN radius in the cluster space ``h`` that maximises the mean score over
    ``events`` (validation events with truth, never the test events; each by the variant
    :meth:`~cgnn_jax.Pipeline.for_hits` picks): ``{"eps", "scores": [per radius of grid],
    "grid", "events"}``.

    Raises:
      ValueError: no events, or an empty grid.
    """
    grid = [float(e) for e in grid]
    if not grid:
        raise ValueError("tune_dbscan_eps: the eps grid is empty")
    table = []
    for event in events:
        pid, weight, _ = event_truth(event)
        h = np.asarray(pipe.stage_outputs(event, cluster=False)["h"])
        table.append([score_labels(pid, dbscan_space(h, eps), weight) for eps in grid])
    if not table:
        raise ValueError("tune_dbscan_eps: no validation events")
    scores = np.mean(table, axis=0)
    return {
        "eps": grid[int(np.argmax(scores))],
        "scores": [float(x) for x in scores],
        "grid": grid,
        "events": len(table),
    }


def cluster_space_references(
    h: np.ndarray,
    pid: np.ndarray,
    weight: np.ndarray,
    dbscan_eps: float | None = None,
    hdbscan_max_hits: int = HDBSCAN_MAX_HITS,
) -> dict[str, float]:
    """DBSCAN at ``dbscan_eps`` (NaN when None) and HDBSCAN (NaN above ``hdbscan_max_hits``
    points) of the cluster space ``h [n, D]``, scored: ``{"dbscan_latent", "dbscan_eps",
    "hdbscan_latent", "hdbscan_seconds"}``."""
    nan = float("nan")
    out = {"dbscan_latent": nan, "dbscan_eps": nan, "hdbscan_latent": nan, "hdbscan_seconds": nan}
    if dbscan_eps is not None:
        out["dbscan_latent"] = score_labels(pid, dbscan_space(h, float(dbscan_eps)), weight)
        out["dbscan_eps"] = float(dbscan_eps)
    if len(h) <= hdbscan_max_hits:
        t = time.perf_counter()
        labels = hdbscan_space(h, min_cluster_size=3)
        out["hdbscan_seconds"] = time.perf_counter() - t
        out["hdbscan_latent"] = score_labels(pid, labels, weight)
    return out


def _quantile(x: np.ndarray, q: float) -> float:
    return float(np.quantile(x, q)) if len(x) else float("nan")


def diagnose_event(
    pipe: Pipeline,
    event: Event,
    dbscan_eps: float | None = None,
    hdbscan_max_hits: int = HDBSCAN_MAX_HITS,
) -> dict[str, Any]:
    """Every figure of the diagnostic for one event with truth (see the module docstring);
    ``dbscan_eps``, ``hdbscan_max_hits``: the cluster-space references'
    (:func:`cluster_space_references`; the radius tuned on other events, :func:`tune_dbscan_eps`).

    Returns:
      ``{"event_id", "n_hits", "seconds", "embedding": {...}, "refined": {...}, "gnn": {...},
      "clustering": {...}, "chain": {...}}``; ``chain`` holds the ceilings in pipeline order
      (keys of :data:`CHAIN`).
    """
    t0 = time.perf_counter()
    pid, weight, pos = event_truth(event)
    n = len(pid)
    run = pipe.for_hits(n)  # the dense variant on a dense event, as reconstruct() picks it
    variant, pipe = ("dense" if run is not pipe else "default"), run
    parts = pipe.stage_outputs(event)
    if len(parts["pid"]) != n or not np.array_equal(np.asarray(parts["pid"]), pid):
        raise RuntimeError("Pipeline.stage_outputs: its pid is not in the event's hit order")

    emb = graph_figures(parts["emb_senders"], parts["emb_receivers"], pid, weight, pos)
    stage1 = pipe.stage1
    if stage1.builder == "module_map":
        emb["map_coverage"] = map_coverage(stage1.module_map, module_keys(event.hits), pos, pid)
    ref = graph_figures(parts["senders"], parts["receivers"], pid, weight, pos)

    # stage 2: the learned edge weights on the refined graph, and the GNN output space
    s, r = np.asarray(parts["senders"]), np.asarray(parts["receivers"])
    if "gnn_edge_weights" in parts:  # if the pipeline ever returns them itself
        a = np.asarray(parts["gnn_edge_weights"])
    else:
        out, a = gnn_edge_weights(pipe, parts["features"], s, r)
        ref_out = np.asarray(parts["gnn"])
        tol = 1e-3 * max(1.0, float(np.abs(ref_out).max(initial=0.0)))
        if out.shape != ref_out.shape or not np.allclose(out, ref_out, atol=tol):
            raise RuntimeError(
                "the GNN recomputed from Pipeline.params differs from stage_outputs['gnn']: "
                "the pipeline's stage 2 changed; stage_outputs should return 'gnn_edge_weights'"
            )
    y = edge_truth(s, r, pid)
    a_mean = a.mean(axis=0) if len(a) else np.zeros(len(s))
    a_last = a[-1] if len(a) else np.zeros(len(s))
    keep = a_last > A_CUT
    cc_labels = components(s[keep], r[keep], n)
    g_out = np.asarray(parts["gnn"])
    ratios = compactness(g_out, pid)
    dist = np.linalg.norm(g_out[s] - g_out[r], axis=1)
    eff_last = edge_efficiency_purity(a_last, y, A_CUT)
    eff_mean = edge_efficiency_purity(a_mean, y, A_CUT)
    gnn = {
        "auc_mean_layers": roc_auc(a_mean, y),
        "auc_last_layer": roc_auc(a_last, y),
        "auc_per_layer": [roc_auc(ak, y) for ak in a],
        "auc_distance": roc_auc(-dist, y),
        "efficiency_last": eff_last["efficiency"],
        "purity_last": eff_last["purity"],
        "efficiency_mean": eff_mean["efficiency"],
        "purity_mean": eff_mean["purity"],
        "components_score": score_labels(pid, cc_labels, weight),
        "components_score_strict": score_labels(
            pid, components(s[a_last > A_STRICT], r[a_last > A_STRICT], n), weight
        ),
        "atoms_score": (
            score_labels(pid, np.asarray(parts["groups"]), weight)
            if parts.get("groups") is not None
            else float("nan")
        ),
        "compactness_median": _quantile(ratios, 0.5),
        "compactness_q90": _quantile(ratios, 0.9),
        "compactness_particles": len(ratios),
    }

    # stage 3: the full Split tree pruned by an oracle, and what the pipeline delivers
    tree = split_tree(pipe, np.asarray(parts["h"]), parts.get("groups"))
    ceiling, _ = oracle_stop(tree["segment"], tree["active"], pid, weight)
    cc = pipe.config.cluster
    depth, min_size = int(cc.max_depth), int(cc.min_size)
    ref_gnn = principal_tree(g_out, depth, min_size)
    ref_emb = principal_tree(np.asarray(parts["embedding"]), depth, min_size)
    stop_actual = score_labels(pid, parts["track_id"], weight)
    final = score_labels(pid, _with_tracks(pipe, event, parts["track_id"]), weight)
    off = stop_off(pipe, event, parts)
    refs = cluster_space_references(
        np.asarray(parts["h"]), pid, weight, dbscan_eps, hdbscan_max_hits
    )
    truth_labels = np.where(pid != 0, pid, -1 - np.arange(n))
    clustering = {
        "oracle_stop_ceiling": ceiling,
        "split_leaves_score": score_labels(pid, tree["cluster"], weight),
        "split_levels": int(tree["active"].any(axis=1).sum()),
        "split_largest_leaf": int(np.bincount(tree["cluster"]).max(initial=0)),
        "principal_tree_gnn_ceiling": oracle_stop(
            ref_gnn["segment"], ref_gnn["active"], pid, weight
        )[0],
        "principal_tree_embedding_ceiling": oracle_stop(
            ref_emb["segment"], ref_emb["active"], pid, weight
        )[0],
        "stop_actual": stop_actual,
        "pipeline": final,
        "tracks": len(np.unique(parts["track_id"])),
        "stop_threshold": float(pipe.stage3.stop_threshold),
        "stop_off": score_labels(pid, off["tracks"], weight),
        "stop_off_tree": score_labels(pid, off["tree"], weight),
        "stop_off_tracks": len(np.unique(off["tree"])),
        **refs,
    }
    chain = {
        "perfect": score_labels(pid, truth_labels, weight),
        "embedding_ceiling": emb["ceiling"],
        "refined_ceiling": ref["ceiling"],
        "oracle_stop_ceiling": ceiling,
        "pipeline": final,
    }
    return {
        "event_id": int(event.event_id),
        "n_hits": n,
        "variant": variant,
        "seconds": time.perf_counter() - t0,
        "embedding": emb,
        "refined": ref,
        "gnn": gnn,
        "clustering": clustering,
        "chain": chain,
    }


def mean_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of :func:`diagnose_event` averaged over events (NaNs left out; per-layer AUC
    lists averaged element-wise)."""

    def avg(values: list) -> Any:
        if isinstance(values[0], dict):
            return {k: avg([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], list):
            return [avg(list(col)) for col in zip(*values, strict=True)]
        x = np.asarray(values, np.float64)
        x = x[~np.isnan(x)]
        return float(x.mean()) if len(x) else float("nan")

    keys = ("n_hits", "seconds", "embedding", "refined", "gnn", "clustering", "chain")
    return {k: avg([row[k] for row in rows]) for k in keys}


def largest_drop(chain: dict[str, float]) -> dict[str, Any]:
    """The largest fall between consecutive ceilings of :data:`CHAIN`:
    ``{"stage", "from", "to", "from_value", "to_value", "drop"}`` (NaN steps skipped)."""
    best: dict[str, Any] | None = None
    for i, stage in enumerate(DROPS):
        (ka, la), (kb, lb) = CHAIN[i], CHAIN[i + 1]
        va, vb = chain[ka], chain[kb]
        if math.isnan(va) or math.isnan(vb):
            continue
        if best is None or va - vb > best["drop"]:
            best = {"stage": stage, "from": la, "to": lb, "from_value": va, "to_value": vb}
            best["drop"] = va - vb
    return best or {"stage": None, "drop": float("nan")}


def summary_line(chain: dict[str, float]) -> str:
    """One line naming the largest drop of the chain."""
    d = largest_drop(chain)
    if d["stage"] is None:
        return "largest drop: none (no finite figures)"
    return (
        f"largest drop: {d['stage']}: {d['from']} {d['from_value']:.3f} -> "
        f"{d['to']} {d['to_value']:.3f} (-{d['drop']:.3f})"
    )


def _isnan(x: float | None) -> bool:
    return x is None or math.isnan(x)


def _f(x: float, width: int, digits: int = 3) -> str:
    return f"{'nan':>{width}}" if x is None or math.isnan(x) else f"{x:>{width}.{digits}f}"


def _columns(columns: str) -> list[tuple[str, str, int, int]]:
    """The columns of a report table, ``(label, key, width, digits)``, from their comma-separated
    spec: ``label=key:width`` or ``label=key:width.digits`` (3 digits by default); ``key?`` for a
    figure that may be missing (shown as nan); ``|`` a rule (``("|", "", 0, 0)``)."""
    out = []
    for column in columns.split(","):
        label, _, cell = column.strip().rpartition("=")
        if not label:
            out.append((cell, "", 0, 0))
            continue
        key, _, fmt = cell.partition(":")
        width, _, digits = fmt.partition(".")
        out.append((label, key, int(width), int(digits or 3)))
    return out


def _row(name: str, q: dict[str, Any], columns: str) -> str:
    """One line of a report table: ``name``, then per column the figure ``q[key]``."""
    cells = [f"{name:>8}"]
    for label, key, width, digits in _columns(columns):
        if not key:
            cells.append(label)
            continue
        x = q.get(key[:-1]) if key.endswith("?") else q[key]
        cells.append(_f(x, width, digits))
    return " ".join(cells)


def _table(
    labelled: Sequence[tuple[str, dict[str, Any]]], title: str, section: str, columns: str
) -> list[str]:
    """One table of the report: its title, its header over a rule, and per labelled event (the
    mean last) the :func:`_row` of its figures ``r[section]``."""
    head = " ".join([f"{'event':>8}"] + [f"{c[0]:>{c[2]}}" for c in _columns(columns)])
    return [title, head, "-" * len(head)] + [_row(n, r[section], columns) for n, r in labelled]


# the tables after the graphs' (title, section of the figures, columns): the GNN, the trees, the
# references in the cluster space, and the score chain
_GNN_TABLE = (
    f"GNN (a_ij: the last layer's edge weights on the GNN's input graph, cut {A_CUT}; cc: "
    "connected components of the edges kept; atoms: the pieces Split never separates (components "
    "or layer merge); AUC dist, compactness: GNN output space)",
    "gnn",
    "|, AUC mean=auc_mean_layers:8, AUC last=auc_last_layer:8, eff=efficiency_last:6, "
    f"pur=purity_last:6, cc score=components_score:8, cc@{A_STRICT}=components_score_strict?:7, "
    "atoms=atoms_score?:6, |, AUC dist=auc_distance:8, compact med=compactness_median:11, "
    "q90=compactness_q90:7",
)
_TREES_TABLE = (
    "trees (oracle-Stop ceiling = best pruning; PCA: principal-axis tree, nothing learned; "
    "tree: the leaves of the model's tree; pipeline: after its iterative re-clustering and "
    "track extension, if any)",
    "clustering",
    "|, Split tree=oracle_stop_ceiling:10, levels=split_levels:6.0, |, "
    "PCA GNN=principal_tree_gnn_ceiling:8, PCA emb.=principal_tree_embedding_ceiling:8, |, "
    "tree=stop_actual:6, pipeline=pipeline:8, tracks=tracks:7.0",
)
_REFERENCES_TABLE = (
    "references in the cluster space h (Stop cut: the variant's; Stop off: the tree split to "
    "its leaves, then as the pipeline; DBSCAN at the eps tuned on validation events; "
    "HDBSCAN min_cluster_size 3; no extension for DBSCAN / HDBSCAN: compare with tree)",
    "clustering",
    "|, Stop cut=stop_threshold?:8, |, tree=stop_actual:6, pipeline=pipeline:8, |, "
    "off tree=stop_off_tree?:8, Stop off=stop_off?:8, |, DBSCAN=dbscan_latent?:6, "
    "eps=dbscan_eps?:5.2, |, HDBSCAN=hdbscan_latent?:7",
)
_CHAIN_TABLE = (
    "score chain (TrackML score; each column the best the stages after it could do)",
    "chain",
    "|, perfect=perfect:7, emb.graph=embedding_ceiling:9, ref.graph=refined_ceiling:9, "
    "oracle-Stop=oracle_stop_ceiling:11, pipeline=pipeline:8",
)


def format_report(rows: Sequence[dict[str, Any]], mean: dict[str, Any]) -> str:
    """The per-event tables and their mean lines, and the one-line summary, as text."""
    labelled = [(str(r["event_id"]), r) for r in rows] + [("mean", mean)]
    head = (
        f"{'event':>8} {'hits':>7} | {'graph':<9} {'edges/hit':>9} {'purity':>7} "
        f"{'rec.cons':>8} {'ceiling':>7}"
    )
    out = ["graphs (ceiling: oracle-completed connected components)", head, "-" * len(head)]
    for name, r in labelled:
        for g in ("embedding", "refined"):
            q = r[g]
            out.append(
                f"{name:>8} {r['n_hits']:>7.0f} | {g:<9} {_f(q['edges_per_hit'], 9, 1)} "
                f"{_f(q['purity'], 7)} {_f(q['recall_consecutive'], 8)} {_f(q['ceiling'], 7)}"
            )
    if "map_coverage" in mean["embedding"]:
        cov = ", ".join(f"{n} {_f(r['embedding']['map_coverage'], 5).strip()}" for n, r in labelled)
        out.append(f"module map: share of the consecutive pairs on mapped module pairs: {cov}")
    for table in (_GNN_TABLE, _TREES_TABLE, _REFERENCES_TABLE):
        out += ["", *_table(labelled, *table)]
    skipped = [str(r["event_id"]) for r in rows if _isnan(r["clustering"].get("hdbscan_latent"))]
    if skipped:
        out.append(
            f"HDBSCAN skipped on events {', '.join(skipped)}: more hits than hdbscan_max_hits "
            "(scikit-learn's HDBSCAN takes 1-2 min on a full event)"
        )
    out += ["", *_table(labelled, *_CHAIN_TABLE), ""]
    dense = [str(r["event_id"]) for r in rows if r.get("variant") == "dense"]
    if dense:
        out.append(f"stages 2-3 by the model's dense variant on events {', '.join(dense)}")
    out.append(summary_line(mean["chain"]))
    return "\n".join(out)


def diagnose(
    pipe: Pipeline,
    events: Iterable[Event],
    progress: bool = True,
    total: int | None = None,
    dbscan_eps: float | None = None,
    hdbscan_max_hits: int = HDBSCAN_MAX_HITS,
) -> dict[str, Any]:
    """:func:`diagnose_event` on every event: ``{"events": [...], "mean": {...},
    "largest_drop": {...}}``."""
    from tqdm.auto import tqdm

    rows = [
        diagnose_event(pipe, ev, dbscan_eps, hdbscan_max_hits)
        for ev in tqdm(events, total=total, desc="diagnose", unit="event", disable=not progress)
    ]
    if not rows:
        raise ValueError("no events to diagnose")
    mean = mean_figures(rows)
    return {"events": rows, "mean": mean, "largest_drop": largest_drop(mean["chain"])}
