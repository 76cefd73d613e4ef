"""Plots for physicists: efficiency and fake rate, event displays, the multiscale cluster tree.

All functions draw with matplotlib's Agg canvas (no pyplot state), return the
:class:`~matplotlib.figure.Figure`, and with ``path`` write it as PNG atomically: a failure
leaves an existing file as it was.
"""

from cgnn_jax.viz._common import parse_range, region_mask
from cgnn_jax.viz.efficiency import (
    PLOT_BINS_ETA,
    PLOT_BINS_PT,
    efficiency_by_method,
    plot_efficiency,
)
from cgnn_jax.viz.event_display import plot_event, submission_track_ids
from cgnn_jax.viz.tree_view import default_levels, plot_tree_region, region_subtree

__all__ = [
    "PLOT_BINS_ETA",
    "PLOT_BINS_PT",
    "default_levels",
    "efficiency_by_method",
    "parse_range",
    "plot_efficiency",
    "plot_event",
    "plot_tree_region",
    "region_mask",
    "region_subtree",
    "submission_track_ids",
]
