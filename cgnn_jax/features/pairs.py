"""Features of directed hit pairs (graph edges), vectorised over all pairs.

For an edge from the sender ``i`` to the receiver ``j`` (positions in mm, ``r`` cylindrical):

=================  ==========================================================================
name               definition
=================  ==========================================================================
``dr``             ``(r_j - r_i) / 100``
``dphi``           ``φ_j - φ_i`` wrapped to ``(-π, π]`` (radians, unscaled)
``dz``             ``(z_j - z_i) / 100``
``deta``           ``η_j - η_i`` (unscaled)
``curvature``      signed curvature of the circle through the origin and both hits in the
                   transverse plane, ``1000 / R`` (1/m): ``-2 (p_i × p_j)_z / (|p_i| |p_j|
                   |p_j - p_i|)``. Its sign is the charge of a particle going from ``i`` to ``j``
                   in the +z field (positive charges turn clockwise), so for an outgoing edge it
                   is ``≈ 1000 q / R = 0.6 q / p_T[GeV]``; 0 for a straight line through the origin
``z0``             ``z`` at ``r = 0`` of the straight line through both hits in the r-z plane,
                   ``(z_i r_j - z_j r_i) / (r_j - r_i) / 100``, clipped to ``±Z0_CLIP / 100``
                   (also where ``r_i = r_j``)
``cell_cos``       ``|cos|`` of the angle between the cell-cluster directions of ``i`` and ``j``
``cell_chord_i``   ``|cos|`` between ``cell_dir_i`` and the chord ``(pos_j - pos_i)``
``cell_chord_j``   ``|cos|`` between ``cell_dir_j`` and the chord
=================  ==========================================================================

Degenerate pairs (identical positions, a hit on the axis, equal radii) give finite values; the
cell features are 0 where a hit has no cells or the chord has zero length.
"""

from __future__ import annotations

import numpy as np

from cgnn_jax.features.hits import HitFeatures
from cgnn_jax.utils.cpus import ordered_map

PAIR_FEATURE_NAMES: tuple[str, ...] = (
    "dr",
    "dphi",
    "dz",
    "deta",
    "curvature",
    "z0",
    "cell_cos",
    "cell_chord_i",
    "cell_chord_j",
)

DR_SCALE = 100.0
DZ_SCALE = 100.0
CURVATURE_SCALE = 1000.0
Z0_SCALE = 100.0
Z0_CLIP = 3000.0  # mm

_TINY = 1e-12
_CHUNK = 1 << 16  # pairs per block


def n_pair_features() -> int:
    """Number of pair features ``P``."""
    return len(PAIR_FEATURE_NAMES)


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles ``[...]`` (radians) wrapped to ``(-π, π]``."""
    w = np.remainder(a + np.pi, 2.0 * np.pi) - np.pi  # [-π, π)
    return np.where(w <= -np.pi, w + 2.0 * np.pi, w)


def signed_curvature(p_i: np.ndarray, p_j: np.ndarray) -> np.ndarray:
    """``[E]`` signed curvature (1/mm) of the circle through the origin, ``p_i`` and ``p_j``.

    Args:
      p_i, p_j: ``[E, 2+]`` points (only ``x, y`` are used, mm).
    Returns:
      ``-2 (p_i × p_j)_z / (|p_i| |p_j| |p_j - p_i|)``: positive when the path origin -> i -> j
      turns clockwise (a positive charge in a +z field); 0 for collinear or coincident points.
    """
    xi, yi, xj, yj = p_i[:, 0], p_i[:, 1], p_j[:, 0], p_j[:, 1]
    cross = xi * yj - yi * xj
    denom = np.hypot(xi, yi) * np.hypot(xj, yj) * np.hypot(xj - xi, yj - yi)
    ok = denom > _TINY
    return np.where(ok, -2.0 * cross / np.where(ok, denom, 1.0), 0.0)


def _pair_block(cols: dict[str, np.ndarray], s: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out [e, P]`` with the features of the pairs ``s -> t`` ``[e]`` (one chunk)."""
    xi, yi, zi = cols["x"][s], cols["y"][s], cols["z"][s]
    xj, yj, zj = cols["x"][t], cols["y"][t], cols["z"][t]
    ri, rj = cols["r"][s], cols["r"][t]
    dx, dy, dz = xj - xi, yj - yi, zj - zi
    dr = rj - ri
    # φ_j - φ_i as the angle from p_i to p_j: atan2 gives (-π, π] directly (+0.0 drops a -0 sign).
    cross = xi * yj - yi * xj
    cross += 0.0
    out[:, 1] = np.arctan2(cross, xi * xj + yi * yj)
    out[:, 0] = dr / DR_SCALE
    out[:, 2] = dz / DZ_SCALE
    out[:, 3] = cols["eta"][t] - cols["eta"][s]
    chord_xy = np.sqrt(dx * dx + dy * dy)
    denom = ri * rj * chord_xy
    ok = denom > _TINY
    out[:, 4] = np.where(ok, (-2.0 * CURVATURE_SCALE) * cross / np.where(ok, denom, 1.0), 0.0)
    num = zi * rj - zj * ri
    big = np.abs(dr) > _TINY
    z0 = np.where(
        big, num / np.where(big, dr, 1.0), np.where(np.abs(num) > _TINY, np.sign(num) * Z0_CLIP, zi)
    )
    np.clip(z0, -Z0_CLIP, Z0_CLIP, out=z0)
    out[:, 5] = z0 / Z0_SCALE

    # Cell directions are unit (or zero) vectors: |cos| is |dot| (0 for a zero vector).
    ui = np.stack([cols["ux"][s], cols["uy"][s], cols["uz"][s]])
    uj = np.stack([cols["ux"][t], cols["uy"][t], cols["uz"][t]])
    out[:, 6] = np.minimum(np.abs((ui * uj).sum(axis=0)), 1.0)
    chord = np.stack([dx, dy, dz]).astype(np.float32)
    norm = np.sqrt((chord * chord).sum(axis=0))
    inv = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0).astype(np.float32)
    out[:, 7] = np.minimum(np.abs((ui * chord).sum(axis=0)) * inv, 1.0)
    out[:, 8] = np.minimum(np.abs((uj * chord).sum(axis=0)) * inv, 1.0)


