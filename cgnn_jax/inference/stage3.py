"""Stage 3 at inference: the atoms, the Split/Stop tree on points or atom rows, the tracks.

:class:`Stage3` holds Split's and Stop's parameters, the config they were built with and Stop's
cut. From stage 2's output on a whole event it makes

1. the graph-consistent Split's atoms (:meth:`Stage3.groups`): connected components of the edges
   whose score ``a_ij`` passes ``cluster.component_cut``, or their layer-constrained merge;
2. ``h = [GNN output, hit features]`` (or the GNN output alone) seen by Split/Stop
   (:meth:`Stage3.cluster_inputs`);
3. the tree: the recursion unrolled level by level in one jit, on every point or on one row per
   atom (``cluster.tree_rows``; :meth:`Stage3.cluster`); its leaves are the tracks;
4. with ``cluster.iterative_rounds > 0`` the low-confidence clusters clustered again, and with
   ``cluster.extend_iterations > 0`` the hits of tracks of at most ``cluster.extend_free_max``
   hits joined to the track whose helix road crosses them (:meth:`Stage3.tracks`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cgnn_jax.cluster.components import edge_components
from cgnn_jax.cluster.extend import DEFAULTS as EXTEND_DEFAULTS
from cgnn_jax.cluster.extend import extend_tracks
from cgnn_jax.cluster.iterative import iterative_recluster
from cgnn_jax.cluster.merge import layer_merge
from cgnn_jax.cluster.recursion import (
    atom_rows,
    group_representatives,
    rows_to_points,
    unrolled_clustering,
)
from cgnn_jax.cluster.tracks import dense_track_ids
from cgnn_jax.inference.events import PreparedEvent
from cgnn_jax.inference.jax_cache import cached_call
from cgnn_jax.models import Split, Stop, create_model
from cgnn_jax.utils.padding import bucket_size, pad_rows, padded_points

MERGE_MODES = ("components", "layers")
TREE_ROWS = ("points", "atoms")


def cluster_features(gnn_out: jnp.ndarray, x: jnp.ndarray, inputs: str) -> jnp.ndarray:
    """``h [N, D]`` seen by Split/Stop: the GNN output, with the hit features if ``inputs`` says."""
    if inputs == "gnn":
        return gnn_out
    if inputs == "gnn+features":
        return jnp.concatenate([gnn_out, x], axis=-1)
    raise ValueError(f"config.cluster.inputs={inputs!r}; valid: 'gnn', 'gnn+features'")


def atom_mode(cluster_config) -> str | None:
    """How the graph-consistent Split's atoms are made: ``"components"`` (connected components
    of ``a_ij > cluster.component_cut``), ``"layers"`` (:func:`layer_merge` of the edges with
    ``a_ij > cluster.merge_threshold``), or None (no atoms: the thesis's Split)."""
    mode = str(cluster_config.get("merge", "components"))
    if mode not in MERGE_MODES:
        raise ValueError(f"config.cluster.merge={mode!r}; valid: {', '.join(MERGE_MODES)}")
    if mode == "components" and float(cluster_config.get("component_cut", 0.0)) <= 0:
        return None
    return mode


def tree_rows(cluster_config) -> str:
    """What a row of the inference tree is (``cluster.tree_rows``): ``"points"`` (every hit,
    each atom's ``p`` the mean of its hits'), or ``"atoms"`` (one weighted row per atom,
    :func:`cgnn_jax.cluster.recursion.atom_rows`: ~2.3x fewer rows on a full event)."""
    mode = str(cluster_config.get("tree_rows", "points"))
    if mode not in TREE_ROWS:
        raise ValueError(f"config.cluster.tree_rows={mode!r}; valid: {', '.join(TREE_ROWS)}")
    return mode


def atom_cut(cluster_config) -> float:
    """The edge-score cut below which edges never join atoms (for the atoms' mode)."""
    if atom_mode(cluster_config) == "layers":
        return float(cluster_config.get("merge_threshold", 0.5))
    return float(cluster_config.get("component_cut", 0.0))


def atoms(
    cluster_config,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    a: jnp.ndarray,
    edge_mask: jnp.ndarray,
    layer: jnp.ndarray,
    n: int,
) -> jnp.ndarray | None:
    """``[n]`` the atoms of the graph-consistent Split (jit-compatible; None without atoms): the
    connected components of the edges with ``a_ij > cluster.component_cut``, or, with
    ``cluster.merge = "layers"``, the layer-constrained merge (:func:`layer_merge`) of the edges
    with ``a_ij > cluster.merge_threshold`` (``layer [n]``: detector-layer index per node)."""
    mode = atom_mode(cluster_config)
    if mode is None:
        return None
    keep = edge_mask & (a > atom_cut(cluster_config))
    if mode == "components":
        return jax.lax.stop_gradient(edge_components(senders, receivers, keep, n))
    max_shared = int(cluster_config.get("merge_max_shared", 1))
    return jax.lax.stop_gradient(layer_merge(senders, receivers, a, keep, layer, n, max_shared))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _atoms_jit(cluster_key, n, senders, receivers, a, edge_mask, layer):
    return atoms(
        ml_collections.ConfigDict(dict(cluster_key)), senders, receivers, a, edge_mask, layer, n
    )


def _atoms_key(cluster_config) -> tuple:
    """The hashable part of the cluster config that :func:`atoms` reads (a static jit argument)."""
    keys = ("merge", "component_cut", "merge_threshold", "merge_max_shared")
    return tuple((k, cluster_config[k]) for k in keys if k in cluster_config)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))  # stop_threshold traced: no recompile
