"""Detector response: module hits, cell clusters, the measured position, noise.

* **Module hits.** Each layer crossing is matched against the nearest modules of its layer; the
  track (a straight line over the few mm between the nominal surface and a module) is intersected
  with each module's plane and kept if it falls inside the module's bounds (rectangle or trapezoid
  in local ``u, v``). Overlapping modules give two hits on a layer, gaps none.
* **Measurement.** The hit position is the centre of its cell cluster (binary digitisation; the
  ``"path_length"`` model's pixels: the charge-weighted centre), mapped back to global coordinates
  on the module plane: along the strips' long ``v`` channels the error is uniform over the strip
  length.
* **Cells** (two cluster models, :data:`CLUSTER_MODELS`). ``"staircase"``: the track crosses the
  sensor's charge-collecting depth ``f 2 t`` around its true crossing point; the projection of that
  segment on the module plane, ``f 2 t |d_u / d_w|`` along u (plus a charge-sharing width) and
  ``f 2 t |d_v / d_w|`` along v, fires the channels it overlaps, so the cluster sits where the track
  crossed and its length follows the crossing angle. The cluster is the staircase of
  ``n_u + n_v - 1`` cells between its first and last channels. Pixel cells carry a deposited charge
  summing to ~0.3 per hit; strip cells carry 1. ``"path_length"`` (pixels; strips as in
  ``"staircase"``): the pixel digitisation of the TrackML production (ACTS's planar module stepper,
  :func:`pixel_path_clusters`): the straight track through the pixel depth, its charge drifting to
  the readout face (with the Lorentz angle in the barrel), is cut at the pixel boundaries; each
  pixel's value is the track's path length in it (mm), and the hit is the charge-weighted centre.
* **Noise.** Random hits on random modules (by volume, with the real events' shares), uniform over
  the module's surface, one or two cells each (``"path_length"``: pixel noise hits are crossings
  of soft particles from random directions).
"""

from __future__ import annotations

import numpy as np

from cgnn_jax.sim.geometry import PIXEL_VOLUMES, Geometry
from cgnn_jax.sim.propagate import Crossings
from cgnn_jax.utils.cpus import ordered_map

# Charge-collecting depth as a fraction of 2t (t = the detector file's module_t), by volume:
# calibrated so that cells per hit match real events (pixel barrel 7.0 mean / 5 median, pixel
# endcaps 1.7, short strips 1.7-2.6, long strips 2.7-3.0); readout thresholds are folded in. The
# pixels' 0.46-0.5 is a depth of ~module_t, the thickness the ACTS TrackML detector gives its
# pixel modules (0.15 mm): module_t seems to be the full thickness, not half of it.
DEPTH_FRACTION: dict[int, float] = {
    7: 0.5,
    8: 0.46,
    9: 0.5,
    12: 0.45,
    13: 0.4,
    14: 0.45,
    16: 0.35,
    17: 0.3,
    18: 0.35,
}
# Charge-sharing width added to the geometric cluster extent along u (mm), by volume.
SHARING_U: dict[int, float] = {
    7: 0.02,
    8: 0.0,
    9: 0.02,
    12: 0.025,
    13: 0.0,
    14: 0.025,
    16: 0.17,
    17: 0.19,
    18: 0.17,
}
# Share of noise hits per volume (%), as measured on real TrackML events.
NOISE_VOLUME_SHARE: dict[int, float] = {
    7: 4,
    8: 10,
    9: 4,
    12: 7,
    13: 30,
    14: 6,
    16: 3,
    17: 32,
    18: 5,
}
PIXEL_CHARGE = 0.3

# The cluster models of :func:`cell_clusters`: ``"staircase"`` (the calibrated staircase above) and
# ``"path_length"`` (pixel clusters from the path length in each pixel, :func:`pixel_path_clusters`).
CLUSTER_MODELS: tuple[str, ...] = ("staircase", "path_length")

