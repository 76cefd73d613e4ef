"""Detector zones and the zone-pair map: which parts of the detector a track connects.

A *zone* is one slice of one detector layer: a barrel layer cut into ``bins`` slices along z,
an endcap disk into ``bins`` rings in r, each slice holding the same share of the training
hits. The *zone map* is the set of zone pairs that consecutive hits of a training particle
ever joined (learned from the training events' truth, both orders). A barrel hit at large z
and an endcap hit at small r, or two layers a track never crosses in turn, are not a pair.

The stage-1 kNN query keeps only neighbours in allowed zones
(:func:`cgnn_jax.graph.neighbors.zone_knn_graph`), so the ``k`` edges of a hit go to hits it
can follow on a track instead of to hits on its own layer or across the detector. This is the
layer-level relative of Exa.TrkX's module map, learned from a few events instead of ~90k.
Measured on an unseen full μ = 200 event with the same embedding (``docs/experiments.md``):
the embedding graph's oracle ceiling 0.667 → 0.746 at the same 38 edges per hit (8 zones per
layer, 64 candidates, k = 40: the default), 0.794 at 49 with 96 candidates and k = 48.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from cgnn_jax.metrics.edges import consecutive_pairs


@dataclasses.dataclass(frozen=True)
class ZoneMap:
    """Zones of ``n_layers`` layers, ``bins`` per layer, and the allowed zone pairs.

    Attributes:
      bins: slices per layer.
      axis_z: ``[L]`` bool, slice along z (barrel layer) or else along r (endcap disk).
      edges: ``[L, bins - 1]`` float slice boundaries (mm) along that axis.
      allowed: ``[L * bins + 1, L * bins + 1]`` bool; the last zone stands for hits on a layer
        the training events never hit (allowed with every zone).
    """

    bins: int
    axis_z: np.ndarray
    edges: np.ndarray
    allowed: np.ndarray

    @property
    def n_layers(self) -> int:
        return len(self.axis_z)

    def zones(self, layer_index: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """``[n]`` int32 zone of every hit (``layer_index [n]``, ``pos [n, 3]`` mm)."""
        layer = np.asarray(layer_index, np.int64)
        known = (layer >= 0) & (layer < self.n_layers)
        li = np.where(known, layer, 0)
        pos = np.asarray(pos, np.float64)
        coord = np.where(self.axis_z[li], pos[:, 2], np.hypot(pos[:, 0], pos[:, 1]))
        slot = (coord[:, None] > self.edges[li]).sum(axis=1)
        return np.where(known, li * self.bins + slot, self.n_layers * self.bins).astype(np.int32)

    def to_json(self) -> dict:
        """A JSON-able dict (kept in a checkpoint's ``learned`` metadata)."""
        a, b = np.nonzero(np.triu(self.allowed))
        return {
            "bins": int(self.bins),
            "axis_z": [bool(v) for v in self.axis_z],
            "edges": np.round(self.edges, 3).tolist(),
            "pairs": np.stack([a, b], 1).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict) -> ZoneMap:
        bins, axis_z = int(d["bins"]), np.asarray(d["axis_z"], bool)
        edges = np.asarray(d["edges"], np.float64).reshape(len(axis_z), bins - 1)
        z = len(axis_z) * bins + 1
        allowed = np.zeros((z, z), bool)
        pairs = np.asarray(d["pairs"], np.int64).reshape(-1, 2)
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= z):
            raise ValueError(f"zone map: a zone pair outside 0..{z - 1}")
        allowed[pairs[:, 0], pairs[:, 1]] = True
        allowed |= allowed.T
        return cls(bins, axis_z, edges, allowed)


def learn_zone_map(
    events: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], n_layers: int, bins: int = 8
) -> ZoneMap:
    """The zone map of training events, each ``(layer_index [n], pos [n, 3], pid [n])``.

    Slice boundaries are quantiles of each layer's hits (pooled over the events); a pair of
    zones is allowed when consecutive hits of one particle (hits sorted by distance from the
    origin, noise ``pid == 0`` excluded) fall in them. Layers no training hit touches get the
    catch-all zone.
    """
    if bins < 1:
        raise ValueError(f"zone bins must be >= 1, got {bins}")
    events = [(np.asarray(li), np.asarray(p, np.float64), np.asarray(pid)) for li, p, pid in events]
    if not events:
        raise ValueError("a zone map needs at least one training event")
    layer = np.concatenate([e[0] for e in events]).astype(np.int64)
    pos = np.concatenate([e[1] for e in events])
    r, z = np.hypot(pos[:, 0], pos[:, 1]), pos[:, 2]
    axis_z = np.zeros(n_layers, bool)
    edges = np.zeros((n_layers, bins - 1))
    order = np.argsort(layer, kind="stable")
    starts = np.searchsorted(layer[order], np.arange(n_layers + 1))
    q = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    seen = np.diff(starts) > 0
    for li in np.flatnonzero(seen):  # one quantile per layer: 48 layers, not a hot path
        rows = order[starts[li] : starts[li + 1]]
        axis_z[li] = np.ptp(z[rows]) > np.ptp(r[rows])
        edges[li] = np.quantile(z[rows] if axis_z[li] else r[rows], q)
    zm = ZoneMap(bins, axis_z, edges, np.zeros((n_layers * bins + 1,) * 2, bool))
    allowed = zm.allowed
    for li, p, pid in events:
        s, t = consecutive_pairs(p, pid)
        zn = zm.zones(li, p)
        allowed[zn[s], zn[t]] = True
    allowed |= allowed.T
    unseen = np.concatenate([np.repeat(~seen, bins), [True]])
    allowed[unseen, :] = True
    allowed[:, unseen] = True
    return zm
