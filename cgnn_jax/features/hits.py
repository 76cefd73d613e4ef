"""Per-hit input features of a TrackML event (numpy, vectorised over the whole event).

:func:`hit_features` turns an :class:`~cgnn_jax.io.event.Event` into a ``[n_hits, F]`` float32
matrix in the row order of ``event.hits``. Every feature is scaled to be O(1) over the detector
(coordinates in mm, the detector is ~1 m in radius and ~3 m in half length):

=================  ==========================================================================
name               definition
=================  ==========================================================================
``r``              cylindrical radius ``sqrt(x² + y²) / 1000`` (mm / 1000, in [0.03, 1.03])
``cos_phi``        ``cos φ``, ``φ = atan2(y, x)``
``sin_phi``        ``sin φ``
``z``              ``z / 3000`` (mm / 3000, in [-1, 1])
``eta``            pseudorapidity ``asinh(z / r) / 3`` (|η| ≤ ~4.1 in the detector)
``r3``             spherical radius ``sqrt(x² + y² + z²) / 3000``
``vol_7`` ...      one-hot of the volume, one column per volume of :data:`VOLUMES`
``vol_18``
``layer_pos``      rank of the layer inside its volume / (layers in volume - 1), in [0, 1]
``is_barrel``      1 for the barrel volumes 8, 13, 17, else 0
``has_cells``      1 if the hit has at least one cell, else 0 (then all cell features are 0)
``n_cells``        ``log1p(number of cells)``
``charge``         ``log1p(sum of the cells' value)``
``extent_u``       ``log1p(e_u)``, ``e_u = (max ch0 - min ch0 + 1) * pitch_u`` (mm)
``extent_v``       ``log1p(e_v)``, ``e_v = (max ch1 - min ch1 + 1) * pitch_v`` (mm)
``extent_u_t``     ``log1p(e_u / T)``, ``T = 2 * half_t`` the sensor thickness
``extent_v_t``     ``log1p(e_v / T)``
``cell_cot``       cot θ of the cluster direction / 5 (clipped to ±10 before scaling)
``cell_z0``        ``z - r cot θ`` (mm) / 200: the beam-line origin implied by the cluster
``cell_abs_kappa`` ``log1p(1000 * 2 |sin α| / r)``: |curvature| (1/m) of a circle through the beam
                   line with the cluster's transverse direction (α: its angle to the radius)
=================  ==========================================================================

The cluster carries the track's direction: a track with local direction ``d = (d_u, d_v, d_w)``
crosses the thickness ``T`` over ``|d_u / d_w| * T`` along ``u`` (and likewise along ``v``).
:attr:`HitFeatures.cell_dir` is the global unit vector estimated from that: the local vector
``(±l_u, ±l_v, ±T)`` with ``l = (max ch - min ch) * pitch`` (the cluster's length in excess of the
one channel any crossing fires; its expectation is the crossing length, whereas the full extent
``e = l + pitch`` is biased by one pitch, which matters most on the strips' 1-10 mm long ``v``
channels), rotated to global coordinates with the module's rotation. The cluster does not tell the
signs; each local component takes the sign of the hit position's component in the module frame,
i.e. the estimate lies in the octant of the straight line from the origin, and so points away
from the origin (``dot(cell_dir, pos) >= 0``). Hits without cells get ``cell_dir = 0``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cgnn_jax.io.event import Event
from cgnn_jax.sim.geometry import BARREL_VOLUMES, Geometry, load_geometry

VOLUMES: tuple[int, ...] = (7, 8, 9, 12, 13, 14, 16, 17, 18)

# Scales that bring the coordinates to O(1) (mm).
R_SCALE = 1000.0
Z_SCALE = 3000.0
R3_SCALE = 3000.0
ETA_SCALE = 3.0

FEATURE_NAMES: tuple[str, ...] = (
    "r",
    "cos_phi",
    "sin_phi",
    "z",
    "eta",
    "r3",
    *(f"vol_{v}" for v in VOLUMES),
    "layer_pos",
    "is_barrel",
    "has_cells",
    "n_cells",
    "charge",
    "extent_u",
    "extent_v",
    "extent_u_t",
    "extent_v_t",
    "cell_cot",
    "cell_z0",
    "cell_abs_kappa",
)

_EPS = 1e-12


def n_features() -> int:
    """Number of per-hit features ``F``."""
    return len(FEATURE_NAMES)


@dataclasses.dataclass(frozen=True)
class HitFeatures:
    """Per-hit features of one event, in the row order of ``event.hits``.

    Attributes:
      x: ``[n, F]`` float32 features, columns :attr:`names` (= :data:`FEATURE_NAMES`).
      names: the ``F`` column names.
      hit_id: ``[n]`` the hits' ``hit_id``.
      pos: ``[n, 3]`` float64 global positions ``x, y, z`` (mm).
      cell_dir: ``[n, 3]`` float64 unit track directions estimated from the cell clusters (global
        frame, pointing away from the origin); all-zero rows for hits without cells.
      volume_index: ``[n]`` int32 index of the hit's volume in :data:`VOLUMES` (0..8).
      layer_index: ``[n]`` int32 index of the hit's (volume, layer) in the geometry, 0..47.
      has_cells: ``[n]`` bool, whether the hit has cells.
      module_index: ``[n]`` int32 row of the hit's module in the geometry (None where unknown).
    """

    x: np.ndarray
    names: list[str]
    hit_id: np.ndarray
    pos: np.ndarray
    cell_dir: np.ndarray
    volume_index: np.ndarray
    layer_index: np.ndarray
    has_cells: np.ndarray
    module_index: np.ndarray | None = None

    @property
    def n_hits(self) -> int:
        return len(self.hit_id)

    def column(self, name: str) -> np.ndarray:
        """``[n]`` the feature column called ``name``."""
        return self.x[:, self.names.index(name)]


def _layer_position(geometry: Geometry) -> np.ndarray:
    """``[L]`` rank of each geometry layer inside its volume, scaled to [0, 1]."""
    vol = geometry.layer_volume  # sorted by (volume, layer)
    first = np.r_[0, np.flatnonzero(np.diff(vol)) + 1]
    counts = np.diff(np.r_[first, len(vol)])
    start = np.repeat(first, counts)
    size = np.repeat(counts, counts)
    rank = np.arange(len(vol)) - start
    return rank / np.maximum(size - 1, 1)


def _cell_aggregates(
    hit_ids: np.ndarray, cells
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-hit cell counts, charge sums and channel ranges.

    Args:
      hit_ids: ``[n]`` hit ids of the hits (any order, unique).
      cells: the cells DataFrame (``hit_id, ch0, ch1, value``) or ``None``.
    Returns:
      ``(n_cells, charge, ch0_min, ch0_max, ch1_min, ch1_max)``, each ``[n]`` (ranges 0 where no
      cells).
    """
    n = len(hit_ids)
    zeros = np.zeros(n, dtype=np.int64)
    if cells is None or len(cells) == 0:
        return zeros, np.zeros(n), zeros, zeros, zeros, zeros
    for col in ("hit_id", "ch0", "ch1", "value"):
        if col not in cells.columns:
            raise ValueError(f"cells lack the column {col!r}")
    c_hit = cells["hit_id"].to_numpy(np.int64)
    sort = np.argsort(hit_ids, kind="stable")
    sorted_ids = hit_ids[sort]
    pos = np.clip(np.searchsorted(sorted_ids, c_hit), 0, max(n - 1, 0))
    bad = sorted_ids[pos] != c_hit if n else np.ones(len(c_hit), dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} cells have a hit_id not in hits, e.g. cells.hit_id={int(c_hit[i])}"
        )
    row = sort[pos]
    ch0 = cells["ch0"].to_numpy(np.int64)
    ch1 = cells["ch1"].to_numpy(np.int64)
    value = cells["value"].to_numpy(np.float64)
    count = np.bincount(row, minlength=n)
    charge = np.bincount(row, weights=value, minlength=n)
    if len(row) > 1 and np.any(row[1:] < row[:-1]):
        order = np.argsort(row, kind="stable")
        row, ch0, ch1 = row[order], ch0[order], ch1[order]
    starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
    owners = row[starts]
    out = []
    for arr in (ch0, ch1):
        lo = np.zeros(n, dtype=np.int64)
        hi = np.zeros(n, dtype=np.int64)
        lo[owners] = np.minimum.reduceat(arr, starts)
        hi[owners] = np.maximum.reduceat(arr, starts)
        out += [lo, hi]
    return count, charge, out[0], out[1], out[2], out[3]


