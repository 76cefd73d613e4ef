"""The cluster tree of one event as a file: the multiscale view of the data (format ``cgnn_jax.tree``).

One ``.npz`` file per event (``event<ID>-tree.npz``, written atomically), with the arrays

==============  ==========  ===============================================================
key             shape       meaning
==============  ==========  ===============================================================
``format``      ``[]``      the string ``"cgnn_jax.tree"``
``version``     ``[]``      format version (int, :data:`TREE_VERSION`)
``event_id``    ``[]``      the event's id (int, -1 if unknown)
``hit_id``      ``[n]``     int64 hit ids, in the row order of the event's hits
``hit_node``    ``[n, L+1]`` int32 node of each hit at each level ``0..L`` (-1: none)
``node_id``     ``[K]``     int64 node id (row number of the node arrays)
``parent``      ``[K]``     int64 parent node (-1 for the root)
``level``       ``[K]``     int64 level where the node first appears (the root: 0)
``size``        ``[K]``     int64 number of hits
``split_prob``  ``[K]``     float64 mean ``p_right`` of its hits at its level (NaN: never evaluated)
``stop_prob``   ``[K]``     float64 stop probability at its level (NaN: never evaluated)
``split``       ``[K]``     bool: the node was split (its children are the nodes whose parent it is)
``leaf``        ``[K]``     bool: not split; the leaves are the final clusters (the tracks)
==============  ==========  ===============================================================

A node that is not split is carried unchanged to the following levels, so ``hit_node[:, l]`` is
the clustering of the event at depth ``l`` (the coarse view at small ``l``, the tracks at
``l = L``). :func:`read_tree` checks the format and version and raises :class:`TreeFormatError`
naming the file otherwise.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from cgnn_jax.cluster.recursion import tree_to_table
from cgnn_jax.io.atomic import atomic_write

TREE_FORMAT = "cgnn_jax.tree"
TREE_VERSION = 1
NODE_COLUMNS = ("node_id", "parent", "level", "size", "split_prob", "stop_prob", "split", "leaf")


class TreeFormatError(ValueError):
    """A tree file that is missing, damaged, of another format or of another version."""


@dataclasses.dataclass
class ClusterTree:
    """One event's cluster tree.

    Attributes:
      nodes: one row per node (:data:`NODE_COLUMNS`).
      hit_id: ``[n]`` hit ids.
      hit_node: ``[n, L + 1]`` node of each hit at each level.
      event_id: the event's id (-1 if unknown).
    """

    nodes: pd.DataFrame
    hit_id: np.ndarray
    hit_node: np.ndarray
    event_id: int = -1

    @property
    def depth(self) -> int:
        """``L``, the number of levels below the root."""
        return self.hit_node.shape[1] - 1

    def labels_at(self, level: int) -> np.ndarray:
        """``[n]`` cluster (node) of each hit at ``level`` (clipped to ``[0, L]``)."""
        return self.hit_node[:, int(np.clip(level, 0, self.depth))]

    @property
    def leaves(self) -> np.ndarray:
        """``[n]`` final cluster (leaf node) of each hit: the flat clustering."""
        return self.hit_node[:, -1]


def hit_nodes(table: pd.DataFrame, segment: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[n, L + 1]`` node of each real point at each level from the ``segment [L+1, N]`` array.

    The node of segment id ``s`` at level ``l`` is the node with that id of the largest level
    ``<= l`` (a split's left child may keep its parent's id, on a later level).
    """
    segment = np.asarray(segment)
    mask = np.asarray(mask).astype(bool)
    n_lev, n = segment.shape
    lev = table["level"].to_numpy()
    sid = table["segment"].to_numpy()
    nid = table["node_id"].to_numpy()
    node_of = np.full(n, -1, np.int64)
    out = np.full((int(mask.sum()), n_lev), -1, np.int32)
    for level in range(n_lev):
        rows = lev == level
        node_of[sid[rows]] = nid[rows]
        out[:, level] = node_of[segment[level][mask]]
    return out


def build_tree(out: dict, hit_id: np.ndarray, event_id: int = -1) -> ClusterTree:
    """The :class:`ClusterTree` of an :func:`~cgnn_jax.cluster.recursion.unrolled_clustering`
    output whose real points (``mask``) are the hits ``hit_id [n]`` in order."""
    out = {k: np.asarray(v) for k, v in out.items()}
    table = tree_to_table(out)
    hn = hit_nodes(table, out["segment"], out["mask"])
    if len(hn) != len(hit_id):
        raise ValueError(f"{len(hit_id)} hit ids for a tree of {len(hn)} points")
    return ClusterTree(table[list(NODE_COLUMNS)].copy(), np.asarray(hit_id, np.int64), hn, event_id)


def write_tree(tree: ClusterTree, path: str | Path) -> Path:
    """Write ``tree`` to ``path`` (``.npz``, atomically: an interrupted write leaves nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {c: tree.nodes[c].to_numpy() for c in NODE_COLUMNS}
    with atomic_write(path, "wb") as f:
        np.savez_compressed(
            f,
            format=np.array(TREE_FORMAT),
            version=np.array(TREE_VERSION),
            event_id=np.array(int(tree.event_id)),
            hit_id=tree.hit_id.astype(np.int64),
            hit_node=tree.hit_node.astype(np.int32),
            **arrays,
        )
    return path


def read_tree(path: str | Path) -> ClusterTree:
    """Read a tree file written by :func:`write_tree`; :class:`TreeFormatError` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise TreeFormatError(f"{path}: no such tree file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise TreeFormatError(f"{path}: not a readable .npz tree file ({e})") from e
    fmt = str(data.get("format", ""))
    if fmt != TREE_FORMAT:
        raise TreeFormatError(f"{path}: format {fmt!r}, expected {TREE_FORMAT!r}")
    version = int(data.get("version", -1))
    if version != TREE_VERSION:
        raise TreeFormatError(
            f"{path}: tree format version {version}, this cgnn_jax reads version {TREE_VERSION}"
        )
    missing = [k for k in ("hit_id", "hit_node", *NODE_COLUMNS) if k not in data]
    if missing:
        raise TreeFormatError(f"{path}: missing arrays {missing}")
    nodes = pd.DataFrame({c: data[c] for c in NODE_COLUMNS})
    hn = data["hit_node"]
    if hn.ndim != 2 or len(hn) != len(data["hit_id"]):
        raise TreeFormatError(
            f"{path}: hit_node has shape {hn.shape}, hit_id {data['hit_id'].shape}"
        )
    if len(nodes) and (hn.max() >= len(nodes)):
        raise TreeFormatError(f"{path}: hit_node refers to node {hn.max()} of {len(nodes)}")
    return ClusterTree(nodes, data["hit_id"], hn, int(data["event_id"]))