# The path-length pixel model. The TrackML events were digitised by ACTS (Fatras): the track's
# segment between the sensor's two faces is cut at the pixel boundaries, the segment's charge
# drifts to the readout face (readout side -1: the inner face, local w < 0), sheared along u by the
# Lorentz angle, and a pixel's value is the path length in it (ACTS ``CartesianSegmentation::
# digitizationStep``, ``PlanarModuleStepper``). Its TrackML detector (ACTS ``GenericDetectorML``):
# pixel modules 0.15 mm (``module_t``), Lorentz angle 0.12 rad in the barrel and 0 in the endcaps,
# pitch 0.05 x 0.05625 mm. The real events fix the depth the charge is collected over: the charge
# per hit is the path length through 0.30 mm (2 ``module_t``) in the endcaps and through 0.15 mm
# (``module_t``) in the barrel (median ratio 1.00 in both), the cluster length along v grows by one
# pixel per 0.30 mm resp. 0.15 mm of the track's projection, and the barrel's Lorentz width,
# 0.15 mm x tan(0.12) = 0.36 pitch, is what the real barrel's u widths show against the signed
# crossing angle (narrowest at d_u / d_w = +tan 0.12).
PIXEL_DEPTH_MM: dict[int, float] = {7: 0.30, 8: 0.15, 9: 0.30}
PIXEL_LORENTZ_ANGLE: dict[int, float] = {7: 0.0, 8: 0.12, 9: 0.0}
# Relative Gaussian spread of the deposited charge per hit and per pixel: the real pixel charge per
# path length spreads by 7-9 % (no Landau tail: the production deposits the path length); a 7 %
# factor per hit and another per pixel give the 9 % of 1-2-pixel endcap clusters and the ~7 % of
# the barrel's many-pixel clusters.
PIXEL_CHARGE_SPREAD_HIT = 0.07
PIXEL_CHARGE_SPREAD_CELL = 0.07
_N_CANDIDATES = 8
_MAX_CELLS_PER_AXIS = 40


def _vol_table(geometry: Geometry, table: dict[int, float]) -> np.ndarray:
    out = np.zeros(geometry.volume_id.max() + 1)
    for v, x in table.items():
        out[v] = x
    return out


def module_hits(geometry: Geometry, crossings: Crossings) -> dict[str, np.ndarray]:
    """Intersect crossings ``[N]`` with the modules of their layer.

    Returns a dict of arrays ``[H]`` ordered by crossing then path: ``crossing`` (index into
    ``crossings``), ``module`` (geometry row), ``pos`` ``[H, 3]`` (true point on the module plane),
    ``u``, ``v`` (local coordinates).
    """
    n = len(crossings.particle)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return {
            "crossing": e,
            "module": e,
            "pos": np.zeros((0, 3)),
            "u": np.zeros(0),
            "v": np.zeros(0),
        }
    q = geometry.lookup_points(crossings.pos, crossings.layer)
    k = min(_N_CANDIDATES, geometry.n_modules)
    _, cand = geometry.tree.query(q, k=k, workers=-1)
    cand = cand.reshape(n, k)
    # in blocks of crossings: the [block, k, 3] temporaries stay small enough to be reused by
    # the allocator (fresh large arrays cost page faults: ~2x the arithmetic on a VM), and the
    # result is the same as in one piece (blocks are consecutive crossings, kept in order)
    starts = range(0, n, _BLOCK)

    def block(a: int) -> dict[str, np.ndarray]:
        return _module_hits_block(geometry, crossings, cand, a, min(a + _BLOCK, n))

    parts = list(ordered_map(block, starts))  # on threads (numpy frees the GIL), in order
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


_BLOCK = 16384


