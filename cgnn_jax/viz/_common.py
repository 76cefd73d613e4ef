"""Shared pieces of the plots: atomic PNG output, track colours, η–φ regions, hit alignment."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cgnn_jax.io.atomic import atomic_write

DPI = 120
GREY = (0.62, 0.62, 0.62, 1.0)

# Qualitative colours that read well on white (no yellow / pale pastels), cycled per track.
TRACK_COLORS: np.ndarray = np.concatenate(
    [
        np.asarray(matplotlib.colormaps["tab10"].colors)[[0, 1, 2, 3, 4, 5, 6, 8, 9]],
        np.asarray(matplotlib.colormaps["Dark2"].colors)[[0, 1, 2, 3, 4, 6]],
        np.asarray(matplotlib.colormaps["Set1"].colors)[[0, 1, 2, 3, 4, 6, 7]],
    ]
)


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure drawn with the Agg canvas (no pyplot state; thread-safe)."""
    return Figure(figsize=(width, height), layout="constrained", dpi=DPI)


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically (an existing file survives any failure).

    The parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def label_colors(labels: np.ndarray) -> np.ndarray:
    """``[n, 4]`` RGBA colour of each integer label, from :data:`TRACK_COLORS`.

    The colour is a hash of the label, so a label keeps its colour across panels, plots and
    runs, and neighbouring ids (which are often neighbouring tracks) rarely share a colour.
    """
    lab = np.asarray(labels).astype(np.int64).view(np.uint64)
    h = lab * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing (wraps modulo 2**64)
    idx = ((h >> np.uint64(40)) % np.uint64(len(TRACK_COLORS))).astype(np.int64)
    rgb = TRACK_COLORS[idx]
    return np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)


def hit_coordinates(hits: pd.DataFrame) -> dict[str, np.ndarray]:
    """``x, y, z, r`` (transverse radius), ``eta`` and ``phi`` of each hit, float64 ``[n]``."""
    missing = [c for c in ("x", "y", "z") if c not in hits.columns]
    if missing:
        raise ValueError(f"hits lack column(s) {missing}; they have {list(hits.columns)}")
    x = hits["x"].to_numpy(np.float64)
    y = hits["y"].to_numpy(np.float64)
    z = hits["z"].to_numpy(np.float64)
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    return {"x": x, "y": y, "z": z, "r": r, "eta": eta, "phi": np.arctan2(y, x)}


def check_range(rng: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    """Validate an optional ``(lo, hi)`` pair; ``lo > hi`` is allowed for φ (wraps at ±π)."""
    if rng is None:
        return None
    vals = tuple(float(v) for v in rng)
    if len(vals) != 2 or not all(np.isfinite(vals)):
        raise ValueError(f"{name} range must be two finite numbers lo,hi, got {rng!r}")
    if name != "phi" and vals[0] >= vals[1]:
        raise ValueError(f"{name} range must have lo < hi, got {vals}")
    if name == "phi" and vals[0] == vals[1]:
        raise ValueError(f"phi range is empty: {vals}")
    return vals  # type: ignore[return-value]


def parse_range(text: str | None, name: str) -> tuple[float, float] | None:
    """``"lo,hi"`` -> ``(lo, hi)`` (``None`` stays ``None``), for command-line flags."""
    if text is None or text == "":
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError as e:
        raise ValueError(f"--{name} must be 'lo,hi' (two numbers), got {text!r}") from e
    return check_range(vals, name)


def region_mask(
    coords: dict[str, np.ndarray],
    eta_range: Sequence[float] | None = None,
    phi_range: Sequence[float] | None = None,
) -> np.ndarray:
    """``[n]`` bool: hits with ``eta_lo <= η < eta_hi`` and φ in ``[phi_lo, phi_hi)``.

    φ is in radians in ``(-π, π]``; a range with ``phi_lo > phi_hi`` wraps around ±π (e.g.
    ``(3.0, -3.0)``). ``None`` means no cut.
    """
    keep = np.ones(len(coords["x"]), bool)
    eta_range = check_range(eta_range, "eta")
    phi_range = check_range(phi_range, "phi")
    if eta_range is not None:
        keep &= (coords["eta"] >= eta_range[0]) & (coords["eta"] < eta_range[1])
    if phi_range is not None:
        lo, hi = phi_range
        phi = coords["phi"]
        keep &= ((phi >= lo) & (phi < hi)) if lo < hi else ((phi >= lo) | (phi < hi))
    return keep


def region_text(
    eta_range: Sequence[float] | None = None, phi_range: Sequence[float] | None = None
) -> str:
    """``"-0.50 ≤ η < 0.50, 0.00 ≤ φ < 0.40 rad"`` (empty without cuts)."""
    parts = []
    if eta_range is not None:
        parts.append(f"{eta_range[0]:.2f} ≤ η < {eta_range[1]:.2f}")
    if phi_range is not None:
        lo, hi = phi_range
        wrap = " (wraps at ±π)" if lo > hi else ""
        parts.append(f"{lo:.2f} ≤ φ < {hi:.2f} rad{wrap}")
    return ", ".join(parts)


def align_rows(hit_id: np.ndarray, other_hit_id: np.ndarray, what: str) -> np.ndarray:
    """Row of ``other_hit_id`` holding each ``hit_id``; ``ValueError`` naming missing hits."""
    hit_id = np.asarray(hit_id, np.int64)
    other = np.asarray(other_hit_id, np.int64)
    if len(hit_id) == len(other) and np.array_equal(hit_id, other):
        return np.arange(len(hit_id))
    order = np.argsort(other, kind="stable")
    pos = np.searchsorted(other[order], hit_id)
    pos = np.minimum(pos, max(len(other) - 1, 0))
    found = (other[order][pos] == hit_id) if len(other) else np.zeros(len(hit_id), bool)
    if not found.all():
        miss = hit_id[~found]
        shown = ", ".join(str(v) for v in miss[:5]) + (", ..." if len(miss) > 5 else "")
        raise ValueError(f"{what} lacks {len(miss)} of the {len(hit_id)} hits (hit_id {shown})")
    return order[pos]