def hit_features(event: Event, geometry: Geometry | None = None) -> HitFeatures:
    """Compute the per-hit features of ``event`` (see the module docstring for the list).

    Args:
      event: an event with ``hits`` and optionally ``cells`` (without cells every hit gets
        ``has_cells = 0`` and zero cell features).
      geometry: the detector (default: the shipped TrackML detector).
    Returns:
      :class:`HitFeatures` with ``x`` of shape ``[n_hits, n_features()]``.
    Raises:
      ValueError: a hit on a module not in the detector, a cell whose ``hit_id`` is not in the
        hits, or a missing column.
    """
    geometry = load_geometry() if geometry is None else geometry
    hits = event.hits
    for col in ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"):
        if col not in hits.columns:
            raise ValueError(f"hits lack the column {col!r}")
    n = len(hits)
    hit_id = hits["hit_id"].to_numpy()
    rows = geometry.module_rows(
        hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy(), hits["module_id"].to_numpy()
    )
    pos = np.stack([hits[c].to_numpy(np.float64) for c in ("x", "y", "z")], axis=1).reshape(n, 3)
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    r = np.hypot(x, y)
    r3 = np.sqrt(r * r + z * z)
    phi = np.arctan2(y, x)
    eta = np.arcsinh(z / np.maximum(r, _EPS))

    vol = geometry.volume_id[rows]
    volumes = np.asarray(VOLUMES)
    volume_index = np.clip(np.searchsorted(volumes, vol), 0, len(volumes) - 1)
    if n and np.any(volumes[volume_index] != vol):
        i = int(np.flatnonzero(volumes[volume_index] != vol)[0])
        raise ValueError(f"hits have volume_id={int(vol[i])}, not one of {VOLUMES}")
    layer_index = geometry.layer_index[rows].astype(np.int32)
    layer_pos = _layer_position(geometry)[layer_index]
    is_barrel = np.isin(vol, BARREL_VOLUMES)

    count, charge, u_lo, u_hi, v_lo, v_hi = _cell_aggregates(
        np.asarray(hit_id, np.int64), event.cells
    )
    has = count > 0
    pu, pv = geometry.pitch_u[rows], geometry.pitch_v[rows]
    thick = 2.0 * geometry.half_t[rows]
    span_u = (u_hi - u_lo) * pu  # length beyond one channel (mm)
    span_v = (v_hi - v_lo) * pv
    ext_u = np.where(has, span_u + pu, 0.0)
    ext_v = np.where(has, span_v + pv, 0.0)

    # Direction from the cluster shape, in the octant of the line from the origin.
    rot = geometry.rot[rows]  # [n, 3(xyz), 3(uvw)]
    local_pos = np.einsum("nij,ni->nj", rot, pos)
    sign = np.where(local_pos >= 0.0, 1.0, -1.0)
    local_dir = np.stack([span_u, span_v, thick], axis=1) * sign
    local_dir /= np.linalg.norm(local_dir, axis=1, keepdims=True)
    cell_dir = np.einsum("nij,nj->ni", rot, local_dir)
    cell_dir /= np.linalg.norm(cell_dir, axis=1, keepdims=True)  # rot is orthonormal to ~1e-7
    cell_dir[~has] = 0.0

    # Track parameters implied by one hit and its cluster direction, for a track from the beam line:
    # cot(theta), z0 = z - r cot(theta) and |curvature| = 2 |sin(alpha)| / r, alpha the transverse
    # angle between the cluster direction and the radial direction (the cluster's extent is
    # unsigned, so the sign of the curvature is not measurable from it).
    dxy = np.hypot(cell_dir[:, 0], cell_dir[:, 1])
    cot = np.where(has, np.clip(cell_dir[:, 2] / np.maximum(dxy, 1e-3), -10.0, 10.0), 0.0)
    z0 = np.where(has, np.clip(z - r * cot, -1000.0, 1000.0), 0.0)
    sin_a = np.abs(cell_dir[:, 0] * y - cell_dir[:, 1] * x) / np.maximum(dxy * r, _EPS)
    abs_kappa = np.where(has, np.clip(2.0 * sin_a / np.maximum(r, 1.0) * 1000.0, 0.0, 20.0), 0.0)

    onehot = np.zeros((n, len(VOLUMES)))
    onehot[np.arange(n), volume_index] = 1.0
    hasf = has.astype(np.float64)
    cols = [
        r / R_SCALE,
        np.cos(phi),
        np.sin(phi),
        z / Z_SCALE,
        eta / ETA_SCALE,
        r3 / R3_SCALE,
        *onehot.T,
        layer_pos,
        is_barrel.astype(np.float64),
        hasf,
        np.log1p(count),
        np.log1p(np.maximum(charge, 0.0)) * hasf,
        np.log1p(ext_u),
        np.log1p(ext_v),
        np.log1p(ext_u / thick),
        np.log1p(ext_v / thick),
        cot / 5.0,
        z0 / 200.0,
        np.log1p(abs_kappa),
    ]
    feats = np.stack(cols, axis=1).astype(np.float32)
    return HitFeatures(
        x=feats,
        names=list(FEATURE_NAMES),
        hit_id=hit_id,
        pos=pos,
        cell_dir=cell_dir,
        volume_index=volume_index.astype(np.int32),
        layer_index=layer_index,
        has_cells=has,
        module_index=np.asarray(rows, np.int32),
    )
