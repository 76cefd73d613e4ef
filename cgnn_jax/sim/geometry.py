"""The TrackML detector geometry, shipped as package data.

``detectors.csv.gz`` is the real TrackML detector (TrackML challenge, CC BY 3.0): 18,728 modules, each a
thin planar sensor with a centre ``c``, a local-to-global rotation ``R = [u v w]`` (columns), a half
thickness ``t``, half widths ``minhu``/``maxhu`` at ``v = -hv``/``+hv`` (trapezoids in the endcaps,
rectangles in the barrel) and cell pitches ``pitch_u, pitch_v``.

For propagation each (volume, layer) is also summarised by a nominal surface: a cylinder ``r = rho``
over ``[zmin, zmax]`` for the barrels (volumes 8, 13, 17), a disk ``z = Z`` over ``[rmin, rmax]`` for the
endcaps. Hits themselves are made on the exact module planes (:mod:`cgnn_jax.sim.response`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

BARREL_VOLUMES = (8, 13, 17)
PIXEL_VOLUMES = (7, 8, 9)
SHORT_STRIP_VOLUMES = (12, 13, 14)
LONG_STRIP_VOLUMES = (16, 17, 18)

# Radiation length per layer crossing at normal incidence, x/X0: sensor plus services and supports,
# averaged over the layer (the TrackML detector's material is about 1.5-2 % X0 per pixel layer and
# 2-4 % per strip layer).
MATERIAL_X0: dict[int, float] = {
    7: 0.018,
    8: 0.018,
    9: 0.018,
    12: 0.025,
    13: 0.025,
    14: 0.025,
    16: 0.035,
    17: 0.035,
    18: 0.035,
}

# Spacing of the fake 4th coordinate that keeps module look-ups inside one layer (mm).
_LAYER_SEPARATION = 1.0e5


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Arrays over modules ``[M]`` and layers ``[L]``.

    Attributes:
      volume_id, layer_id, module_id: ``[M]`` int32.
      layer_index: ``[M]`` index of the module's (volume, layer) in ``0..L-1``.
      center: ``[M, 3]`` module centres (mm).
      rot: ``[M, 3, 3]`` local-to-global rotations; columns are u, v, w.
      half_t, minhu, maxhu, hv, pitch_u, pitch_v: ``[M]`` (mm).
      layer_volume, layer_layer: ``[L]`` ids of each layer.
      layer_is_barrel: ``[L]`` bool.
      layer_pos: ``[L]`` cylinder radius (barrel) or disk z (endcap), mm.
      layer_lo, layer_hi: ``[L]`` z range (barrel) or r range (endcap), mm.
      layer_x0: ``[L]`` material x/X0 at normal incidence.
      tree: kd-tree over ``[x, y, z, layer_index * 1e5]`` of module centres.
    """

    volume_id: np.ndarray
    layer_id: np.ndarray
    module_id: np.ndarray
    layer_index: np.ndarray
    center: np.ndarray
    rot: np.ndarray
    half_t: np.ndarray
    minhu: np.ndarray
    maxhu: np.ndarray
    hv: np.ndarray
    pitch_u: np.ndarray
    pitch_v: np.ndarray
    layer_volume: np.ndarray
    layer_layer: np.ndarray
    layer_is_barrel: np.ndarray
    layer_pos: np.ndarray
    layer_lo: np.ndarray
    layer_hi: np.ndarray
    layer_x0: np.ndarray
    tree: cKDTree

    @property
    def n_modules(self) -> int:
        return len(self.module_id)

    @property
    def n_layers(self) -> int:
        return len(self.layer_volume)

    def module_area(self) -> np.ndarray:
        """``[M]`` sensitive area of each module (mm^2)."""
        return 2.0 * self.hv * (self.minhu + self.maxhu)

    def module_key(self) -> np.ndarray:
        """``[M]`` int64 key ``volume * 1e9 + layer * 1e6 + module`` (sorted like real hit files)."""
        return (
            self.volume_id.astype(np.int64) * 1_000_000_000
            + self.layer_id.astype(np.int64) * 1_000_000
            + self.module_id.astype(np.int64)
        )

    def module_rows(
        self, volume_id: np.ndarray, layer_id: np.ndarray, module_id: np.ndarray
    ) -> np.ndarray:
        """``[N]`` geometry rows of modules given by ids ``[N]``; raises on an unknown module."""
        key = (
            np.asarray(volume_id, np.int64) * 1_000_000_000
            + np.asarray(layer_id, np.int64) * 1_000_000
            + np.asarray(module_id, np.int64)
        )
        table = self.module_key()  # sorted: the geometry is sorted by (volume, layer, module)
        rows = np.clip(np.searchsorted(table, key), 0, len(table) - 1)
        bad = table[rows] != key
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} hits on modules not in the TrackML detector, e.g. volume_id="
                f"{int(np.asarray(volume_id)[i])}, layer_id={int(np.asarray(layer_id)[i])}, "
                f"module_id={int(np.asarray(module_id)[i])}"
            )
        return rows

    def lookup_points(self, points: np.ndarray, layer_index: np.ndarray) -> np.ndarray:
        """``[N, 4]`` query coordinates for :attr:`tree` of points ``[N, 3]`` on layers ``[N]``."""
        return np.concatenate([points, (layer_index * _LAYER_SEPARATION)[:, None]], axis=1)