def _module_hits_block(
    geometry: Geometry, crossings: Crossings, cand_all: np.ndarray, a: int, b: int
) -> dict[str, np.ndarray]:
    """:func:`module_hits` of crossings ``a:b`` (candidates ``cand_all [N, k]``)."""
    cand = cand_all[a:b]
    ok = cand < geometry.n_modules
    cand = np.where(ok, cand, 0)
    ok &= geometry.layer_index[cand] == crossings.layer[a:b, None]
    rot = geometry.rot[cand]  # [B, k, 3, 3]
    w = rot[..., 2]
    c = geometry.center[cand]
    pos = crossings.pos[a:b, None, :]
    d = crossings.direction[a:b, None, :]
    denom = np.einsum("nkj,nkj->nk", np.broadcast_to(d, w.shape), w)
    denom = np.where(np.abs(denom) < 1e-9, 1e-9, denom)
    t = np.einsum("nkj,nkj->nk", c - pos, w) / denom
    x = pos + t[..., None] * d
    rel = x - c
    u = np.einsum("nkj,nkj->nk", rel, rot[..., 0])
    v = np.einsum("nkj,nkj->nk", rel, rot[..., 1])
    hv = geometry.hv[cand]
    hu = geometry.minhu[cand] + (geometry.maxhu[cand] - geometry.minhu[cand]) * (v + hv) / (2 * hv)
    inside = ok & (np.abs(v) <= hv) & (np.abs(u) <= hu) & (np.abs(t) < 50.0)
    ci, ki = np.nonzero(inside)
    order = np.lexsort((t[ci, ki], ci))
    ci, ki = ci[order], ki[order]
    return {
        "crossing": ci + a,
        "module": cand[ci, ki],
        "pos": x[ci, ki],
        "u": u[ci, ki],
        "v": v[ci, ki],
    }


Clusters = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def cell_clusters(
    geometry: Geometry,
    module: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    direction: np.ndarray | None,
    rng: np.random.Generator,
    model: str = "staircase",
) -> Clusters:
    """Cells of hits ``[H]`` and the measured position, by the cluster ``model``.

    ``"staircase"``: :func:`staircase_clusters` for every hit. ``"path_length"``:
    :func:`pixel_path_clusters` for the pixel hits (noise hits, ``direction=None``, as crossings of
    soft particles from random directions) and :func:`staircase_clusters` for the strip hits.

    Returns:
      ``(hit_index, ch0, ch1, value, u_meas, v_meas)``: cell arrays ``[n_cells]`` grouped by hit
      (hits in order), then the measured local positions ``[H]``.
    """
    if model == "staircase":
        return staircase_clusters(geometry, module, u, v, direction, rng)
    if model != "path_length":
        raise ValueError(f"cluster model must be one of {CLUSTER_MODELS}, got {model!r}")
    n = len(module)
    pixel = np.isin(geometry.volume_id[module], PIXEL_VOLUMES)
    parts = []
    for mask, fn in ((~pixel, staircase_clusters), (pixel, pixel_path_clusters)):
        idx = np.flatnonzero(mask)
        d = None if direction is None else direction[idx]
        parts.append((idx, fn(geometry, module[idx], u[idx], v[idx], d, rng)))
    hit = np.concatenate([idx[c[0]] for idx, c in parts])
    order = np.argsort(hit, kind="stable")
    u_meas, v_meas = np.zeros(n), np.zeros(n)
    for idx, c in parts:
        u_meas[idx], v_meas[idx] = c[4], c[5]
    return (
        hit[order],
        np.concatenate([c[1] for _, c in parts])[order],
        np.concatenate([c[2] for _, c in parts])[order],
        np.concatenate([c[3] for _, c in parts])[order],
        u_meas,
        v_meas,
    )


