"""Propagation through the layers in the solenoid field, with multiple scattering and energy loss.

A charged particle in a uniform field ``B ẑ`` moves on a helix of transverse radius
``R[mm] = p_T[GeV] / (0.3 B[T]) * 1000``. Its transverse direction angle ψ turns by ``h s_t / R``
over a transverse path ``s_t``, with ``h = -sign(q)`` for ``B > 0``. The centre of the circle is
``c = x - h R (sin ψ, -cos ψ)`` and the position angle about the centre is ``α = ψ - h π/2``.

Each step finds, for all live particles at once, the first crossing of any layer surface along the
exact helix (cylinders analytically from the circle-circle intersection, over the next turns; disks
from the linear z(s_t)), moves there, records the crossing, and applies multiple scattering
(Highland formula with the layer's material, scaled by the incidence angle) and a mean ionisation
energy loss. Passive cylinders (beam pipe, support tube) scatter and slow the particle without a
hit. Particles end when they leave the detector, when their p falls below ``p_min``, or after a
number of crossings set by their range.

In a non-uniform field (:class:`cgnn_jax.sim.field.SolenoidField`) each step is a kick-drift-kick:
the step is predicted on the helix of the local axial field, the field is read at its midpoint, the
direction is turned by half the Lorentz force of the midpoint's transverse field (``B_r``) over the
step, the particle moves on the helix of the midpoint's ``B_z`` to the crossing, and the second
half kick follows. Tracks then bend off a helix where ``B_z`` falls and ``B_r`` grows: towards the
ends of the solenoid, i.e. at large |η|.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from cgnn_jax.sim.geometry import Geometry
from cgnn_jax.utils.cpus import usable_cpus

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


def _surfaces(
    geometry: Geometry, passive: Sequence[tuple[float, float, float]]
) -> dict[str, np.ndarray]:
    """Cylinders and disks to intersect: the layers, then passive cylinders ``(r, half z, x/X0)``
    (index ``n_layers + i``); with each surface's material and barrel flag."""
    cyl = np.flatnonzero(geometry.layer_is_barrel)
    dsk = np.flatnonzero(~geometry.layer_is_barrel)
    pas = np.asarray(passive, dtype=np.float64).reshape(-1, 3)
    ids_p = geometry.n_layers + np.arange(len(pas))
    return {
        "cyl": np.concatenate([cyl, ids_p]),
        "rho": np.concatenate([geometry.layer_pos[cyl], pas[:, 0]]),
        "zlo": np.concatenate([geometry.layer_lo[cyl], -pas[:, 1]]),
        "zhi": np.concatenate([geometry.layer_hi[cyl], pas[:, 1]]),
        "dsk": dsk,
        "zd": geometry.layer_pos[dsk],
        "rlo": geometry.layer_lo[dsk],
        "rhi": geometry.layer_hi[dsk],
        "x0": np.concatenate([geometry.layer_x0, pas[:, 2]]),
        "is_barrel": np.concatenate([geometry.layer_is_barrel, np.ones(len(pas), dtype=bool)]),
    }


