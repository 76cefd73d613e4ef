"""The solenoid's magnetic field: a finite current sheet, not an infinite one.

A real solenoid is finite: its axial field ``B_z`` falls towards and beyond the coil's ends and, by
``div B = 0``, a radial component ``B_r ≈ -(r / 2) dB_z/dz`` appears where it falls. Both bend
tracks away from a helix: ``B_z`` changes the transverse curvature along the track, and ``B_r``
pushes a forward track sideways in φ (``v_z ẑ × B_r r̂`` is azimuthal), which an x–y circle fit
sees most at large |η|. The TrackML events were simulated (ACTS Fatras) in an ATLAS-like solenoid
field, not a constant one.

The field here is that of an ideal thin solenoid (a uniform current sheet) of radius ``a`` and half
length ``L`` (default: the ATLAS central solenoid, winding 5.3 m long, mean radius 1.25 m: the 2.46 m
/ 2.56 m inner / outer diameters inside a 5.8 m long cryostat), scaled to
``B_z = b0`` at the centre. It is the superposition of coaxial current loops, each with the exact
loop field in complete elliptic integrals, integrated over the coil length by Gauss–Legendre; it is
tabulated once on an ``(r, |z|)`` grid covering the detector and read with bilinear interpolation.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy.special import ellipe, ellipk

# The ATLAS central solenoid: coil 5.3 m long, inner/outer radius 1.23/1.28 m, 2 T at the centre.
SOLENOID_RADIUS_MM = 1250.0
SOLENOID_HALF_LENGTH_MM = 2650.0
_GRID_STEP_MM = 20.0
_GRID_R_MAX_MM = 1200.0
_GRID_Z_MAX_MM = 3500.0
_N_LOOPS = 128


def _loops_field(r: np.ndarray, z: np.ndarray, a: float, half_length: float) -> np.ndarray:
    """Unnormalised ``(B_r, B_z)`` ``[N, 2]`` of a current sheet ``r = a``, ``|z| <= half_length``."""
    x, w = np.polynomial.legendre.leggauss(_N_LOOPS)
    zl = x * half_length  # loop positions [K]
    r = np.maximum(r, 1e-6)[:, None]
    zeta = z[:, None] - zl[None, :]
    q = (a + r) ** 2 + zeta**2
    m = 4.0 * a * r / q
    k, e = ellipk(m), ellipe(m)
    d = (a - r) ** 2 + zeta**2
    sq = np.sqrt(q)
    bz = (k + (a * a - r * r - zeta**2) / d * e) / sq
    br = zeta / (r * sq) * (-k + (a * a + r * r + zeta**2) / d * e)
    return np.stack([(br * w).sum(1), (bz * w).sum(1)], axis=1)


@functools.lru_cache(maxsize=4)
def _table(a: float, half_length: float) -> tuple[np.ndarray, np.ndarray]:
    """``(B_r, B_z)`` per unit central field on the grid ``[nr, nz]`` each."""
    rs = np.arange(0.0, _GRID_R_MAX_MM + _GRID_STEP_MM / 2, _GRID_STEP_MM)
    zs = np.arange(0.0, _GRID_Z_MAX_MM + _GRID_STEP_MM / 2, _GRID_STEP_MM)
    rr, zz = np.meshgrid(rs, zs, indexing="ij")
    b = _loops_field(rr.ravel(), zz.ravel(), a, half_length)
    centre = _loops_field(np.zeros(1), np.zeros(1), a, half_length)[0, 1]
    b = b / centre
    return b[:, 0].reshape(rr.shape), b[:, 1].reshape(rr.shape)


@dataclasses.dataclass(frozen=True)
class SolenoidField:
    """A finite solenoid's field, ``b0`` tesla at the centre (see the module docstring).

    Attributes:
      b0: axial field at the centre (T); its sign is the field's direction along z.
      radius: coil radius (mm).
      half_length: coil half length (mm).
    """

    b0: float = 2.0
    radius: float = SOLENOID_RADIUS_MM
    half_length: float = SOLENOID_HALF_LENGTH_MM

    def __post_init__(self) -> None:
        if not (self.radius > 0 and self.half_length > 0 and self.b0 != 0):
            raise ValueError(
                f"solenoid needs radius > 0, half_length > 0 and b0 != 0, got {self.radius}, "
                f"{self.half_length}, {self.b0}"
            )

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        """``[N, 3]`` field (T) at points ``pos`` ``[N, 3]`` (mm); constant beyond the table."""
        br_t, bz_t = _table(float(self.radius), float(self.half_length))
        x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
        r = np.hypot(x, y)
        fr = np.clip(r / _GRID_STEP_MM, 0.0, br_t.shape[0] - 1.000001)
        fz = np.clip(np.abs(z) / _GRID_STEP_MM, 0.0, br_t.shape[1] - 1.000001)
        i, j = fr.astype(np.int64), fz.astype(np.int64)
        tr, tz = fr - i, fz - j

        def interp(t: np.ndarray) -> np.ndarray:
            return (
                t[i, j] * (1 - tr) * (1 - tz)
                + t[i + 1, j] * tr * (1 - tz)
                + t[i, j + 1] * (1 - tr) * tz
                + t[i + 1, j + 1] * tr * tz
            )

        bz = interp(bz_t) * self.b0
        br = interp(br_t) * self.b0 * np.sign(z)  # B_r is odd in z
        inv_r = np.where(r > 1e-9, 1.0 / np.maximum(r, 1e-9), 0.0)
        return np.stack([br * x * inv_r, br * y * inv_r, bz], axis=1)
