"""The multiscale view of the learned hierarchical clustering in one η–φ region of an event.

A :class:`~cgnn_jax.cluster.tree.ClusterTree` holds the clustering of the event at every level of
the divisive recursion (``hit_node[:, l]``: coarse at small ``l``, the tracks at ``l = L``).
:func:`plot_tree_region` draws, for a few chosen levels (coarse to fine), the region's hits in
x–y and r–z coloured by their cluster at that level, and below them the sub-tree of the nodes
that hold the region's hits: node level on the y axis (the root on top), the node's size as
marker area, its stop probability as colour, edges from parent to child.

Colours of clusters come from a hash of the node id, so a cluster carried unchanged to later
levels (not split) keeps its colour from panel to panel; clusters with fewer than
``min_cluster_hits`` hits (in the whole event) are small grey dots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cgnn_jax.viz._common import (
    GREY,
    align_rows,
    hit_coordinates,
    label_colors,
    new_figure,
    region_mask,
    region_text,
    save_png,
)

if TYPE_CHECKING:
    from cgnn_jax.cluster.tree import ClusterTree

Region = tuple[float, float, float, float]
"""``(eta_lo, eta_hi, phi_lo, phi_hi)``; φ in radians, ``phi_lo > phi_hi`` wraps at ±π."""

_STOP_CMAP = "viridis"


def default_levels(depth: int) -> tuple[int, ...]:
    """``(1, 2, 4, 8, L)`` clipped to the tree's depth ``L`` (no repeats, ascending)."""
    return tuple(sorted({lev for lev in (1, 2, 4, 8) if lev <= depth} | {depth}))


def _check_levels(levels: Sequence[int] | None, depth: int) -> tuple[int, ...]:
    if levels is None:
        return default_levels(depth)
    out = sorted({int(lev) for lev in levels})
    if not out:
        raise ValueError("levels is empty")
    bad = [lev for lev in out if not 0 <= lev <= depth]
    if bad:
        raise ValueError(f"levels {bad} outside the tree's levels 0..{depth}")
    return tuple(out)