def _next_crossing(
    surf: dict[str, np.ndarray],
    pos: np.ndarray,
    direction: np.ndarray,
    p: np.ndarray,
    h: np.ndarray,
    bz: np.ndarray,
    last: np.ndarray,
    turns: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """First layer crossing along the helix of each particle ``[A]`` in the axial field ``bz`` ``[A]``.

    Returns ``(s, layer, helix)``: the transverse arc length to it (``inf``: none), its layer index
    (a passive surface's index is ``n_layers`` or more) and the helix parameters (``R, cot, psi, xc, yc, a0``, arrays ``[A]``).
    """
    cyl, rho, zlo, zhi = surf["cyl"], surf["rho"], surf["zlo"], surf["zhi"]
    dsk, zd, rlo, rhi = surf["dsk"], surf["zd"], surf["rlo"], surf["rhi"]
    dt = np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-12)
    R = p * dt / (0.3 * np.abs(bz) / 1000.0)
    cot = direction[:, 2] / dt
    psi = np.arctan2(direction[:, 1], direction[:, 0])
    xc = pos[:, 0] - h * R * np.sin(psi)
    yc = pos[:, 1] + h * R * np.cos(psi)
    a0 = psi - h * np.pi / 2
    d = np.maximum(np.hypot(xc, yc), 1e-9)
    beta = np.arctan2(yc, xc)
    s_min = np.where(last[:, None] >= 0, 1e-3, 0.0)

    def cylinders(m: np.ndarray | slice, n_turns: int) -> np.ndarray:
        """``[A', C]`` arc length to each cylinder over ``n_turns`` turns for particles ``m``."""
        k_turn = 2.0 * np.pi * np.arange(n_turns)[None, None, None, :]
        Rm, dm, hm = R[m], d[m], h[m]
        cosv = (rho[None, :] ** 2 - dm[:, None] ** 2 - Rm[:, None] ** 2) / (
            2 * Rm[:, None] * dm[:, None]
        )
        ok = np.abs(cosv) <= 1.0
        g = np.arccos(np.clip(cosv, -1.0, 1.0))
        sols = beta[m][:, None, None] + np.stack([g, -g], axis=-1)  # [A', C, 2]
        dal = np.mod(hm[:, None, None] * (sols - a0[m][:, None, None]), 2 * np.pi)[..., None]
        st = Rm[:, None, None, None] * (dal + k_turn)
        zz = pos[m, 2, None, None, None] + st * cot[m][:, None, None, None]
        same = (cyl[None, :] == last[m][:, None])[:, :, None, None]
        valid = (
            ok[:, :, None, None]
            & (zz >= zlo[None, :, None, None])
            & (zz <= zhi[None, :, None, None])
            & (st > np.where(same, 1.0, s_min[m][:, :, None, None]))
        )
        return np.where(valid, st, np.inf).min(axis=(2, 3))

    # Cylinders on the current turn first: [A, C].
    st_c = cylinders(slice(None), 1)

    # Disks: [A, D].
    with np.errstate(divide="ignore", invalid="ignore"):
        st_d = (zd[None, :] - pos[:, 2, None]) / cot[:, None]
    st_d = np.where(np.isfinite(st_d), st_d, -1.0)
    # |c + R (cos al, sin al)|^2 = d^2 + R^2 + 2 d R cos(al - beta), c = d (cos beta, sin beta).
    al = (a0 - beta)[:, None] + h[:, None] * st_d / R[:, None]
    rr2 = (d * d + R * R)[:, None] + (2.0 * d * R)[:, None] * np.cos(al)
    same_d = dsk[None, :] == last[:, None]
    valid_d = (
        (rr2 >= rlo[None, :] ** 2)
        & (rr2 <= rhi[None, :] ** 2)
        & (st_d > np.where(same_d, 1.0, s_min))
    )
    st_d = np.where(valid_d, st_d, np.inf)

    st_all = np.concatenate([st_c, st_d], axis=1)
    j = np.argmin(st_all, axis=1)
    s = st_all[np.arange(len(j)), j]
    if turns > 1:
        # A later turn's crossing lies beyond 2πR: only loopers with nothing closer need them.
        more = np.flatnonzero(s > 2.0 * np.pi * R)
        if len(more):
            st_all[more, : len(cyl)] = cylinders(more, turns)
            j[more] = np.argmin(st_all[more], axis=1)
            s[more] = st_all[more, j[more]]
    layer = np.concatenate([cyl, dsk])[j]
    return s, layer, {"R": R, "cot": cot, "psi": psi, "xc": xc, "yc": yc, "a0": a0}


