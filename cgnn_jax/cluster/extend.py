"""Track extension along helix roads: hits the graph left alone, given to the track they lie on.

On full mu = 200 events the stage-1 graph misses many hits' true neighbours (most often in the
strip layers and at low p_T): such hits end as singletons or pairs, their particles split into
fragments, and fragmentation, not contamination, is most of the score the pipeline loses
(``docs/experiments.md``). The GNN never saw an edge that would place these hits, but their
tracks' other hits define a helix that passes through them. This step, after the clustering,
gives each such *free* hit to the track whose helix road crosses it:

1. Every track of at least ``min_size`` hits gets a helix through the beam line: a circle through
   the origin in x-y (linear least squares for its centre ``(A, B)``: ``x^2 + y^2 = 2 A x + 2 B y``)
   and a line ``z = z0 + t s`` in the arc length ``s = 2 R asin(rho / 2R)`` from the origin.
2. The detector's layers are read off the event itself (:func:`layer_geometry`): a barrel layer
   at its hits' mean radius, a disk at their mean z, each with the extent its hits cover.
3. Every track is extrapolated to every layer it has no hit on (:func:`road_predictions`), and
   the free hits on that layer near the predicted point (``|Δ(r φ)| < tol_rphi``; ``|Δz|`` on a
   barrel layer, ``|Δr|`` on a disk, ``< tol_z``) are candidates; each free hit joins the track
   of its smallest normalised residual ``(Δrφ / tol_rphi)^2 + (Δz / tol_z)^2``.
4. Repeat ``iterations`` times, refitting the grown tracks.

Free hits are those the clustering left in tracks of at most ``free_max`` hits; no hit of a
larger track ever moves, so the step only adds hits to tracks. It is geometry, not learning: it
runs after the learned stages and is switched by ``config.cluster.extend_iterations`` (0: off).
All arrays are numpy, vectorised over tracks, layers and hits (one kd-tree query per iteration);
about 0.3 s on a full event. The circle through the origin assumes prompt tracks in a solenoid
field along z; the tolerances absorb the field's non-uniformity and multiple scattering.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from cgnn_jax.cluster.tracks import dense_track_ids

MAX_LAYERS = 64  # layer sets are uint64 bit masks
#: The settings chosen on validation events (``docs/experiments.md``), the keyword defaults of
#: :func:`extend_tracks` and of ``config.cluster.extend_<name>``.
DEFAULTS = {"tol_rphi": 12.0, "tol_z": 15.0, "free_max": 2, "min_size": 3}


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """Per detector layer ``[L]``: ``barrel`` (a cylinder; else a disk), ``position`` (its radius
    or z, mm), ``lo``/``hi`` (the z extent of a barrel layer, the radial extent of a disk) and
    ``present`` (whether the event has hits on it)."""

    barrel: np.ndarray
    position: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    present: np.ndarray


def layer_geometry(pos: np.ndarray, layer: np.ndarray, margin: float = 20.0) -> LayerGeometry:
    """The layers as the hits ``pos [n, 3]`` (mm) on ``layer [n]`` (int, ``0..63``) trace them:
    a layer is a barrel cylinder where its hits spread less in radius than in z; extents are
    widened by ``margin`` mm."""
    layer = np.asarray(layer, np.int64)
    n_layers = int(layer.max(initial=-1)) + 1
    r = np.hypot(pos[:, 0], pos[:, 1])
    z = pos[:, 2]
    cnt = np.bincount(layer, minlength=n_layers).astype(np.float64)
    present = cnt > 0
    c = np.maximum(cnt, 1.0)

    def mean_var(v):
        m = np.bincount(layer, v, minlength=n_layers) / c
        return m, np.bincount(layer, v * v, minlength=n_layers) / c - m * m

    r_mean, r_var = mean_var(r)
    z_mean, z_var = mean_var(z)
    barrel = r_var < z_var
    across = np.where(barrel[layer], z, r)  # the coordinate along the layer's surface
    lo = np.full(n_layers, np.inf)
    hi = np.full(n_layers, -np.inf)
    np.minimum.at(lo, layer, across)
    np.maximum.at(hi, layer, across)
    return LayerGeometry(
        barrel=barrel,
        position=np.where(barrel, r_mean, z_mean),
        lo=lo - margin,
        hi=hi + margin,
        present=present,
    )


@dataclasses.dataclass(frozen=True)
class Helices:
    """Per track label ``[K]`` (indexed by the label itself): the x-y circle through the origin
    (centre ``A, B``, radius ``R``, centre angle ``phi_c``, ``side``: on which side of the centre
    line the track runs, ±1), the line ``z = z0 + t s``, and the track's ``layers`` (uint64 bits)."""

    A: np.ndarray
    B: np.ndarray
    R: np.ndarray
    phi_c: np.ndarray
    side: np.ndarray
    t: np.ndarray
    z0: np.ndarray
    layers: np.ndarray


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def arc_length(rho: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Arc length from the origin along a circle of radius ``R`` through it, to the point at
    distance ``rho`` from the origin (the shorter way)."""
    return 2.0 * R * np.arcsin(np.minimum(1.0, rho / (2.0 * R)))


def fit_helices(label: np.ndarray, pos: np.ndarray, layer: np.ndarray, k: int) -> Helices:
    """Least-squares helices through the origin of the tracks ``label [m]`` (ints ``< k``) of the
    hits ``pos [m, 3]`` on ``layer [m]``; arrays ``[k]`` (labels without hits: degenerate)."""
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    r2 = x * x + y * y

    def total(v):
        return np.bincount(label, v, minlength=k)

    sxx, sxy, syy = total(x * x), total(x * y), total(y * y)
    bx, by = total(x * r2), total(y * r2)
    det = sxx * syy - sxy * sxy
    det = np.where(np.abs(det) < 1e-9, 1e-9, det)
    A = (syy * bx - sxy * by) / det / 2.0
    B = (sxx * by - sxy * bx) / det / 2.0
    R = np.maximum(np.hypot(A, B), 1.0)
    s = arc_length(np.sqrt(r2), R[label])
    cnt = total(np.ones_like(s))
    ss, sz, s2, ssz = total(s), total(z), total(s * s), total(s * z)
    d = cnt * s2 - ss * ss
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t = (cnt * ssz - ss * sz) / d
    z0 = (sz - t * ss) / np.maximum(cnt, 1.0)
    phi_c = np.arctan2(B, A)
    side = np.sign(total(np.sign(_wrap(np.arctan2(y, x) - phi_c[label]))))
    layers = np.zeros(k, np.uint64)
    np.bitwise_or.at(layers, label, np.left_shift(np.uint64(1), layer.astype(np.uint64)))
    return Helices(A, B, R, phi_c, side, t, z0, layers)


def road_predictions(
    helices: Helices, tracks: np.ndarray, geo: LayerGeometry
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where every track of ``tracks [K']`` crosses every layer it has no hit on: ``(track [P],
    layer [P], point [P, 3])`` for the crossings inside the layer's extent."""
    n_layers = len(geo.barrel)
    C = np.repeat(tracks, n_layers)
    L = np.tile(np.arange(n_layers), len(tracks))
    free_layer = ((helices.layers[C] >> L.astype(np.uint64)) & np.uint64(1)) == 0
    C, L = C[free_layer & geo.present[L]], L[free_layer & geo.present[L]]
    R, t, z0 = helices.R[C], helices.t[C], helices.z0[C]
    barrel, p = geo.barrel[L], geo.position[L]
    with np.errstate(invalid="ignore", divide="ignore"):
        s_barrel = arc_length(p, R)
        s_disk = (p - z0) / np.where(np.abs(t) < 1e-6, 1e-6, t)
        rho = np.where(barrel, p, 2.0 * R * np.sin(np.clip(s_disk, 0.0, None) / (2.0 * R)))
        z = np.where(barrel, z0 + t * s_barrel, p)
        along = np.where(barrel, z, rho)
        ok = np.where(barrel, p < 2.0 * R, (s_disk > 0) & (s_disk < np.pi * R))
        ok &= (along > geo.lo[L]) & (along < geo.hi[L])
        phi = helices.phi_c[C] + helices.side[C] * np.arccos(np.clip(rho / (2.0 * R), -1, 1))
    ok &= np.isfinite(phi) & np.isfinite(z)
    point = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    return C[ok], L[ok], point[ok]


def extend_tracks(
    track_id: np.ndarray,
    pos: np.ndarray,
    layer: np.ndarray,
    *,
    iterations: int = 2,
    tol_rphi: float = 12.0,
    tol_z: float = 15.0,
    free_max: int = 2,
    min_size: int = 3,
    neighbours: int = 4,
) -> np.ndarray:
    """``[n]`` int64 track ids ``1..K'``: ``track_id [n]`` with free hits given to the tracks whose
    helix roads cross them (module docstring).

    Args:
      track_id: ``[n]`` int track id of every hit (any integers).
      pos: ``[n, 3]`` hit positions x, y, z (mm).
      layer: ``[n]`` int detector-layer index of every hit, ``0..63``.
      iterations: rounds of fit, extrapolation and assignment (0: ``track_id`` unchanged, as
        dense ids).
      tol_rphi, tol_z: the road's half widths (mm): across it (``r Δφ``) and along the layer
        (``Δz`` on a barrel layer, ``Δr`` on a disk).
      free_max: hits of tracks with at most this many hits are free to join another track.
      min_size: only tracks of at least this many hits (never free ones) are extended.
      neighbours: free hits examined per predicted crossing (the nearest in 3-D).
    """
    pos = np.asarray(pos, np.float64)
    layer = np.asarray(layer, np.int64)
    n = len(pos)
    if pos.shape != (n, 3) or np.shape(track_id) != (n,) or layer.shape != (n,):
        raise ValueError(
            f"extend_tracks: track_id {np.shape(track_id)}, pos {pos.shape} and layer "
            f"{layer.shape} must be [n], [n, 3] and [n]"
        )
    if n and (layer.min() < 0 or layer.max() >= MAX_LAYERS):
        raise ValueError(f"extend_tracks: layer indices must be in 0..{MAX_LAYERS - 1}")
    if min(tol_rphi, tol_z) <= 0 or free_max < 0 or min_size <= free_max:
        raise ValueError(
            f"extend_tracks: need tol_rphi, tol_z > 0 and min_size > free_max >= 0 (got "
            f"{tol_rphi}, {tol_z}, {min_size}, {free_max})"
        )
    label = dense_track_ids(np.asarray(track_id)) - 1  # 0..K-1
    if n == 0 or iterations <= 0:
        return label + 1
    geo = layer_geometry(pos, layer)
    size0 = np.bincount(label)[label]
    free0 = size0 <= free_max
    r = np.hypot(pos[:, 0], pos[:, 1])
    phi = np.arctan2(pos[:, 1], pos[:, 0])
    k = n  # labels stay below n: a free hit only ever takes a track's label
    for _ in range(iterations):
        size = np.bincount(label, minlength=k)[label]
        free = np.flatnonzero(free0 & (size <= free_max))
        grown = np.flatnonzero((size >= min_size) & ~(free0 & (size <= free_max)))
        if len(free) == 0 or len(grown) == 0:
            break
        hel = fit_helices(label[grown], pos[grown], layer[grown], k)
        C, L, point = road_predictions(hel, np.unique(label[grown]), geo)
        if len(C) == 0:
            break
        m = min(neighbours, len(free))
        dist, nb = cKDTree(pos[free]).query(
            point, k=m, distance_upper_bound=1.5 * max(tol_rphi, tol_z), workers=-1
        )
        dist, nb = dist.reshape(len(C), m), nb.reshape(len(C), m)
        found = np.isfinite(dist)
        h = free[np.where(found, nb, 0)]  # [P, m] candidate hits
        rho = np.hypot(point[:, 0], point[:, 1])[:, None]
        d_rphi = np.abs(_wrap(phi[h] - np.arctan2(point[:, 1], point[:, 0])[:, None])) * rho
        d_along = np.where(
            geo.barrel[L][:, None], np.abs(pos[h, 2] - point[:, 2:3]), np.abs(r[h] - rho)
        )
        ok = found & (layer[h] == L[:, None]) & (d_rphi < tol_rphi) & (d_along < tol_z)
        cost = np.where(ok, (d_rphi / tol_rphi) ** 2 + (d_along / tol_z) ** 2, np.inf)
        j = np.argmin(cost, axis=1)  # one hit per crossing: its nearest within the road
        cost = cost[np.arange(len(C)), j]
        sel = np.flatnonzero(np.isfinite(cost))
        if len(sel) == 0:
            break
        hit, track, cost = h[sel, j[sel]], C[sel], cost[sel]
        # every hit to its cheapest road (ties: the lower track label)
        order = np.lexsort((track, cost, hit))
        hit, track = hit[order], track[order]
        first = np.r_[True, hit[1:] != hit[:-1]]
        label = label.copy()
        label[hit[first]] = track[first]
    return dense_track_ids(label)
