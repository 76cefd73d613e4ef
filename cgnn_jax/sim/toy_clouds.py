"""Toy labelled point clouds with a variable number of clusters: a second, non-TrackML task.

Each cloud holds a random number of clusters (``n_clusters``, 2..30 by default) of random shapes:

* ``"blob"``: an anisotropic Gaussian (random orientation, per-axis scales in ``blob_scale``);
* ``"arc"``: a segment of a thin ring (random radius, opening angle and thickness; in 3-D the
  ring lies in a random plane).

Clusters are placed at random in a box that grows with their number and total extent, with
rejection sampling so that two clusters' extents (2.5 standard deviations for a blob, the ring's
outer radius for an arc) do not overlap, then the cloud gets uniform noise points over its
bounding box (label ``-1``) and its rows are shuffled. Blob scales vary 5x, so no single density
threshold (DBSCAN's ``eps``) fits every cluster of every cloud.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("blob", "arc")


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A uniformly random rotation ``[dim, dim]`` (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def _blob(
    rng: np.random.Generator, n: int, dim: int, scale: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """``n`` points ``[n, dim]`` of an anisotropic Gaussian centred at 0, and its extent."""
    s = rng.uniform(*scale, size=dim)
    pts = (rng.normal(size=(n, dim)) * s) @ _rotation(rng, dim).T
    return pts, 2.5 * float(s.max())


def _arc(
    rng: np.random.Generator,
    n: int,
    dim: int,
    radius: tuple[float, float],
    thickness: tuple[float, float],
) -> tuple[np.ndarray, float]:
    """``n`` points ``[n, dim]`` on a thick ring segment centred at 0, and its extent."""
    r = rng.uniform(*radius)
    t = rng.uniform(*thickness)
    span = rng.uniform(np.pi / 3, 1.5 * np.pi)
    ang = rng.uniform(0.0, span, n) + rng.uniform(0.0, 2 * np.pi)
    rad = r + rng.normal(0.0, t, n)
    pts = np.zeros((n, dim))
    pts[:, 0], pts[:, 1] = rad * np.cos(ang), rad * np.sin(ang)
    if dim > 2:
        pts[:, 2:] = rng.normal(0.0, t, (n, dim - 2))
    return pts @ _rotation(rng, dim).T, r + 2.5 * t


def make_cloud(
    seed: int | np.random.Generator | None = None,
    *,
    dim: int = 2,
    n_clusters: tuple[int, int] = (2, 30),
    cluster_size: tuple[int, int] = (10, 40),
    noise: float = 0.05,
    shapes: tuple[str, ...] = SHAPES,
    blob_scale: tuple[float, float] = (0.1, 0.5),
    arc_radius: tuple[float, float] = (0.8, 2.0),
    arc_thickness: tuple[float, float] = (0.03, 0.12),
    gap: float = 0.2,
    spread: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """One labelled cloud (see the module docstring).

    Args:
      seed: an int seed, a ``numpy.random.Generator`` (advanced in place) or None.
      dim: 2 or 3 (any ``>= 2`` works).
      n_clusters: inclusive range of the number of clusters ``K``.
      cluster_size: inclusive range of the points per cluster.
      noise: noise points as a fraction of the clustered points (rounded).
      shapes: the shapes drawn from, uniformly.
      blob_scale, arc_radius, arc_thickness: uniform ranges of the shapes' parameters.
      gap: minimum distance between two clusters' extents.
      spread: volume of the placement box over the clusters' total (cube) volume; smaller packs
        the clusters closer together.
    Returns:
      ``(points [n, dim] float64, labels [n] int64)``: cluster index ``0..K-1`` or ``-1`` for
      noise; rows in random order.
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    if not shapes or any(s not in SHAPES for s in shapes):
        raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {shapes}")
    if not 1 <= n_clusters[0] <= n_clusters[1]:
        raise ValueError(f"n_clusters must be a range 1 <= lo <= hi, got {n_clusters}")
    if not 1 <= cluster_size[0] <= cluster_size[1]:
        raise ValueError(f"cluster_size must be a range 1 <= lo <= hi, got {cluster_size}")
    rng = _rng(seed)
    k = int(rng.integers(n_clusters[0], n_clusters[1] + 1))
    parts, extents = [], []
    for _ in range(k):
        n = int(rng.integers(cluster_size[0], cluster_size[1] + 1))
        if shapes[int(rng.integers(len(shapes)))] == "blob":
            pts, ext = _blob(rng, n, dim, blob_scale)
        else:
            pts, ext = _arc(rng, n, dim, arc_radius, arc_thickness)
        parts.append(pts)
        extents.append(ext)
    ext = np.asarray(extents)
    # box volume = spread x the clusters' total cube volume (room left for the rejection)
    side = (spread * np.sum((2 * ext + gap) ** dim)) ** (1.0 / dim)
    centres = np.zeros((k, dim))
    for i in range(k):
        for attempt in range(10_000):
            c = rng.uniform(0.0, side * (1.0 + attempt / 2000), dim)
            if i == 0 or np.all(np.linalg.norm(centres[:i] - c, axis=1) >= ext[:i] + ext[i] + gap):
                break
        centres[i] = c
    points = np.concatenate([p + c for p, c in zip(parts, centres, strict=True)])
    labels = np.repeat(np.arange(k), [len(p) for p in parts])
    n_noise = round(noise * len(points))
    if n_noise:
        lo, hi = points.min(0), points.max(0)
        points = np.concatenate([points, rng.uniform(lo, hi, (n_noise, dim))])
        labels = np.concatenate([labels, np.full(n_noise, -1)])
    order = rng.permutation(len(points))
    return points[order], labels[order].astype(np.int64)


def make_clouds(
    n_clouds: int, seed: int | np.random.Generator | None = 0, **kwargs
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n_clouds`` clouds of :func:`make_cloud` (same keyword arguments) from one seed.

    Returns:
      ``(clouds, labels)``: lists of ``[n_i, dim]`` points and ``[n_i]`` labels (``-1``: noise).
    """
    rng = _rng(seed)
    out = [make_cloud(rng, **kwargs) for _ in range(int(n_clouds))]
    return [x for x, _ in out], [y for _, y in out]
