"""Helix propagation through the layer surfaces, with multiple scattering and energy loss.

A charged particle in the uniform solenoid field ``B ẑ`` moves on a helix of transverse radius
``R[mm] = p_T[GeV] / (0.3 B[T]) * 1000``. Its transverse direction angle ψ turns by ``h s_t / R``
over a transverse path ``s_t``, with ``h = -sign(q)`` for ``B > 0``. The centre of the circle is
``c = x - h R (sin ψ, -cos ψ)`` and the position angle about the centre is ``α = ψ - h π/2``.

Each step finds, for all live particles at once, the first crossing of any layer surface along the
exact helix (cylinders analytically from the circle-circle intersection, over the next turns; disks
from the linear z(s_t)), moves there, records the crossing, and applies multiple scattering
(Highland formula with the layer's material, scaled by the incidence angle) and a mean ionisation
energy loss. Particles end when they leave the detector, when their p falls below ``p_min``, or
after a number of crossings set by their range.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cgnn_jax.sim.geometry import Geometry

PION_MASS = 0.13957  # GeV
# Mean ionisation loss per unit radiation length, silicon-equivalent material: 0.387 MeV/mm * 93.7 mm.
DEDX_PER_X0 = 0.0363  # GeV


@dataclasses.dataclass
class Crossings:
    """Layer crossings, arrays ``[N]`` in step order (step-major).

    ``particle`` indexes the propagated particles; ``layer`` is a :class:`Geometry` layer index;
    ``pos`` ``[N, 3]`` mm; ``direction`` ``[N, 3]`` unit vector before scattering; ``p`` GeV.
    """

    particle: np.ndarray
    layer: np.ndarray
    step: np.ndarray
    pos: np.ndarray
    direction: np.ndarray
    p: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def propagate(
    geometry: Geometry,
    vertex: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    max_crossings: np.ndarray,
    rng: np.random.Generator,
    *,
    b_field: float = 2.0,
    multiple_scattering: bool = True,
    energy_loss: bool = True,
    p_min: float = 0.03,
    max_steps: int = 64,
    turns: int = 3,
) -> Crossings:
    """Propagate particles ``[P]`` from their vertices; see the module docstring.

    Args:
      geometry: detector.
      vertex: ``[P, 3]`` mm. momentum: ``[P, 3]`` GeV. charge: ``[P]`` ±1.
      max_crossings: ``[P]`` a particle stops after this many layer crossings.
      rng: numpy generator for the scattering angles.
    Returns:
      All crossings as :class:`Crossings`.
    """
    cyl = np.flatnonzero(geometry.layer_is_barrel)
    dsk = np.flatnonzero(~geometry.layer_is_barrel)
    rho, zlo, zhi = geometry.layer_pos[cyl], geometry.layer_lo[cyl], geometry.layer_hi[cyl]
    zd, rlo, rhi = geometry.layer_pos[dsk], geometry.layer_lo[dsk], geometry.layer_hi[dsk]
    layer_x0 = geometry.layer_x0
    k_turn = 2.0 * np.pi * np.arange(turns)[None, None, None, :]

    idx = np.flatnonzero(max_crossings > 0)
    pos = vertex[idx].astype(np.float64).copy()
    mom = momentum[idx].astype(np.float64)
    p = np.linalg.norm(mom, axis=1)
    direction = mom / p[:, None]
    h = -np.sign(charge[idx]).astype(np.float64) * np.sign(b_field)
    left = max_crossings[idx].astype(np.int64)
    last = np.full(len(idx), -1)
    out = {k: [] for k in ("particle", "layer", "step", "pos", "direction", "p")}
    bconst = 0.3 * abs(b_field) / 1000.0  # 1/R[mm] per 1/p_T[GeV]

    for step in range(max_steps):
        if len(idx) == 0:
            break
        dt = np.hypot(direction[:, 0], direction[:, 1])
        dt = np.maximum(dt, 1e-12)
        pt = p * dt
        R = pt / bconst
        cot = direction[:, 2] / dt
        psi = np.arctan2(direction[:, 1], direction[:, 0])
        xc = pos[:, 0] - h * R * np.sin(psi)
        yc = pos[:, 1] + h * R * np.cos(psi)
        a0 = psi - h * np.pi / 2
        d = np.maximum(np.hypot(xc, yc), 1e-9)
        beta = np.arctan2(yc, xc)
        s_min = np.where(last[:, None] >= 0, 1e-3, 0.0)

        # Cylinders: [A, C, 2 solutions, turns].
        cosv = (rho[None, :] ** 2 - d[:, None] ** 2 - R[:, None] ** 2) / (
            2 * R[:, None] * d[:, None]
        )
        ok = np.abs(cosv) <= 1.0
        g = np.arccos(np.clip(cosv, -1.0, 1.0))
        sols = beta[:, None, None] + np.stack([g, -g], axis=-1)  # [A, C, 2]
        dal = np.mod(h[:, None, None] * (sols - a0[:, None, None]), 2 * np.pi)[..., None] + k_turn
        st = R[:, None, None, None] * dal
        zz = pos[:, 2, None, None, None] + st * cot[:, None, None, None]
        same = (cyl[None, :] == last[:, None])[:, :, None, None]
        valid = (
            ok[:, :, None, None]
            & (zz >= zlo[None, :, None, None])
            & (zz <= zhi[None, :, None, None])
            & (st > np.where(same, 1.0, s_min[:, :, None, None]))
        )
        st_c = np.where(valid, st, np.inf).min(axis=(2, 3))  # [A, C]

        # Disks: [A, D].
        with np.errstate(divide="ignore", invalid="ignore"):
            st_d = (zd[None, :] - pos[:, 2, None]) / cot[:, None]
        st_d = np.where(np.isfinite(st_d), st_d, -1.0)
        al = a0[:, None] + h[:, None] * st_d / R[:, None]
        rr = np.hypot(xc[:, None] + R[:, None] * np.cos(al), yc[:, None] + R[:, None] * np.sin(al))
        same_d = dsk[None, :] == last[:, None]
        valid_d = (
            (rr >= rlo[None, :]) & (rr <= rhi[None, :]) & (st_d > np.where(same_d, 1.0, s_min))
        )
        st_d = np.where(valid_d, st_d, np.inf)

        st_all = np.concatenate([st_c, st_d], axis=1)
        j = np.argmin(st_all, axis=1)
        s = st_all[np.arange(len(j)), j]
        alive = np.isfinite(s)
        if not alive.all():
            keep = np.flatnonzero(alive)
            idx, pos, p, direction, h, left, last, j, s = (
                a[keep] for a in (idx, pos, p, direction, h, left, last, j, s)
            )
            R, cot, psi, xc, yc, a0 = (a[keep] for a in (R, cot, psi, xc, yc, a0))
            if len(idx) == 0:
                break
        layer = np.concatenate([cyl, dsk])[j]
        dalpha = s / R
        al = a0 + h * dalpha
        pos = np.stack([xc + R * np.cos(al), yc + R * np.sin(al), pos[:, 2] + s * cot], axis=1)
        psi = psi + h * dalpha
        direction = _unit(np.stack([np.cos(psi), np.sin(psi), cot], axis=1))
        out["particle"].append(idx)
        out["layer"].append(layer)
        out["step"].append(np.full(len(idx), step, dtype=np.int32))
        out["pos"].append(pos)
        out["direction"].append(direction)
        out["p"].append(p)

        # Material: scattering and energy loss, path scaled by the incidence angle.
        is_barrel = geometry.layer_is_barrel[layer]
        r_xy = np.maximum(np.hypot(pos[:, 0], pos[:, 1]), 1e-9)
        cos_inc = np.where(
            is_barrel,
            np.abs(direction[:, 0] * pos[:, 0] + direction[:, 1] * pos[:, 1]) / r_xy,
            np.abs(direction[:, 2]),
        )
        x0 = layer_x0[layer] / np.maximum(cos_inc, 0.05)
        energy = np.sqrt(p**2 + PION_MASS**2)
        if multiple_scattering:
            beta_v = p / energy
            theta0 = 0.0136 / (beta_v * p) * np.sqrt(x0) * (1.0 + 0.038 * np.log(x0 / beta_v**2))
            e1 = np.cross(direction, np.array([0.0, 0.0, 1.0]))
            n1 = np.linalg.norm(e1, axis=1, keepdims=True)
            e1 = np.where(n1 > 1e-9, e1 / np.maximum(n1, 1e-12), np.array([1.0, 0.0, 0.0]))
            e2 = np.cross(direction, e1)
            th = rng.normal(size=(len(idx), 2)) * theta0[:, None]
            direction = _unit(direction + th[:, :1] * e1 + th[:, 1:] * e2)
        if energy_loss:
            energy = energy - DEDX_PER_X0 * x0
            p = np.sqrt(np.maximum(energy**2 - PION_MASS**2, 0.0))
        left = left - 1
        last = layer
        live = (left > 0) & (p > p_min)
        if not live.all():
            keep = np.flatnonzero(live)
            idx, pos, p, direction, h, left, last = (
                a[keep] for a in (idx, pos, p, direction, h, left, last)
            )

    if not out["particle"]:
        z = np.zeros(0)
        return Crossings(
            z.astype(np.int64),
            z.astype(np.int64),
            z.astype(np.int32),
            np.zeros((0, 3)),
            np.zeros((0, 3)),
            z,
        )
    return Crossings(**{k: np.concatenate(v) for k, v in out.items()})