def pair_features(
    hf: HitFeatures, senders: np.ndarray, receivers: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """Features of the directed pairs ``senders[e] -> receivers[e]``.

    Pairs are processed in cache-sized chunks, on ``threads`` threads (default: the CPU count;
    numpy releases the GIL); the result does not depend on the chunking or the thread count.

    Args:
      hf: the event's :class:`HitFeatures`.
      senders, receivers: ``[E]`` integer row indices into the hits (0..n-1).
      threads: worker threads (``1``: run in the calling thread).
    Returns:
      ``[E, P]`` float32, columns :data:`PAIR_FEATURE_NAMES` (see the module docstring).
    Raises:
      ValueError: mismatched shapes, non-integer or out-of-range indices.
    """
    s = np.asarray(senders)
    t = np.asarray(receivers)
    if s.ndim != 1 or s.shape != t.shape:
        raise ValueError(
            f"senders and receivers must be 1-D of equal length, got {s.shape}, {t.shape}"
        )
    if not (np.issubdtype(s.dtype, np.integer) and np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"senders/receivers must be integer, got {s.dtype}, {t.dtype}")
    n = hf.n_hits
    n_pairs = len(s)
    if n_pairs and (min(s.min(), t.min()) < 0 or max(s.max(), t.max()) >= n):
        raise ValueError(f"pair indices out of range [0, {n})")

    pos = hf.pos
    r = np.hypot(pos[:, 0], pos[:, 1])
    cd = hf.cell_dir.astype(np.float32)
    cols = {
        "x": np.ascontiguousarray(pos[:, 0]),
        "y": np.ascontiguousarray(pos[:, 1]),
        "z": np.ascontiguousarray(pos[:, 2]),
        "r": r,
        "eta": np.arcsinh(pos[:, 2] / np.maximum(r, _TINY)).astype(np.float32),
        "ux": np.ascontiguousarray(cd[:, 0]),
        "uy": np.ascontiguousarray(cd[:, 1]),
        "uz": np.ascontiguousarray(cd[:, 2]),
    }
    out = np.empty((n_pairs, len(PAIR_FEATURE_NAMES)), dtype=np.float32)
    blocks = [(a, min(a + _CHUNK, n_pairs)) for a in range(0, n_pairs, _CHUNK)]

    def work(block: tuple[int, int]) -> None:
        a, b = block
        _pair_block(cols, s[a:b], t[a:b], out[a:b])

    for _ in ordered_map(work, blocks, threads):  # on threads: the blocks write apart
        pass
    return out