def _cluster_jit(
    split,
    stop,
    max_depth,
    min_size,
    stop_threshold,
    p_split,
    p_stop,
    h,
    mask,
    groups=None,
    reps=None,
    weights=None,
    h_var=None,
):
    return unrolled_clustering(
        lambda *a, **kw: split.apply(p_split, *a, **kw),
        None if stop is None else lambda *a, **kw: stop.apply(p_stop, *a, **kw),
        h,
        mask,
        max_depth,
        min_size,
        stop_threshold,
        groups,
        compact=True,
        group_reps=reps,
        weights=weights,
        h_var=h_var,
    )


def pad_groups(groups: np.ndarray | None, size: int) -> np.ndarray | None:
    """Group ids ``[n]`` padded to ``[size]``; every padding point in a group of its own."""
    if groups is None:
        return None
    out = np.arange(size, dtype=np.int32)
    out[: len(groups)] = groups
    return out


@dataclasses.dataclass
class Stage3:
    """A trained stage 3: Split and Stop, the config they were built with and Stop's cut.

    Attributes:
      config: the full config (``cluster`` for the recursion, atoms and extension; ``gnn`` for
        the width of ``h``).
      params: ``{"split", "stop"}``.
      stop_threshold: Stop's cut (the calibrated one when training chose one).
    """

    config: ml_collections.ConfigDict
    params: dict[str, Any]
    stop_threshold: float

    @property
    def cluster_config(self) -> ml_collections.ConfigDict:
        """The ``config.cluster`` block (Split / Stop, recursion, atoms, extension)."""
        return self.config.cluster

    @property
    def split_stop(self) -> tuple[Split, Stop]:
        return create_model(self.config, "split"), create_model(self.config, "stop")

    def groups(self, ev: PreparedEvent, senders, receivers, edge_score) -> np.ndarray | None:
        """``[n]`` the graph-consistent Split's atoms (:func:`atoms`): the connected components
        of the input edges with ``a_ij > cluster.component_cut``, or their layer-constrained
        merge (``cluster.merge = "layers"``); None without atoms (the thesis's Split)."""
        cc = self.cluster_config
        if atom_mode(cc) is None:
            return None
        # only the edges that can join (a_ij above the cut), padded to size buckets, through
        # the function training uses
        score = np.asarray(edge_score, np.float32)
        sel = np.flatnonzero(score > atom_cut(cc))
        n, e = bucket_size(ev.n), bucket_size(len(sel))
        out = cached_call(
            "atoms",
            _atoms_jit,
            (_atoms_key(cc), n),
            (
                pad_rows(np.asarray(senders, np.int32)[sel], e),
                pad_rows(np.asarray(receivers, np.int32)[sel], e),
                pad_rows(score[sel], e),
                np.arange(e) < len(sel),
                pad_rows(np.asarray(ev.hf.layer_index, np.int32), n),
            ),
        )
        return np.asarray(out)[: ev.n]

    def cluster_inputs(self, ev: PreparedEvent, gnn_out: np.ndarray) -> np.ndarray:
        """``h [n, D]`` seen by Split/Stop."""
        return np.asarray(
            cluster_features(gnn_out, ev.hf.x, self.cluster_config.inputs), np.float32
        )

    def cluster(
        self,
        h: np.ndarray,
        max_depth: int | None = None,
        groups: np.ndarray | None = None,
        stop_threshold: float | None = None,
        votes: bool = True,
    ) -> Mapping[str, np.ndarray]:
        """The tree on points ``h [n, D]``: the :func:`unrolled_clustering` output on the points
        padded to their bucket ``N`` (per-point arrays ``cluster [N]``, ``segment [L+1, N]``...:
        the first ``n`` entries are the points, the rest padding). ``groups [n]``: atoms the tree
        never separates (:meth:`groups`); ``stop_threshold``: Stop's cut (default
        :attr:`stop_threshold`). With ``cluster.tree_rows = "atoms"`` the tree runs on one row
        per atom and the output is mapped back to the points as it is read
        (:func:`~cgnn_jax.cluster.recursion.rows_to_points`). Without ``votes``, at a Stop's cut
        of 1 or more (no vote exceeds it) Stop is not evaluated: the same tree, ``stop`` NaN."""
        cc = self.cluster_config
        if stop_threshold is None:
            stop_threshold = self.stop_threshold
        stop = None if not votes and stop_threshold >= 1.0 else self.split_stop[1]
        if groups is not None and tree_rows(cc) == "atoms":
            return self._cluster_atoms(h, groups, max_depth, stop_threshold, stop)
        hp, mask = padded_points(h)
        gp = pad_groups(groups, len(hp))
        # the groups' first points, padded to a size bucket: the median rule sorts these
        reps = None
        if gp is not None:
            reps = group_representatives(gp)
            reps = pad_rows(reps, bucket_size(len(reps)), value=len(gp))
        out = self._tree(stop, max_depth, stop_threshold, hp, mask, gp, reps)
        return {k: np.asarray(v) for k, v in out.items()}

    def _tree(self, stop, max_depth, stop_threshold, *arrays):
        """:func:`_cluster_jit` through the traced-program cache, with this stage's Split and
        ``stop`` (its Stop, or None: not evaluated); ``arrays``: the padded ``h, mask``, then the
        optional ``groups, reps, weights, h_var``."""
        cc = self.cluster_config
        return cached_call(
            "cluster",
            _cluster_jit,
            (self.split_stop[0], stop, int(max_depth or cc.max_depth), int(cc.min_size)),
            (np.float32(stop_threshold), self.params["split"], self.params["stop"], *arrays),
        )

    def _cluster_atoms(
        self, h, groups, max_depth, stop_threshold, stop
    ) -> Mapping[str, np.ndarray]:
        """:meth:`cluster` with one row per atom (``cluster.tree_rows = "atoms"``,
        :func:`atom_rows`), its output mapped back to the points (:func:`rows_to_points`)."""
        r = atom_rows(h, groups)
        hp, mask = padded_points(r["h"])
        weights, h_var = pad_rows(r["weights"], len(hp)), pad_rows(r["h_var"], len(hp))
        out = self._tree(stop, max_depth, stop_threshold, hp, mask, None, None, weights, h_var)
        return rows_to_points(out, r["row"], r["first"], bucket_size(len(h)))

    def track_ids(
        self,
        h: np.ndarray,
        groups: np.ndarray | None = None,
        stop_threshold: float | None = None,
        votes: bool = True,
    ) -> dict[str, Any]:
        """Cluster the points ``h [n, D]`` (:meth:`cluster`): ``{"clustering": <its padded
        output>, "track_id": [n] int64 1..K}``."""
        clustering = self.cluster(h, groups=groups, stop_threshold=stop_threshold, votes=votes)
        return {
            "clustering": clustering,
            "track_id": dense_track_ids(clustering["cluster"][: len(h)]),
        }

    def outputs(
        self,
        ev: PreparedEvent,
        gnn_out: np.ndarray,
        edge_score: np.ndarray,
        senders: np.ndarray,
        receivers: np.ndarray,
        stop_threshold: float | None = None,
        cluster: bool = True,
        votes: bool = True,
    ) -> dict[str, Any]:
        """Stage 3 from stage 2's output ``gnn_out [n, out]`` and edge score ``[E]`` on the input
        graph ``(senders, receivers)``: ``groups [n]`` (the atoms, :meth:`groups`), ``h [n, D]``
        (:meth:`cluster_inputs`) and, with ``cluster``, ``clustering`` (:meth:`cluster` at
        ``stop_threshold``) and ``track_id [n]`` (int64, ``1..K``; the tree's leaves, before
        any iterative re-clustering or extension, :meth:`tracks`)."""
        out: dict[str, Any] = {
            "groups": self.groups(ev, senders, receivers, edge_score),
            "h": self.cluster_inputs(ev, gnn_out),
        }
        if cluster:
            out.update(self.track_ids(out["h"], out["groups"], stop_threshold, votes))
        return out

    def extend(self, ev: PreparedEvent, track_id: np.ndarray) -> np.ndarray:
        """``[n]`` int64 track ids ``1..K``: ``track_id [n]`` with the hits of tracks of at most
        ``cluster.extend_free_max`` hits given to the tracks whose helix roads cross them
        (:func:`cgnn_jax.cluster.extend.extend_tracks`, ``cluster.extend_iterations`` rounds;
        0 or absent: ``track_id`` unchanged)."""
        cc = self.cluster_config
        iterations = int(cc.get("extend_iterations", 0))
        if iterations <= 0:
            return np.asarray(track_id)
        kw = {k: type(v)(cc.get(f"extend_{k}", v)) for k, v in EXTEND_DEFAULTS.items()}
        return extend_tracks(track_id, ev.hf.pos, ev.hf.layer_index, iterations=iterations, **kw)

    def tracks(self, ev: PreparedEvent, outputs: Mapping[str, Any]) -> np.ndarray:
        """``[n]`` int64 track ids ``1..K`` as :meth:`cgnn_jax.inference.Pipeline.reconstruct`
        delivers them, from :meth:`outputs` (with its tree, and Stop's votes where
        ``cluster.iterative_rounds > 0``): the tree's leaves, the low-confidence clusters
        clustered again (:func:`~cgnn_jax.cluster.iterative.iterative_recluster`), then the
        track extension (:meth:`extend`)."""
        tid = outputs["track_id"]
        if self.cluster_config.iterative_rounds > 0:
            tid = iterative_recluster(
                self, outputs["h"], outputs["clustering"], tid, groups=outputs["groups"]
            )
        return self.extend(ev, tid)
