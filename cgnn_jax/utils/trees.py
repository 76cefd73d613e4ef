"""Comparing parameter pytrees: same structure and shapes (to load one into another's place), or
equal arrays (the same trained network)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def shape_mismatch(like: Any, tree: Any) -> str | None:
    """The first way ``tree`` differs from ``like`` in structure or leaf shapes, as text (e.g.
    ``"parameter ['params']['w']: (3, 4), expected (3, 5)"``), or None if it fits."""
    want = jax.tree_util.tree_flatten_with_path(like)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(tree)[0])
    for key, leaf in want:
        if key not in got or np.shape(got[key]) != np.shape(leaf):
            shape = tuple(np.shape(got[key])) if key in got else "missing"
            return (
                f"parameter {jax.tree_util.keystr(key)}: {shape}, expected {tuple(np.shape(leaf))}"
            )
    if len(got) != len(want):
        return f"{len(got) - len(want)} parameters more than expected"
    return None


def same_leaves(a: Any, b: Any) -> bool:
    """Whether two pytrees hold equal arrays, leaf by leaf in tree order."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True)
    )
