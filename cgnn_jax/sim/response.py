"""Detector response: module hits, cell clusters, the measured position, noise.

* **Module hits.** Each layer crossing is matched against the nearest modules of its layer; the
  track (a straight line over the few mm between the nominal surface and a module) is intersected
  with each module's plane and kept if it falls inside the module's bounds (rectangle or trapezoid
  in local ``u, v``). Overlapping modules give two hits on a layer, gaps none.
* **Measurement.** The hit position is the centre of its cell cluster (binary digitisation), mapped
  back to global coordinates on the module plane: along the strips' long ``v`` channels the error
  is uniform over the strip length.
* **Cells.** The track crosses the sensor's charge-collecting depth ``f 2 t`` around its true
  crossing point; the projection of that segment on the module plane, ``f 2 t |d_u / d_w|`` along u
  (plus a charge-sharing width) and ``f 2 t |d_v / d_w|`` along v, fires the channels it overlaps,
  so the cluster sits where the track crossed and its length follows the crossing angle. The
  cluster is the staircase of ``n_u + n_v - 1`` cells between its first and last channels. Pixel
  cells carry a deposited charge summing to ~0.3 per hit; strip cells carry 1.
* **Noise.** Random hits on random modules (by volume, with the real events' shares), uniform over
  the module's surface, one or two cells each.
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


def cell_clusters(
    geometry: Geometry,
    module: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    direction: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
