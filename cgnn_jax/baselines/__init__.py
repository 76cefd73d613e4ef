"""Non-learned TrackML baselines: the public DBSCAN kernels.

* ``dbscan``: DBSCAN on the standardised hit direction (:mod:`.dbscan`).
* ``helix_dbscan``: DBSCAN on helix-unrolled features over a curvature scan (:mod:`.helix`).

Clusterers of points already embedded in a learned space ``h [n, d]`` (DBSCAN, HDBSCAN, cut
edge/kNN graph components, threshold tuning) are in :mod:`.space`.

Every method maps a hits frame (``[n]`` rows with ``x, y, z`` in mm) to ``[n]`` int64 track
ids, consecutive from 1, in row order. See :mod:`cgnn_jax.inference.dataset` for whole datasets
and :mod:`.tune` for choosing ``eps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cgnn_jax.baselines.dbscan import dbscan_features, dbscan_tracks
from cgnn_jax.baselines.helix import helix_dbscan_tracks, kappa_from_pt, kappa_grid
from cgnn_jax.baselines.space import (
    canonical_labels,
    dbscan_space,
    edge_components,
    hdbscan_space,
    knn_components,
    tune_cut,
)

MethodFn = Callable[..., np.ndarray]
"""``fn(hits: pd.DataFrame, **kwargs) -> np.ndarray[int64]`` of shape ``[n_hits]``."""

METHODS: dict[str, MethodFn] = {
    "dbscan": dbscan_tracks,
    "helix_dbscan": helix_dbscan_tracks,
}
"""Track-finding methods by name. Other methods (e.g. the learned ``cgnn`` model) are added
with :func:`register_method`; the functions must be importable module-level callables so
that they can be sent to worker processes."""


def register_method(name: str, fn: MethodFn, overwrite: bool = False) -> None:
    """Add a method ``fn(hits, **kwargs) -> track ids`` to :data:`METHODS` under ``name``."""
    if name in METHODS and not overwrite and METHODS[name] is not fn:
        raise ValueError(f"method {name!r} is already registered")
    METHODS[name] = fn


def get_method(method: str | MethodFn) -> MethodFn:
    """The function behind a method name (a callable is returned as is).

    Raises:
      ValueError: an unknown name; the message lists the valid ones.
    """
    if callable(method):
        return method
    try:
        return METHODS[method]
    except KeyError:
        valid = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown method {method!r}; valid methods: {valid}") from None


def reconstruct_baseline(hits: pd.DataFrame, method: str | MethodFn, **kwargs: Any) -> np.ndarray:
    """Track ids for one event's hits with the named method.

    Args:
      hits: ``[n]`` rows with columns ``x, y, z`` (mm).
      method: a key of :data:`METHODS` or a callable with the same signature.
      **kwargs: passed to the method (e.g. ``eps``).

    Returns:
      ``[n]`` int64 track ids, one per row of ``hits``, consecutive from 1.
    """
    ids = np.asarray(get_method(method)(hits, **kwargs), dtype=np.int64)
    if ids.shape != (len(hits),):
        raise ValueError(f"method returned shape {ids.shape}, expected ({len(hits)},)")
    return ids


__all__ = [
    "METHODS",
    "MethodFn",
    "canonical_labels",
    "dbscan_features",
    "dbscan_space",
    "dbscan_tracks",
    "edge_components",
    "get_method",
    "hdbscan_space",
    "helix_dbscan_tracks",
    "kappa_from_pt",
    "kappa_grid",
    "knn_components",
    "reconstruct_baseline",
    "register_method",
    "tune_cut",
]
