"""Shared test helpers."""

from __future__ import annotations

import ml_collections
import numpy as np


def shrink_stage1(
    c: ml_collections.ConfigDict, filter_steps: int = 150
) -> ml_collections.ConfigDict:
    """A stage-1 config small enough to train in seconds on μ = 10 events (in place), on the kNN
    graph (:func:`configs.default.knn_graph`; a module map needs hundreds of events) and the
    simulator's own luminous region."""
    from configs.default import knn_graph

    knn_graph(c, gnn=False)
    c.data.vertex_sigma_z = None
    c.data.train_events = 2
    c.data.mu = 10.0
    c.embedding.hidden = (32, 32)
    c.embedding.batch_pairs = 512
    c.embedding.steps = 150
    c.embedding.hard_steps = 50
    c.embedding.hard_pool = 10_000
    c.graph.k = 8
    c.filter.hidden = (16, 16)
    c.filter.batch_edges = 512
    c.filter.steps = filter_steps
    return c


# --------------------------------------------------------------------------- float32 tolerances

F32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def reorder_tol(n_terms: int, depth: int = 1) -> float:
    """Relative tolerance for a float32 result computed a second time with its sums reordered.

    Padding, chunking, another SIMD width (another x86 CPU: XLA vectorises reductions by the
    machine's widest instructions), more threads or another device count change the order in
    which XLA adds the terms of a reduction. A float32 sum of ``n_terms`` terms in another order
    differs by up to about ``n_terms · eps · Σ|x|`` (the classic worst-case bound, relative to the
    magnitude of the terms, not of the result); each of ``depth`` stacked layers or unrolled
    levels adds such an error and passes the earlier ones on, amplified by its gain, which a
    factor 4 per layer covers for our normalised MLPs. Measured: the estimator's split
    probabilities moved by 2.8e-5 with another instruction set (``--xla_cpu_max_isa=SSE4_2``)
    where this bound allows ~2e-3; a masking bug moves them by 1e-2 or more.
    """
    return 4.0 * max(int(depth), 1) * max(int(n_terms), 1) * F32_EPS


def assert_reordered_close(got, want, n_terms: int, depth: int = 1) -> None:
    """``got == want`` up to :func:`reorder_tol`, relative to the largest magnitude in ``want``
    (reordering errors scale with the terms, so a near-zero element gets the same absolute slack)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    tol = reorder_tol(n_terms, depth)
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-12)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)