def _helix_point(pos: np.ndarray, hx: dict[str, np.ndarray], h: np.ndarray, s: np.ndarray):
    """Position ``[A, 3]`` and direction ``[A, 3]`` after a transverse arc length ``s`` ``[A]``."""
    al = hx["a0"] + h * s / hx["R"]
    new = np.stack(
        [
            hx["xc"] + hx["R"] * np.cos(al),
            hx["yc"] + hx["R"] * np.sin(al),
            pos[:, 2] + s * hx["cot"],
        ],
        axis=1,
    )
    psi = hx["psi"] + h * s / hx["R"]
    return new, _unit(np.stack([np.cos(psi), np.sin(psi), hx["cot"]], axis=1))


def _kick(
    direction: np.ndarray, q_over_p: np.ndarray, path: np.ndarray, b_perp: np.ndarray
) -> np.ndarray:
    """Turn ``direction`` ``[A, 3]`` by the Lorentz force of the field ``b_perp`` ``[A, 3]`` (T)
    over ``path`` ``[A]`` mm: ``dd/ds = 0.3e-3 q/p (d × B)``."""
    turn = (3.0e-4 * q_over_p * path)[:, None] * np.cross(direction, b_perp)
    return _unit(direction + turn)


class _Chunk:
    """The live particles of one slice of the event, stepped in lockstep with the other slices.

    A step is :meth:`cross` (the next crossing, the move there, the record, the material's
    scattering width) then :meth:`scatter` (the drawn angles, the energy loss, the end of
    particles that stop). The slices only meet at the scattering draws, which the caller makes
    in one call for all slices in particle order, so any number of slices gives the same event.
    """

    def __init__(
        self,
        sim: dict,
        idx: np.ndarray,
        vertex: np.ndarray,
        momentum: np.ndarray,
        charge: np.ndarray,
        max_crossings: np.ndarray,
    ) -> None:
        """``sim``: the settings :func:`propagate` shares between slices; ``idx`` ``[A]``: this
        slice's particles (rows of ``vertex [P, 3]``, ``momentum [P, 3]``, ``charge [P]``,
        ``max_crossings [P]``)."""
        self.sim = sim
        self.idx = idx
        self.pos = vertex[idx].astype(np.float64).copy()
        mom = momentum[idx].astype(np.float64)
        self.p = np.linalg.norm(mom, axis=1)
        self.direction = mom / self.p[:, None]
        self.q = np.sign(charge[idx]).astype(np.float64)
        self.left = max_crossings[idx].astype(np.int64)
        self.last = np.full(len(idx), -1)
        # per step: (particle, layer, step, pos, direction, p) of the crossings recorded
        self.records: dict[int, tuple[np.ndarray, ...]] = {}
        # between cross() and scatter(): the step's layer flags, material and energy [A]
        self.rec = self.x0 = self.energy = self.theta0 = np.zeros(0)

    def cross(self, step: int) -> int:
        """Move every live particle to its next crossing and record it; returns the number of
        particles that then need scattering angles (0 when none is left)."""
        sim, surf, field = self.sim, self.sim["surf"], self.sim["field"]
        pos, direction, p, q, last = self.pos, self.direction, self.p, self.q, self.last
        idx, left = self.idx, self.left
        if field is None:
            bz = np.full(len(idx), float(sim["b_field"]))
            h = -q * np.sign(bz)
            s, layer, hx = _next_crossing(surf, pos, direction, p, h, bz, last, sim["turns"])
        else:
            # Predict the step in the local axial field, then redo it in the field at its midpoint.
            b0 = field(pos)
            h = -q * np.sign(b0[:, 2])
            s, _, hx = _next_crossing(surf, pos, direction, p, h, b0[:, 2], last, 1)
            s_half = np.where(np.isfinite(s), 0.5 * s, 0.0)
            mid, _ = _helix_point(pos, hx, h, s_half)
            bm = field(mid)
            b_perp = bm * np.array([1.0, 1.0, 0.0])
            dt = np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-12)
            path = np.where(np.isfinite(s), s / dt, 0.0)
            direction = _kick(direction, q / p, 0.5 * path, b_perp)
            bz = bm[:, 2]
            h = -q * np.sign(bz)
            s, layer, hx = _next_crossing(surf, pos, direction, p, h, bz, last, sim["turns"])
        alive = np.isfinite(s)
        if not alive.all():
            keep = np.flatnonzero(alive)
            idx, pos, p, direction, q, h, left, last, layer, s = (
                a[keep] for a in (idx, pos, p, direction, q, h, left, last, layer, s)
            )
            hx = {k: v[keep] for k, v in hx.items()}
            if field is not None:
                b_perp = b_perp[keep]
            if len(idx) == 0:
                self.idx = idx
                return 0
        pos, direction = _helix_point(pos, hx, h, s)
        if field is not None:
            dt = np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-12)
            direction = _kick(direction, q / p, 0.5 * s / dt, b_perp)
        rec = layer < sim["n_layers"]
        n_rec = int(np.count_nonzero(rec))
        self.records[step] = (
            idx[rec],
            layer[rec],
            np.full(n_rec, step, dtype=np.int32),
            pos[rec],
            direction[rec],
            p[rec],
        )

        # Material: scattering and energy loss, path scaled by the incidence angle.
        is_barrel = sim["surf_barrel"][layer]
        r_xy = np.maximum(np.hypot(pos[:, 0], pos[:, 1]), 1e-9)
        cos_inc = np.where(
            is_barrel,
            np.abs(direction[:, 0] * pos[:, 0] + direction[:, 1] * pos[:, 1]) / r_xy,
            np.abs(direction[:, 2]),
        )
        x0 = sim["layer_x0"][layer] / np.maximum(cos_inc, 0.05)
        energy = np.sqrt(p**2 + PION_MASS**2)
        if sim["multiple_scattering"]:
            beta_v = p / energy
            self.theta0 = (
                0.0136 / (beta_v * p) * np.sqrt(x0) * (1.0 + 0.038 * np.log(x0 / beta_v**2))
            )
        self.idx, self.pos, self.direction, self.p, self.q = idx, pos, direction, p, q
        self.left, self.last, self.rec, self.x0, self.energy = left, layer, rec, x0, energy
        return len(idx) if sim["multiple_scattering"] else 0

    def scatter(self, normal: np.ndarray | None) -> None:
        """Turn the directions by the angles ``normal [A, 2]`` (unit normal draws; None without
        multiple scattering), lose energy, and end particles out of range or below ``p_min``."""
        sim, direction, p = self.sim, self.direction, self.p
        if normal is not None:
            e1 = np.cross(direction, np.array([0.0, 0.0, 1.0]))
            n1 = np.linalg.norm(e1, axis=1, keepdims=True)
            e1 = np.where(n1 > 1e-9, e1 / np.maximum(n1, 1e-12), np.array([1.0, 0.0, 0.0]))
            e2 = np.cross(direction, e1)
            th = normal * self.theta0[:, None]
            direction = _unit(direction + th[:, :1] * e1 + th[:, 1:] * e2)
        if sim["energy_loss"]:
            energy = self.energy - DEDX_PER_X0 * self.x0
            p = np.sqrt(np.maximum(energy**2 - PION_MASS**2, 0.0))
        left = self.left - self.rec
        live = (left > 0) & (p > sim["p_min"])
        idx, pos, q, last = self.idx, self.pos, self.q, self.last
        if not live.all():
            keep = np.flatnonzero(live)
            idx, pos, p, direction, q, left, last = (
                a[keep] for a in (idx, pos, p, direction, q, left, last)
            )
        self.idx, self.pos, self.p, self.direction, self.q = idx, pos, p, direction, q
        self.left, self.last = left, last