def _marker_area(size: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Marker area (pt²) of a node of ``size`` hits: linear in log2(size) (times ``scale``,
    which shrinks the markers of a crowded sub-tree), 4 for one hit."""
    return 4.0 + scale * 10.0 * np.log2(np.maximum(np.asarray(size, np.float64), 1.0))


def region_subtree(tree: ClusterTree, rows: np.ndarray) -> pd.DataFrame:
    """The nodes (rows of ``tree.nodes``) that hold at least one of the hits ``rows`` at some
    level, with ``x``: their horizontal position in a dendrogram layout (leaves of the sub-tree
    in depth-first order at ``0, 1, 2, ...``; a parent above the mean of its children)."""
    ids = np.unique(tree.hit_node[rows])
    ids = ids[ids >= 0]
    nodes = tree.nodes.set_index("node_id", drop=False).loc[ids].reset_index(drop=True)
    parent = nodes["parent"].to_numpy(np.int64)
    node_id = nodes["node_id"].to_numpy(np.int64)
    in_sub = set(node_id.tolist())
    children: dict[int, list[int]] = {int(i): [] for i in node_id}
    roots = []
    for i, p in zip(node_id.tolist(), parent.tolist(), strict=True):
        if p in in_sub:
            children[p].append(i)
        else:
            roots.append(i)
    x: dict[int, float] = {}
    next_leaf = 0
    for root in sorted(roots):
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            kids = sorted(children[node])
            if not kids:
                x[node] = float(next_leaf)
                next_leaf += 1
            elif expanded:
                x[node] = float(np.mean([x[k] for k in kids]))
            else:
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(kids))
    nodes["x"] = [x[int(i)] for i in node_id]
    return nodes


def _draw_clusters(
    ax: Axes,
    u: np.ndarray,
    v: np.ndarray,
    labels: np.ndarray,
    colored: np.ndarray,
    sizes: tuple[float, float],
) -> None:
    grey = ~colored
    ax.scatter(u[grey], v[grey], s=sizes[0], c=[GREY], linewidths=0, rasterized=True, zorder=1)
    if colored.any():
        ax.scatter(
            u[colored],
            v[colored],
            s=sizes[1],
            c=label_colors(labels[colored]),
            linewidths=0,
            rasterized=True,
            zorder=2,
        )


def _draw_dendrogram(
    fig: Figure, ax: Axes, sub: pd.DataFrame, levels: tuple[int, ...], depth: int
) -> None:
    x_of = dict(zip(sub["node_id"].tolist(), sub["x"].tolist(), strict=True))
    lev_of = dict(zip(sub["node_id"].tolist(), sub["level"].tolist(), strict=True))
    segs = [
        [(x_of[p], lev_of[p]), (x, lev)]
        for p, x, lev in zip(sub["parent"], sub["x"], sub["level"], strict=True)
        if p in x_of
    ]
    if segs:
        ax.add_collection(LineCollection(segs, colors="0.6", linewidths=0.5, zorder=1))
    x = sub["x"].to_numpy(np.float64)
    y = sub["level"].to_numpy(np.float64)
    n_leaf = int(sub["x"].max()) + 1 if len(sub) else 1
    # Leaves are spaced (axis width / n_leaf) apart: shrink markers so that they stay apart.
    spacing_pt = 0.85 * fig.get_figwidth() * 72.0 / n_leaf
    scale = float(np.clip((1.3 * spacing_pt) ** 2 / 100.0, 0.15, 1.0))
    area = _marker_area(sub["size"].to_numpy(), scale)
    stop = sub["stop_prob"].to_numpy(np.float64)
    norm = Normalize(0.0, 1.0)
    ev = np.isfinite(stop)
    sc = ax.scatter(
        x[ev],
        y[ev],
        s=area[ev],
        c=stop[ev],
        cmap=_STOP_CMAP,
        norm=norm,
        edgecolors="0.2",
        linewidths=0.3,
        zorder=3,
    )
    ax.scatter(
        x[~ev],
        y[~ev],
        s=area[~ev],
        facecolors="none",
        edgecolors="0.45",
        linewidths=0.6,
        zorder=2,
    )
    for lev in levels:
        ax.axhline(lev, color="tab:red", lw=0.7, ls="--", alpha=0.6, zorder=0)
    pad = max(0.5, 0.01 * n_leaf)
    ax.set_xlim(-pad, n_leaf - 1 + pad)
    ax.set_ylim(depth + 0.7, -0.7)
    ax.set_ylabel("level (root at 0)")
    ax.set_xlabel(
        f"{len(sub):,} nodes holding the region's hits; the {n_leaf:,} sub-tree leaves in "
        "depth-first order (red dashed lines: the levels drawn above)",
        fontsize=8,
    )
    ax.set_xticks([])
    ax.yaxis.get_major_locator().set_params(integer=True)
    cbar = fig.colorbar(sc, ax=ax, pad=0.01, fraction=0.03)
    cbar.set_label("stop probability")
    max_size = max(int(sub["size"].max()), 1) if len(sub) else 1
    ref = [s for s in (1, 10, 100, 1_000, 10_000, 100_000) if s <= max_size] or [1]
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markersize=float(np.sqrt(_marker_area(np.array([s]), scale)[0])),
            markerfacecolor="0.75",
            markeredgecolor="0.2",
            markeredgewidth=0.3,
            label=f"{s:,}",
        )
        for s in ref
    ]
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markersize=6,
            markerfacecolor="none",
            markeredgecolor="0.45",
            label="not evaluated\n(last level)",
        )
    )
    ax.legend(
        handles=handles,
        title="node size [hits]",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.07),
        fontsize=7,
        title_fontsize=7,
        ncols=len(handles),
        framealpha=0.85,
        borderpad=0.6,
        labelspacing=1.2,
    )


def plot_tree_region(
    tree: ClusterTree,
    hits: pd.DataFrame,
    region: Region | Sequence[float] | None,
    levels: Sequence[int] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    rz: bool = True,
    min_cluster_hits: int = 3,
    title: str | None = None,
) -> Figure:
    """The region's hits coloured by cluster at several tree levels, and the region's sub-tree.

    Args:
      tree: the event's cluster tree (:func:`cgnn_jax.cluster.tree.read_tree`,
        :func:`~cgnn_jax.cluster.tree.build_tree`, or ``Pipeline.reconstruct(event,
        return_tree=True)``).
      hits: the event's hits (``hit_id, x, y, z`` in mm); matched to the tree by ``hit_id``.
      region: ``(eta_lo, eta_hi, phi_lo, phi_hi)`` (η of the hit position, φ in radians;
        ``phi_lo > phi_hi`` wraps at ±π), or ``None`` for the whole event (the sub-tree panel
        is then very crowded).
      levels: the levels to draw, coarse to fine (default ``(1, 2, 4, 8, L)`` within the
        tree's depth ``L``).
      path: write the figure there as PNG (atomically; the folder is created). ``None``: only
        return the figure.
      rz: also draw an r–z row under the x–y row.
      min_cluster_hits: clusters with fewer hits (in the whole event) are drawn grey.
      title: the figure title (default: event, region and tree depth).

    Returns:
      The matplotlib :class:`~matplotlib.figure.Figure`.

    Raises:
      ValueError: hits missing from the tree or vice versa, levels outside the tree, a bad or
        empty region; nothing is written then and an existing ``path`` stays.
    """
    depth = tree.depth
    levels = _check_levels(levels, depth)
    if region is not None:
        region = tuple(float(v) for v in region)  # type: ignore[assignment]
        if len(region) != 4:
            raise ValueError(f"region must be (eta_lo, eta_hi, phi_lo, phi_hi), got {region}")
        eta_range, phi_range = region[:2], region[2:]
    else:
        eta_range = phi_range = None
    hit_id = hits["hit_id"].to_numpy(np.int64) if "hit_id" in hits.columns else None
    if hit_id is None:
        raise ValueError(f"hits lack column 'hit_id'; they have {list(hits.columns)}")
    if len(hit_id) != len(tree.hit_id):
        raise ValueError(
            f"the tree holds {len(tree.hit_id):,} hits but the event has {len(hit_id):,}: "
            "a tree of another event?"
        )
    rows = align_rows(hit_id, tree.hit_id, "the cluster tree")  # tree row of each hit
    coords = hit_coordinates(hits)
    keep = region_mask(coords, eta_range, phi_range)
    if not keep.any():
        raise ValueError(
            f"no hits in the region {region_text(eta_range, phi_range)} (of {len(hits)} hits)"
        )
    c = {k: v[keep] for k, v in coords.items()}
    t_rows = rows[keep]
    node_size = tree.nodes.set_index("node_id")["size"]
    sub = region_subtree(tree, t_rows)

    ncols = len(levels)
    n_hit_rows = 2 if rz else 1
    n_show = int(keep.sum())
    sizes = (1.0, 3.0) if n_show > 20_000 else (2.0, 6.0) if n_show > 3_000 else (3.0, 9.0)
    width = max(3.3 * ncols + 1.2, 10.0)
    col_w = (width - 1.2) / ncols
    # x–y panels keep equal aspect: give their row the height the region's shape needs.
    span_x = float(np.ptp(c["x"])) or 1.0
    span_y = float(np.ptp(c["y"])) or 1.0
    xy_h = float(np.clip(col_w * span_y / span_x, 0.45 * col_w, 1.3 * col_w)) + 0.6
    heights = [xy_h] + ([0.8 * col_w + 0.5] if rz else []) + [4.6]
    fig = new_figure(width, sum(heights) + 0.6)
    gs = fig.add_gridspec(n_hit_rows + 1, ncols, height_ratios=heights)
    xy_axes: list[Axes] = []
    rz_axes: list[Axes] = []
    for j, lev in enumerate(levels):
        ax_xy = fig.add_subplot(gs[0, j], sharex=xy_axes[0] if xy_axes else None)
        if xy_axes:
            ax_xy.sharey(xy_axes[0])
        xy_axes.append(ax_xy)
        labels = tree.hit_node[t_rows, lev].astype(np.int64)
        sz = node_size.reindex(labels).to_numpy(np.float64, na_value=0.0)
        colored = (labels >= 0) & (sz >= min_cluster_hits)
        n_clusters = len(np.unique(labels[labels >= 0]))
        n_big = len(np.unique(labels[colored]))
        _draw_clusters(ax_xy, c["x"], c["y"], labels, colored, sizes)
        what = "tracks (leaves)" if lev == depth else "clusters"
        ax_xy.set_title(
            f"level {lev}: {n_clusters:,} {what}\n({n_big:,} with ≥ {min_cluster_hits} hits)",
            fontsize=9,
        )
        ax_xy.set_aspect("equal", adjustable="box")
        ax_xy.set_xlabel("x [mm]", fontsize=8)
        if j == 0:
            ax_xy.set_ylabel("y [mm]")
        if rz:
            ax_rz = fig.add_subplot(gs[1, j], sharex=rz_axes[0] if rz_axes else None)
            if rz_axes:
                ax_rz.sharey(rz_axes[0])
            rz_axes.append(ax_rz)
            _draw_clusters(ax_rz, c["z"], c["r"], labels, colored, sizes)
            ax_rz.set_xlabel("z [mm]", fontsize=8)
            if j == 0:
                ax_rz.set_ylabel("r [mm]")
    for ax in xy_axes + rz_axes:
        ax.tick_params(labelsize=7)
        ax.grid(True, color="0.92", lw=0.5)
        ax.set_axisbelow(True)
    ax_tree = fig.add_subplot(gs[n_hit_rows, :])
    _draw_dendrogram(fig, ax_tree, sub, levels, depth)
    ax_tree.set_title(
        "sub-tree of the region: marker area = node size (hits in the whole event, log scale),"
        " colour = stop probability",
        fontsize=9,
    )
    if title is None:
        head = f"event {tree.event_id}" if tree.event_id >= 0 else "event"
        region_s = region_text(eta_range, phi_range)
        title = (
            f"{head}: cluster tree (depth {depth}), {n_show:,} hits"
            + (f" in {region_s}" if region_s else "")
            + "; coloured by cluster at each level, grey: clusters with"
            f" < {min_cluster_hits} hits"
        )
    fig.suptitle(title, fontsize=11)
    if path is not None:
        save_png(fig, path)
    return fig
