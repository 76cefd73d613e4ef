"""A module map pooled over the detector's rotations in φ.

A module map learned from N events has seen each module pair only as often as tracks crossed it
there: half its pairs rest on one training doublet, and an unseen event's consecutive pairs miss
the map as ~N^-0.5. But the detector and the field barely change under a rotation about the
beam: every layer is made of *rings* (a barrel layer's modules at one z, an endcap disk's at one
radius) of ``n_φ`` modules evenly spaced in φ. This pools every module pair ``(a, b)`` of a map
into its **class**: the rings of ``a`` and ``b``, the parities of their indices in φ (the
staggered modules of a ring alternate in radius or z), and where ``b`` sits relative to ``a`` in
units of ``b``'s φ pitch, rounded to ``1 / phase_bins`` of a pitch. A class's window is the union of
its pairs' windows; the pooled map holds, for every module ``a'`` of the class's first ring and
parity, the module ``b'`` at the same relative place, with the class's window.

The pooled map covers ``n_φ / 2`` times more positions per training doublet; its windows are
wider (they hold every φ position's outliers), so it has more candidates (measured in
``docs/results.md``). With ``fill_only``, a pair the map has seen keeps its own window and only
unseen pairs take their class's.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from cgnn_jax.graph.module_map import ModuleMap, _reduce

RING_GAP = 5.0  # mm: modules of one layer whose z (barrel) or r (endcap) differ more: other rings


@dataclasses.dataclass(frozen=True)
class Rings:
    """The detector's modules by ring, sorted by module key (:func:`module_keys` form).

    Attributes:
      keys: ``[M]`` int64 sorted module keys.
      ring: ``[M]`` ring id (global over layers).
      index: ``[M]`` the module's place in its ring, by φ (``0 .. n_phi - 1``).
      n_phi: ``[M]`` modules in the ring.
      phi: ``[M]`` φ of the module's centre (rad).
      ring_first: ``[R + 1]`` with the modules of ring ``k`` at rows
        ``ring_rows[ring_first[k] : ring_first[k + 1]]``, by index.
      ring_rows: ``[M]`` rows (into ``keys``) ordered by ring, then index.
    """

    keys: np.ndarray
    ring: np.ndarray
    index: np.ndarray
    n_phi: np.ndarray
    phi: np.ndarray
    ring_first: np.ndarray
    ring_rows: np.ndarray

    def rows(self, module_keys: np.ndarray) -> np.ndarray:
        """Rows of ``module_keys [K]``.

        Raises:
          ValueError: a key is not a module of the detector.
        """
        k = np.asarray(module_keys, np.int64)
        i = np.clip(np.searchsorted(self.keys, k), 0, len(self.keys) - 1)
        bad = self.keys[i] != k
        if bad.any():
            v = int(k[bad][0])
            raise ValueError(
                f"module key {v} (volume {v >> 24}, layer {(v >> 16) & 255}, module "
                f"{v & 0xFFFF}) is not a module of the detector geometry"
            )
        return i


@functools.lru_cache(maxsize=1)
def detector_rings() -> Rings:
    """The rings of the shipped TrackML detector (:func:`cgnn_jax.sim.geometry.load_geometry`)."""
    from cgnn_jax.sim.geometry import load_geometry

    g = load_geometry()
    keys = (
        (np.asarray(g.volume_id, np.int64) << 24)
        | (np.asarray(g.layer_id, np.int64) << 16)
        | np.asarray(g.module_id, np.int64)
    )
    c = np.asarray(g.center, np.float64)
    phi = np.arctan2(c[:, 1], c[:, 0])
    barrel = np.asarray(g.layer_is_barrel)[np.asarray(g.layer_index)]
    along = np.where(barrel, c[:, 2], np.hypot(c[:, 0], c[:, 1]))  # what a ring shares
    order = np.lexsort((along, g.layer_index))
    new = np.concatenate(
        [[True], (np.diff(g.layer_index[order]) != 0) | (np.diff(along[order]) > RING_GAP)]
    )
    ring = np.empty(len(keys), np.int64)
    ring[order] = np.cumsum(new) - 1
    rows = np.lexsort((phi, ring))  # by ring, then φ
    first = np.searchsorted(ring[rows], np.arange(ring.max() + 2))
    n_phi = np.diff(first)[ring]
    index = np.empty(len(keys), np.int64)
    index[rows] = np.arange(len(keys)) - first[ring[rows]]
    by_key = np.argsort(keys)
    inv = np.empty_like(by_key)
    inv[by_key] = np.arange(len(keys))
    return Rings(
        keys[by_key], ring[by_key], index[by_key], n_phi[by_key], phi[by_key], first,
        inv[rows],
    )  # fmt: skip


def _parity(index: np.ndarray, n_phi: np.ndarray) -> np.ndarray:
    """Index parity where the ring has an even number of modules (else one class)."""
    return np.where(n_phi % 2 == 0, index % 2, 0)


def pooled_module_map(
    module_map: ModuleMap, phase_bins: int = 4, fill_only: bool = False, rings: Rings | None = None
) -> ModuleMap:
    """The module map pooled over φ (see the module docstring).

    Args:
      module_map: the learned map.
      phase_bins: bins per φ pitch of the second module's ring for where it sits relative to
        the first module.
      fill_only: keep the map's own windows for the pairs it has seen.
      rings: the detector's rings (default: :func:`detector_rings`).

    Returns:
      A map holding every pair of ``module_map`` and their rotations, with the windows of their
      classes (counts: the class's training doublets).

    Raises:
      ValueError: ``phase_bins < 1`` or a module of the map is not in the detector.
    """
    if phase_bins < 1:
        raise ValueError(f"phase_bins must be >= 1, got {phase_bins}")
    if module_map.n_pairs == 0:
        return module_map
    rg = detector_rings() if rings is None else rings
    a, b = rg.rows(module_map.module_a), rg.rows(module_map.module_b)
    nb = rg.n_phi[b]
    u = (rg.phi[b] - rg.phi[a]) / (2 * np.pi / nb)  # b from a, in b's pitches
    u = (u + nb / 2) % nb - nb / 2
    ubin = np.floor(u * phase_bins + 0.5).astype(np.int64)  # centred: aligned grids sit mid-bin
    n_bins = int(2 * phase_bins * (rg.n_phi.max() // 2 + 1))
    cls = (
        (rg.ring[a] * (rg.ring.max() + 1) + rg.ring[b]) * 4
        + _parity(rg.index[a], rg.n_phi[a]) * 2 + _parity(rg.index[b], nb)
    ) * n_bins + (ubin + n_bins // 2)  # fmt: skip
    pooled = _reduce(cls, module_map.lo, module_map.hi, module_map.count)
    ck = pooled.keys
    ub = ck % n_bins - n_bins // 2
    rest = ck // n_bins
    par_b, par_a = rest % 2, (rest // 2) % 2
    ring_a, ring_b = divmod(rest // 4, rg.ring.max() + 1)
    # every module a' of ring_a with the class's parity, and the b' at the class's place
    j = np.repeat(np.arange(len(ck)), rg.n_phi[rg.ring_rows[rg.ring_first[ring_a]]])
    ap = rg.ring_rows[rg.ring_first[ring_a[j]] + _arange_within(j)]
    keep = _parity(rg.index[ap], rg.n_phi[ap]) == par_a[j]
    j, ap = j[keep], ap[keep]
    first_b = rg.ring_first[ring_b[j]]
    n_b = rg.n_phi[rg.ring_rows[first_b]]
    phi0 = rg.phi[rg.ring_rows[first_b]]
    w = (phi0 - rg.phi[ap]) / (2 * np.pi / n_b)  # index 0 of ring b, from a', in pitches
    step = np.ceil((ub[j] - 0.5) / phase_bins - w).astype(np.int64)
    keep = (w + step) < (ub[j] + 0.5) / phase_bins
    bp = rg.ring_rows[first_b + step % n_b]
    keep &= _parity(rg.index[bp], rg.n_phi[bp]) == par_b[j]
    j, ap, bp = j[keep], ap[keep], bp[keep]
    expanded = _reduce(
        (rg.keys[ap] << 32) | rg.keys[bp], pooled.lo[j], pooled.hi[j], pooled.count[j]
    )
    if fill_only:  # seen pairs keep their own windows
        return module_map.merge(expanded.select(~np.isin(expanded.keys, module_map.keys)))
    # a pair whose rotation lands elsewhere (an uneven ring) is kept as it was
    return expanded.merge(module_map.select(~np.isin(module_map.keys, expanded.keys)))


def _arange_within(j: np.ndarray) -> np.ndarray:
    """``0, 1, .., k-1`` for every run of equal values in the sorted ``j``."""
    first = np.searchsorted(j, j, side="left")
    return np.arange(len(j)) - first