# Below this many live particles a step runs in one thread (thread hand-offs would cost more).
_MIN_THREADED = 4096


def propagate(
    geometry: Geometry,
    vertex: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    max_crossings: np.ndarray,
    rng: np.random.Generator,
    *,
    b_field: float = 2.0,
    field: Callable[[np.ndarray], np.ndarray] | None = None,
    multiple_scattering: bool = True,
    energy_loss: bool = True,
    p_min: float = 0.03,
    max_steps: int = 64,
    turns: int = 3,
    passive: Sequence[tuple[float, float, float]] = (),
    threads: int | None = None,
) -> Crossings:
    """Propagate particles ``[P]`` from their vertices; see the module docstring.

    Args:
      geometry: detector.
      vertex: ``[P, 3]`` mm. momentum: ``[P, 3]`` GeV. charge: ``[P]`` ±1.
      max_crossings: ``[P]`` a particle stops after this many layer crossings.
      rng: numpy generator for the scattering angles.
      b_field: the uniform axial field (T), used when ``field`` is None.
      field: a non-uniform field, ``field(pos [N, 3] mm) -> B [N, 3]`` tesla (e.g.
        :class:`cgnn_jax.sim.field.SolenoidField`); each step then follows the helix of the axial
        field at the step's midpoint, between two half kicks of the transverse field there.
      passive: passive material cylinders ``(radius mm, half length mm, x/X0)`` (beam pipe,
        support tubes): crossing one scatters and slows the particle but records no crossing.
      threads: step this many slices of the particles in parallel threads (numpy releases the
        GIL in its array loops); default: the CPU count, at most 4. The slices draw their
        scattering angles from ``rng`` in one call per step, in particle order, so the result
        is the same for any number of threads.
    Returns:
      All crossings as :class:`Crossings`, step-major, in particle order within a step.
    """
    surf = _surfaces(geometry, passive)
    sim = {
        "surf": surf,
        "layer_x0": surf["x0"],
        "surf_barrel": surf["is_barrel"],
        "n_layers": geometry.n_layers,
        "field": field,
        "b_field": b_field,
        "turns": turns,
        "multiple_scattering": multiple_scattering,
        "energy_loss": energy_loss,
        "p_min": p_min,
    }
    idx = np.flatnonzero(max_crossings > 0)
    n_threads = max(1, min(4, usable_cpus()) if threads is None else int(threads))
    n_threads = min(n_threads, max(1, len(idx) // _MIN_THREADED))
    chunks = [
        _Chunk(sim, part, vertex, momentum, charge, max_crossings)
        for part in np.array_split(idx, n_threads)
    ]
    pool = None
    if n_threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(n_threads, thread_name_prefix="propagate")
    try:
        for step in range(max_steps):
            live = [c for c in chunks if len(c.idx)]
            if not live:
                break
            par = (
                pool is not None
                and len(live) > 1
                and sum(len(c.idx) for c in live) >= _MIN_THREADED
            )
            if par:
                draws = list(pool.map(_Chunk.cross, live, [step] * len(live)))
            else:
                draws = [c.cross(step) for c in live]
            live = [c for c in live if len(c.idx)]
            if not live:
                break
            normals: list[np.ndarray | None] = [None] * len(live)
            if multiple_scattering:
                th = rng.normal(size=(sum(draws), 2))
                normals = np.split(th, np.cumsum([len(c.idx) for c in live])[:-1])
            if par:
                list(pool.map(_Chunk.scatter, live, normals))
            else:
                for c, n in zip(live, normals, strict=True):
                    c.scatter(n)
    finally:
        if pool is not None:
            pool.shutdown()

    # step-major, then particle order (the slices are consecutive runs of particles)
    recs = [c.records[k] for k in range(max_steps) for c in chunks if k in c.records]
    if not recs:
        z = np.zeros(0)
        return Crossings(
            z.astype(np.int64),
            z.astype(np.int64),
            z.astype(np.int32),
            np.zeros((0, 3)),
            np.zeros((0, 3)),
            z,
        )
    return Crossings(*(np.concatenate(col) for col in zip(*recs, strict=True)))