def staircase_clusters(
    geometry: Geometry,
    module: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    direction: np.ndarray | None,
    rng: np.random.Generator,
) -> Clusters:
    """Cells of hits ``[H]`` and the measured position: the centre of the fired channels.

    The track crosses the charge-collecting depth around its true crossing point ``(u, v)``; the
    fired channels along each axis are those its projection ``[u - l_u / 2, u + l_u / 2]`` (and
    likewise along v) overlaps, so the cluster sits where the track crossed. The measurement is the
    cluster's centre (the midpoint of its first and last channel along each axis): binary
    digitisation, so a one-channel cluster measures the channel's centre (a uniform error over the
    pitch; on the strips' long ``v`` channels, over the strip length).

    Args:
      module, u, v: ``[H]`` module rows and true local positions.
      direction: ``[H, 3]`` track direction, or ``None`` for noise (random small clusters).
    Returns:
      ``(hit_index, ch0, ch1, value, u_meas, v_meas)``: cell arrays ``[n_cells]`` grouped by hit,
      then the measured local positions ``[H]``.
    """
    n = len(module)
    vol = geometry.volume_id[module]
    pu, pv = geometry.pitch_u[module], geometry.pitch_v[module]
    if direction is None:
        lu = (rng.random(n) < 0.3) * pu
        lv = np.zeros(n)
    else:
        rot = geometry.rot[module]
        du = np.abs(np.einsum("nj,nj->n", direction, rot[:, :, 0]))
        dv = np.abs(np.einsum("nj,nj->n", direction, rot[:, :, 1]))
        dw = np.maximum(np.abs(np.einsum("nj,nj->n", direction, rot[:, :, 2])), 1e-3)
        thick = 2.0 * geometry.half_t[module] * _vol_table(geometry, DEPTH_FRACTION)[vol]
        lu = thick * du / dw + _vol_table(geometry, SHARING_U)[vol]
        lv = thick * dv / dw
    maxhu, hv = geometry.maxhu[module], geometry.hv[module]
    n_u_cells = np.maximum(np.floor(2 * maxhu / pu).astype(np.int64), 1)
    n_v_cells = np.maximum(np.floor(2 * hv / pv).astype(np.int64), 1)

    def channels(x, half_len, pitch, half_width, n_cells):
        lo = np.floor((x - half_len + half_width) / pitch).astype(np.int64)
        hi = np.floor((x + half_len + half_width) / pitch).astype(np.int64)
        lo = np.clip(lo, 0, n_cells - 1)
        hi = np.clip(hi, lo, np.minimum(lo + _MAX_CELLS_PER_AXIS - 1, n_cells - 1))
        return lo, hi

    u0, u1 = channels(u, 0.5 * lu, pu, maxhu, n_u_cells)
    v0, v1 = channels(v, 0.5 * lv, pv, hv, n_v_cells)
    nu, nv = u1 - u0 + 1, v1 - v0 + 1
    u_meas = (0.5 * (u0 + u1) + 0.5) * pu - maxhu
    v_meas = np.clip((0.5 * (v0 + v1) + 0.5) * pv - hv, -hv, hv)
    hu = geometry.minhu[module] + (maxhu - geometry.minhu[module]) * (v_meas + hv) / (2 * hv)
    u_meas = np.clip(u_meas, -hu, hu)

    ncell = nu + nv - 1
    hit = np.repeat(np.arange(n), ncell)
    start = np.cumsum(ncell) - ncell
    k = np.arange(len(hit)) - start[hit]
    span = np.maximum(ncell[hit] - 1, 1)
    iu = np.floor(k * (nu[hit] - 1) / span + 0.5).astype(np.int64)
    iv = k - iu
    ch0 = u0[hit] + iu
    ch1 = v0[hit] + iv
    pixel = np.isin(vol, PIXEL_VOLUMES)
    share = rng.uniform(0.5, 1.5, size=len(hit))
    share_sum = np.bincount(hit, weights=share, minlength=n)
    total = PIXEL_CHARGE * np.exp(rng.normal(0.0, 0.25, size=n))
    value = np.where(pixel[hit], total[hit] * share / share_sum[hit], 1.0)
    return (
        hit,
        ch0.astype(np.int32),
        ch1.astype(np.int32),
        value.astype(np.float32),
        u_meas,
        v_meas,
    )