DATA_DIR = Path(__file__).resolve().parent / "data"


def detectors_path() -> Path:
    """The shipped copy of the TrackML ``detectors.csv.gz``."""
    return DATA_DIR / "detectors.csv.gz"


def read_detectors(path: str | Path | None = None) -> pd.DataFrame:
    """Read a TrackML ``detectors.csv`` (default: the shipped one)."""
    path = detectors_path() if path is None else path
    df = pd.read_csv(path)
    required = [
        "volume_id",
        "layer_id",
        "module_id",
        "cx",
        "cy",
        "cz",
        "module_t",
        "module_minhu",
        "module_maxhu",
        "module_hv",
        "pitch_u",
        "pitch_v",
    ]
    required += [f"rot_{a}{b}" for a in "xyz" for b in "uvw"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: detector file lacks columns {missing}")
    return df


@functools.lru_cache(maxsize=2)
def load_geometry(path: str | None = None) -> Geometry:
    """Build (once, cached) the :class:`Geometry` of a detectors file (default: shipped)."""
    df = read_detectors(path)
    df = df.sort_values(["volume_id", "layer_id", "module_id"]).reset_index(drop=True)
    vol = df["volume_id"].to_numpy(np.int32)
    lay = df["layer_id"].to_numpy(np.int32)
    key = vol.astype(np.int64) * 1000 + lay
    layer_keys, layer_index = np.unique(key, return_inverse=True)
    center = df[["cx", "cy", "cz"]].to_numpy(np.float64)
    rot = np.stack(
        [df[[f"rot_{a}u", f"rot_{a}v", f"rot_{a}w"]].to_numpy(np.float64) for a in "xyz"], axis=1
    )  # [M, 3(xyz), 3(uvw)]
    minhu = df["module_minhu"].to_numpy(np.float64)
    maxhu = df["module_maxhu"].to_numpy(np.float64)
    hv = df["module_hv"].to_numpy(np.float64)

    # Module corners to get each layer's extent.
    corners = []
    for su, sv, hu in ((-1, -1, minhu), (1, -1, minhu), (-1, 1, maxhu), (1, 1, maxhu)):
        corners.append(
            center + rot[:, :, 0] * (su * hu)[:, None] + rot[:, :, 1] * (sv * hv)[:, None]
        )
    corners = np.stack(corners, axis=1)  # [M, 4, 3]
    n_layers = len(layer_keys)
    layer_volume = (layer_keys // 1000).astype(np.int32)
    layer_layer = (layer_keys % 1000).astype(np.int32)
    is_barrel = np.isin(layer_volume, BARREL_VOLUMES)
    pos = np.empty(n_layers)
    lo = np.empty(n_layers)
    hi = np.empty(n_layers)
    cr = np.hypot(corners[..., 0], corners[..., 1])
    for li in range(n_layers):  # 48 layers, once per process
        m = layer_index == li
        if is_barrel[li]:
            pos[li] = np.hypot(center[m, 0], center[m, 1]).mean()
            lo[li], hi[li] = corners[m, :, 2].min(), corners[m, :, 2].max()
        else:
            pos[li] = center[m, 2].mean()
            lo[li], hi[li] = cr[m].min(), cr[m].max()
    x0 = np.array([MATERIAL_X0[int(v)] for v in layer_volume])
    tree = cKDTree(np.concatenate([center, (layer_index * _LAYER_SEPARATION)[:, None]], axis=1))
    return Geometry(
        volume_id=vol,
        layer_id=lay,
        module_id=df["module_id"].to_numpy(np.int32),
        layer_index=layer_index.astype(np.int32),
        center=center,
        rot=rot,
        half_t=df["module_t"].to_numpy(np.float64),
        minhu=minhu,
        maxhu=maxhu,
        hv=hv,
        pitch_u=df["pitch_u"].to_numpy(np.float64),
        pitch_v=df["pitch_v"].to_numpy(np.float64),
        layer_volume=layer_volume,
        layer_layer=layer_layer,
        layer_is_barrel=is_barrel,
        layer_pos=pos,
        layer_lo=lo,
        layer_hi=hi,
        layer_x0=x0,
        tree=tree,
    )
