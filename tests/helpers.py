"""Shared test helpers."""

from __future__ import annotations

import ml_collections


def shrink_stage1(
    c: ml_collections.ConfigDict, filter_steps: int = 150
) -> ml_collections.ConfigDict:
    """A stage-1 config small enough to train in seconds on μ = 10 events (in place)."""
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
