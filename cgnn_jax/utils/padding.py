"""Static shapes for jit: pad arrays up to a few size buckets and mask the padding."""

from __future__ import annotations

import numpy as np


def bucket_size(n: int, per_octave: int = 4, minimum: int = 1024) -> int:
    """The smallest bucket ``>= n``: ``per_octave`` sizes per power of two (waste < 1/per_octave).

    ``bucket_size(110_000) == 114_688``; any ``n`` from 1k to 1M hits compiles at most
    ``10 * per_octave`` shapes.
    """
    n = max(int(n), minimum)
    octave = 1 << (n - 1).bit_length() - 1  # largest power of two < n (or == n/2 for powers)
    step = max(octave // per_octave, 1)
    return int(-(-n // step) * step)


def pad_rows(a: np.ndarray, size: int, value: float = 0) -> np.ndarray:
    """``a [n, ...] -> [size, ...]``, filling new rows with ``value``."""
    if len(a) > size:
        raise ValueError(f"cannot pad {len(a)} rows down to {size}")
    out = np.full((size, *a.shape[1:]), value, dtype=a.dtype)
    out[: len(a)] = a
    return out


def padded_points(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``h [n, D]`` padded to their bucket: ``(float32 [N, D], mask [N])``, ``N =
    bucket_size(n)``, the mask true on the ``n`` real rows."""
    n = len(h)
    size = bucket_size(n)
    return pad_rows(np.asarray(h, np.float32), size), np.arange(size) < n