def pixel_path_clusters(
    geometry: Geometry,
    module: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    direction: np.ndarray | None,
    rng: np.random.Generator,
) -> Clusters:
    """Pixel cells of hits ``[H]`` from the track's path length in each pixel, and the hit position.

    The straight track crosses the collecting depth ``D`` (:data:`PIXEL_DEPTH_MM`) centred on the
    module plane at its true crossing point ``(u, v)``; the charge made at depth ``w`` drifts to the
    readout face ``w = -D / 2`` and is displaced along ``-u`` by ``tan θ_L`` per unit of drift
    (:data:`PIXEL_LORENTZ_ANGLE`), so the charge lands on the segment from
    ``(u - D t_u / 2, v - D t_v / 2)`` to ``(u + D t_u / 2 - D tan θ_L, v + D t_v / 2)``
    (``t = d / d_w`` the signed local slopes). That segment is cut at the pixel boundaries; each
    piece's pixel gets the piece's share of the path length ``D / |d_w|`` (mm), times a Gaussian
    factor per hit and per pixel (:data:`PIXEL_CHARGE_SPREAD_HIT`, ``_CELL``). A generic segment
    fires ``n_u + n_v - 1`` pixels, with small values at its ends. The measured position is the
    charge-weighted centre of the pixels, shifted along ``+u`` by ``module_t tan θ_L``: the
    Lorentz correction of the TrackML reconstruction (its drift length is the module's
    ``module_t``). Segments longer than ``_MAX_CELLS_PER_AXIS`` pixels along an axis are shortened
    about their centre.

    Args:
      module, u, v: ``[H]`` pixel-module rows and true local positions.
      direction: ``[H, 3]`` track direction, or ``None`` for noise: soft particles from random
        directions (a uniform flux: ``|d_w|`` is the square root of a uniform number).
    Returns:
      ``(hit_index, ch0, ch1, value, u_meas, v_meas)`` as :func:`cell_clusters`.
    """
    n = len(module)
    vol = geometry.volume_id[module]
    pu, pv = geometry.pitch_u[module], geometry.pitch_v[module]
    maxhu, hv = geometry.maxhu[module], geometry.hv[module]
    depth = _vol_table(geometry, PIXEL_DEPTH_MM)[vol]
    tan_l = np.tan(_vol_table(geometry, PIXEL_LORENTZ_ANGLE)[vol])
    if direction is None:
        dw = np.sqrt(rng.uniform(1e-4, 1.0, size=n))
        phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
        s = np.sqrt(1.0 - dw * dw)
        du, dv = s * np.cos(phi), s * np.sin(phi)
    else:
        rot = geometry.rot[module]
        du = np.einsum("nj,nj->n", direction, rot[:, :, 0])
        dv = np.einsum("nj,nj->n", direction, rot[:, :, 1])
        dw = np.einsum("nj,nj->n", direction, rot[:, :, 2])
    dw = np.where(dw < 0.0, -1.0, 1.0) * np.maximum(np.abs(dw), 1e-3)
    tu, tv = du / dw, dv / dw
    path = depth * np.sqrt(1.0 + tu * tu + tv * tv)
    # the drifted segment, in channel units from the module's corner
    half_u = 0.5 * depth * tu
    half_v = 0.5 * depth * tv
    mid_u = u - 0.5 * depth * tan_l
    span_u = 2.0 * half_u - depth * tan_l
    span_v = 2.0 * half_v
    limit = _MAX_CELLS_PER_AXIS - 1.0
    f = np.minimum(
        1.0,
        np.minimum(
            limit * pu / np.maximum(np.abs(span_u), 1e-12),
            limit * pv / np.maximum(np.abs(span_v), 1e-12),
        ),
    )
    path = path * f
    n_u_cells = np.maximum(np.floor(2 * maxhu / pu).astype(np.int64), 1)
    n_v_cells = np.maximum(np.floor(2 * hv / pv).astype(np.int64), 1)
    eps = 1e-6
    xa = np.clip((mid_u - 0.5 * f * span_u + maxhu) / pu, eps, n_u_cells - eps)
    xb = np.clip((mid_u + 0.5 * f * span_u + maxhu) / pu, eps, n_u_cells - eps)
    ya = np.clip((v - 0.5 * f * span_v + hv) / pv, eps, n_v_cells - eps)
    yb = np.clip((v + 0.5 * f * span_v + hv) / pv, eps, n_v_cells - eps)

    # every crossing of a pixel boundary, as the fraction t of the segment, with t = 0 and 1
    lo_x = np.floor(np.minimum(xa, xb)).astype(np.int64)
    lo_y = np.floor(np.minimum(ya, yb)).astype(np.int64)
    n_x = np.floor(np.maximum(xa, xb)).astype(np.int64) - lo_x
    n_y = np.floor(np.maximum(ya, yb)).astype(np.int64) - lo_y
    count = 2 + n_x + n_y
    owner = np.repeat(np.arange(n), count)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    on_x = (j >= 2) & (j < 2 + n_x[owner])
    on_y = j >= 2 + n_x[owner]
    k = np.where(on_x, lo_x[owner] + j - 1, lo_y[owner] + j - 1 - n_x[owner])
    a = np.where(on_y, ya[owner], xa[owner])
    b = np.where(on_y, yb[owner], xb[owner])
    t = np.where(j == 1, 1.0, 0.0)
    cross = j >= 2
    t[cross] = (k[cross] - a[cross]) / (b[cross] - a[cross])
    order = np.lexsort((t, owner))
    t, owner = t[order], owner[order]
    piece = (owner[:-1] == owner[1:]) & (t[1:] - t[:-1] > 1e-9)
    t0, t1, hit = t[:-1][piece], t[1:][piece], owner[:-1][piece]
    tm = 0.5 * (t0 + t1)
    ch0 = np.clip(np.floor(xa[hit] + tm * (xb[hit] - xa[hit])), 0, n_u_cells[hit] - 1)
    ch1 = np.clip(np.floor(ya[hit] + tm * (yb[hit] - ya[hit])), 0, n_v_cells[hit] - 1)
    spread_hit = np.clip(1.0 + PIXEL_CHARGE_SPREAD_HIT * rng.standard_normal(n), 0.5, 1.5)
    spread_cell = np.clip(1.0 + PIXEL_CHARGE_SPREAD_CELL * rng.standard_normal(len(hit)), 0.5, 1.5)
    value = (t1 - t0) * path[hit] * spread_hit[hit] * spread_cell

    q = np.maximum(np.bincount(hit, weights=value, minlength=n), 1e-12)
    cu = np.bincount(hit, weights=value * (ch0 + 0.5), minlength=n) / q
    cv = np.bincount(hit, weights=value * (ch1 + 0.5), minlength=n) / q
    u_meas = cu * pu - maxhu + geometry.half_t[module] * tan_l
    v_meas = np.clip(cv * pv - hv, -hv, hv)
    hu = geometry.minhu[module] + (maxhu - geometry.minhu[module]) * (v_meas + hv) / (2 * hv)
    u_meas = np.clip(u_meas, -hu, hu)
    return (
        hit,
        ch0.astype(np.int32),
        ch1.astype(np.int32),
        value.astype(np.float32),
        u_meas,
        v_meas,
    )


def local_to_global(
    geometry: Geometry, module: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """``[H, 3]`` global points of local positions ``u, v`` ``[H]`` on modules ``[H]``."""
    rot = geometry.rot[module]
    return geometry.center[module] + rot[:, :, 0] * u[:, None] + rot[:, :, 1] * v[:, None]


def noise_hits(
    geometry: Geometry, n_noise: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_noise`` random hits: (module rows, u, v), volumes by the real events' noise shares."""
    share = _vol_table(geometry, NOISE_VOLUME_SHARE)
    vol = geometry.volume_id
    area = geometry.module_area()
    # P(module) = share(volume) * area / area(volume)
    vol_area = np.bincount(vol, weights=area)
    prob = share[vol] * area / vol_area[vol]
    prob /= prob.sum()
    module = rng.choice(geometry.n_modules, size=n_noise, p=prob)
    hv = geometry.hv[module]
    v = rng.uniform(-1.0, 1.0, size=n_noise) * hv
    hu = geometry.minhu[module] + (geometry.maxhu[module] - geometry.minhu[module]) * (v + hv) / (
        2 * hv
    )
    u = rng.uniform(-1.0, 1.0, size=n_noise) * hu
    return module, u, v
