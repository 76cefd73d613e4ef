"""Event display: the hits of one event in x–y and r–z, reconstructed (or true) tracks coloured.

Each track with at least ``min_track_hits`` hits gets a colour from a qualitative palette
(cycled, chosen by a hash of its id so it is stable between plots) and its hits are joined in
their order along the track's helix (:func:`helix_path`); hits of shorter tracks, noise hits (``particle_id == 0``
when colouring by truth) are small grey dots. An η/φ region cut keeps a full μ = 200 event
(~110k hits) readable; track sizes are counted in the whole event, before the cut.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from cgnn_jax.metrics.score import align_submission
from cgnn_jax.viz._common import (
    GREY,
    align_rows,
    check_range,
    hit_coordinates,
    label_colors,
    new_figure,
    region_mask,
    region_text,
    save_png,
)

COLOR_BY = ("track", "truth")
MAX_HITS_WITH_LINES = 20_000
#: A track whose hits span more than this times their transverse span in z is ordered by z
#: (:func:`helix_path`): 0.2 mm per mm, ~30 mm between barrel layers, well above the hits' z error.
Z_PATH_SLOPE = 0.2


def submission_track_ids(
    submission: pd.DataFrame, hits: pd.DataFrame, event_id: int | None = None
) -> np.ndarray:
    """``[n_hits]`` track id of each hit (hits row order) from a submission.

    Args:
      submission: ``hit_id, track_id`` and optionally ``event_id`` (then only the rows of
        ``event_id`` are used; there must be some).
      hits: the event's hits (``hit_id``).
      event_id: the event's id (needed when the submission has an ``event_id`` column).

    Raises:
      ValueError: the submission holds no rows of this event (the message lists the events
        it holds), misses hits of the event, repeats hits or holds unknown hits.
    """
    sub = submission
    if "event_id" in sub.columns:
        ids = sub["event_id"].to_numpy(np.int64)
        if event_id is None:
            uniq = np.unique(ids)
            if len(uniq) != 1:
                raise ValueError(
                    f"the submission holds {len(uniq)} events; say which event to display"
                )
            event_id = int(uniq[0])
        rows = ids == int(event_id)
        if not rows.any():
            held = np.unique(ids)
            shown = ", ".join(str(v) for v in held[:5]) + (", ..." if len(held) > 5 else "")
            raise ValueError(
                f"the submission holds no rows of event {event_id}; it holds event(s) {shown}"
            )
        sub = sub[rows]
    try:
        return align_submission(
            hits["hit_id"].to_numpy(np.int64),
            sub["hit_id"].to_numpy(np.int64),
            sub["track_id"].to_numpy(np.int64),
        )
    except ValueError as e:
        where = f" of event {event_id}" if event_id is not None else ""
        raise ValueError(f"submission{where} does not match the event's hits: {e}") from e


def _labels(
    hits: pd.DataFrame,
    track_id: np.ndarray | None,
    truth: pd.DataFrame | None,
    color_by: str | None,
    min_track_hits: int,
) -> tuple[np.ndarray | None, np.ndarray, str]:
    """Per-hit labels, whether each is coloured (its group is big enough), and the mode."""
    n = len(hits)
    if color_by is None:
        color_by = "track" if track_id is not None else ("truth" if truth is not None else None)
    if color_by is None:
        return None, np.zeros(n, bool), "none"
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
    if color_by == "track":
        if track_id is None:
            raise ValueError("color_by='track' needs track_id")
        labels = np.asarray(track_id)
        if labels.shape != (n,):
            raise ValueError(f"track_id has shape {labels.shape}, expected ({n},) (one per hit)")
        labels = labels.astype(np.int64)
        valid = np.ones(n, bool)
    else:
        if truth is None:
            raise ValueError("color_by='truth' needs truth")
        for col in ("hit_id", "particle_id"):
            if col not in truth.columns:
                raise ValueError(f"truth lacks column {col!r}")
        rows = align_rows(hits["hit_id"].to_numpy(), truth["hit_id"].to_numpy(), "truth")
        labels = truth["particle_id"].to_numpy(np.int64)[rows]
        valid = labels != 0
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    colored = valid & (counts[inv.reshape(-1)] >= min_track_hits)
    return labels, colored, color_by


def _group_sums(g: np.ndarray, n_groups: int, *weights: np.ndarray) -> list[np.ndarray]:
    return [np.bincount(g, weights=w, minlength=n_groups) for w in weights]


def helix_path(x: np.ndarray, y: np.ndarray, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[n]`` each hit's position along its track (the hits of one label), for joining them in
    the order the particle crossed them, from the beam line out and, for a looper, back in.

    Per label (vectorized over all labels): a circle through the beam line (``x = y = 0``) is
    fitted to the transverse positions (least squares of ``x² + y² = 2ax + 2by``); a hit's
    transverse arc length ``s_T`` is the circle's radius times the angle it has turned from the
    beam line, in the sense of the innermost hit (one turn at most; a straight track, whose fit
    degenerates, uses the projection on its mean direction). A line ``z = z0 + k s_T`` fitted
    to the hits gives the path length ``(s_T + k (z - z0)) / sqrt(1 + k²)``. A track whose hits
    span more than :data:`Z_PATH_SLOPE` times their transverse span in ``z`` is ordered by ``z``
    instead, away from its innermost hit: ``z`` grows monotonically along a helix, over any number of
    turns. Distance from the origin, the obvious key, runs back and forth on a looper, whose hits
    come back in at growing ``|z|`` (a line from a hit at r = 30 mm to one at 900 mm and back).

    Args:
      x, y, z: ``[n]`` hit positions (mm).
      labels: ``[n]`` int track (or particle) of each hit.

    Returns:
      ``[n]`` float64; only the order within a label means anything.
    """
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    if len(x) == 0:
        return np.zeros(0)
    _, g = np.unique(np.asarray(labels), return_inverse=True)
    g = g.reshape(-1)
    m = int(g.max()) + 1
    rho2 = x * x + y * y
    sxx, sxy, syy, sxr, syr, sx, sy = _group_sums(
        g, m, x * x, x * y, y * y, x * rho2, y * rho2, x, y
    )
    det = sxx * syy - sxy * sxy
    circle = det > 1e-10 * (sxx + syy) ** 2
    safe = np.where(circle, det, 1.0)
    a = np.where(circle, (syy * sxr - sxy * syr) / (2 * safe), 0.0)[g]
    b = np.where(circle, (sxx * syr - sxy * sxr) / (2 * safe), 0.0)[g]
    # the angle turned from the beam line, seen from the centre, wrapped to (-pi, pi]
    turned = np.arctan2(y - b, x - a) - np.arctan2(-b, -a)
    turned = (turned + np.pi) % (2 * np.pi) - np.pi
    order = np.lexsort((rho2, g))  # each label's innermost hit first
    first = order[np.r_[True, g[order][1:] != g[order][:-1]]]
    sense = np.where(turned[first] < 0, -1.0, 1.0)
    slack = np.pi / 8  # a hit fitted just before the beam line stays first
    psi = (sense[g] * turned + slack) % (2 * np.pi) - slack
    norm = np.hypot(sx, sy)  # a straight track's direction: its hits' mean position
    norm = np.where(norm > 0, norm, 1.0)
    ux, uy = sx / norm, sy / norm
    s_t = np.where(circle[g], np.hypot(a, b) * psi, x * ux[g] + y * uy[g])
    # the line z = z0 + k s_T, and the path length along it
    n, ss, sz, sss, ssz = _group_sums(g, m, np.ones_like(x), s_t, z, s_t * s_t, s_t * z)
    var = sss - ss * ss / n
    cov = ssz - ss * sz / n
    along_z = var <= 1e-9 * (1.0 + sss)  # one transverse point: the hits differ in z only
    k = np.where(along_z, 0.0, cov / np.where(along_z, 1.0, var))
    z0 = (sz - k * ss) / n
    path = (s_t + k[g] * (z - z0[g])) / np.sqrt(1.0 + k[g] ** 2)
    # z is monotonic along a helix: where the track moves along z enough for its hits' z to
    # tell them apart, z orders them, however many turns it loops
    z_max = np.full(m, -np.inf)
    z_min = np.full(m, np.inf)
    r_max = np.full(m, -np.inf)
    r_min = np.full(m, np.inf)
    rho = np.sqrt(rho2)
    np.maximum.at(z_max, g, z)
    np.minimum.at(z_min, g, z)
    np.maximum.at(r_max, g, rho)
    np.minimum.at(r_min, g, rho)
    use_z = along_z | (z_max - z_min > Z_PATH_SLOPE * (r_max - r_min))
    # ... away from the innermost hit, where the track starts
    z_sense = np.where(sz / n < z[first], -1.0, 1.0)
    return np.where(use_z[g], z_sense[g] * z, path)


def _track_segments(
    u: np.ndarray, v: np.ndarray, labels: np.ndarray, path: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``[m, 2, 2]`` joining consecutive hits (by ``path``, :func:`helix_path`) of each
    label, and the label of each segment."""
    order = np.lexsort((path, labels))
    lab = labels[order]
    same = lab[1:] == lab[:-1]
    a, b = order[:-1][same], order[1:][same]
    segs = np.stack([np.stack([u[a], v[a]], 1), np.stack([u[b], v[b]], 1)], 1)
    return segs, lab[1:][same]


def _draw_view(
    ax: Axes,
    u: np.ndarray,
    v: np.ndarray,
    labels: np.ndarray | None,
    colored: np.ndarray,
    path: np.ndarray,
    lines: bool,
    sizes: tuple[float, float],
) -> None:
    grey = ~colored
    ax.scatter(u[grey], v[grey], s=sizes[0], c=[GREY], linewidths=0, rasterized=True, zorder=1)
    if labels is None or not colored.any():
        return
    lab = labels[colored]
    cols = label_colors(lab)
    if lines:
        segs, seg_lab = _track_segments(u[colored], v[colored], lab, path[colored])
        if len(segs):
            lc = LineCollection(
                segs, colors=label_colors(seg_lab), linewidths=0.7, alpha=0.75, zorder=2
            )
            lc.set_rasterized(True)
            ax.add_collection(lc)
    ax.scatter(u[colored], v[colored], s=sizes[1], c=cols, linewidths=0, rasterized=True, zorder=3)


def plot_event(
    hits: pd.DataFrame,
    track_id: np.ndarray | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    truth: pd.DataFrame | None = None,
    color_by: str | None = None,
    eta_range: Sequence[float] | None = None,
    phi_range: Sequence[float] | None = None,
    min_track_hits: int = 3,
    lines: bool | None = None,
    event_id: int | None = None,
    title: str | None = None,
) -> Figure:
    """Draw one event in x–y and r–z with its tracks coloured.

    Args:
      hits: the event's hits (``hit_id, x, y, z`` in mm).
      track_id: ``[n_hits]`` reconstructed track of each hit (hits row order), e.g. from
        :func:`submission_track_ids` or :func:`cgnn_jax.baselines.reconstruct_baseline`.
      path: write the figure there as PNG (atomically; the folder is created). ``None``: only
        return the figure.
      truth: the event's truth (``hit_id, particle_id``), for ``color_by="truth"``.
      color_by: ``"track"`` (colour by ``track_id``) or ``"truth"`` (by true particle); default
        ``"track"`` when ``track_id`` is given, else ``"truth"`` when ``truth`` is, else all
        hits grey.
      eta_range: ``(lo, hi)``: only hits with ``lo <= η < hi`` (η of the hit position).
      phi_range: ``(lo, hi)`` in radians: only hits with φ in ``[lo, hi)`` (``lo > hi`` wraps).
      min_track_hits: tracks (particles) with fewer hits in the whole event are drawn grey.
      lines: join the hits of each coloured track in their order along it (:func:`helix_path`);
        default: only when at most :data:`MAX_HITS_WITH_LINES` hits are shown (a full event
        with lines is an unreadable tangle).
      event_id: shown in the title.
      title: the figure title (default: event, colouring and region).

    Returns:
      The matplotlib :class:`~matplotlib.figure.Figure`.

    Raises:
      ValueError: inconsistent inputs (a ``track_id`` of the wrong length, truth missing hits,
        an empty region, ...); nothing is written then and an existing ``path`` stays.
    """
    eta_range = check_range(eta_range, "eta")
    phi_range = check_range(phi_range, "phi")
    coords = hit_coordinates(hits)
    labels, colored, mode = _labels(hits, track_id, truth, color_by, min_track_hits)
    keep = region_mask(coords, eta_range, phi_range)
    if not keep.any():
        raise ValueError(
            f"no hits in the region {region_text(eta_range, phi_range)} (of {len(hits)} hits)"
        )
    # each coloured track's hits in their order along it, from all its hits in the event
    along = np.zeros(len(hits))
    if labels is not None and colored.any():
        along[colored] = helix_path(
            coords["x"][colored], coords["y"][colored], coords["z"][colored], labels[colored]
        )
    c = {k: v[keep] for k, v in coords.items()}
    lab = labels[keep] if labels is not None else None
    col = colored[keep]
    along = along[keep]
    n_show = int(keep.sum())
    if lines is None:
        lines = n_show <= MAX_HITS_WITH_LINES
    sizes = (1.0, 4.0) if n_show > 20_000 else (2.0, 7.0) if n_show > 3_000 else (4.0, 12.0)

    # Panel widths follow the shapes: x–y keeps equal aspect, r–z fills the rest.
    span_x = float(np.ptp(c["x"])) or 1.0
    span_y = float(np.ptp(c["y"])) or 1.0
    xy_ratio = float(np.clip(span_x / span_y, 0.7, 2.2))
    panel_h = min(5.6, 13.5 / (xy_ratio + 1.6))  # at most ~15 inches wide
    fig = new_figure(panel_h * (xy_ratio + 1.6) + 1.6, panel_h + 1.0)
    ax_xy, ax_rz = fig.subplots(1, 2, gridspec_kw={"width_ratios": [xy_ratio, 1.6]})
    _draw_view(ax_xy, c["x"], c["y"], lab, col, along, lines, sizes)
    _draw_view(ax_rz, c["z"], c["r"], lab, col, along, lines, sizes)
    ax_xy.set_aspect("equal", adjustable="box")
    ax_xy.set_xlabel("x [mm]")
    ax_xy.set_ylabel("y [mm]")
    ax_xy.set_title("transverse view (x–y)", fontsize=10)
    ax_rz.set_xlabel("z [mm]")
    ax_rz.set_ylabel("r = √(x² + y²) [mm]")
    ax_rz.set_title("longitudinal view (r–z)", fontsize=10)
    for ax in (ax_xy, ax_rz):
        ax.grid(True, color="0.92", lw=0.6)
        ax.set_axisbelow(True)
        ax.autoscale_view()

    what = {"track": "reconstructed track", "truth": "true particle", "none": ""}[mode]
    if lab is not None:
        n_groups = len(np.unique(lab[col]))
        n_grey = int((~col).sum())
        grey_what = (
            f"hits of tracks with < {min_track_hits} hits"
            if mode == "track"
            else f"noise hits and particles with < {min_track_hits} hits"
        )
        info = (
            f"{n_show:,} hits shown; {n_groups:,} {what}s with ≥ {min_track_hits} hits coloured"
            f" (colours repeat); grey: {n_grey:,} {grey_what}"
        )
    else:
        info = f"{n_show:,} hits shown"
    if lab is not None and not lines and n_show > MAX_HITS_WITH_LINES:
        info += f"; tracks are not joined above {MAX_HITS_WITH_LINES:,} hits: cut an η/φ region"
    fig.supxlabel(info, fontsize=8, color="0.3")
    if title is None:
        head = f"event {event_id}" if event_id is not None else "event"
        head += f" — {len(hits):,} hits"
        if mode != "none":
            head += f", coloured by {what}"
        region = region_text(eta_range, phi_range)
        title = head + (f"; region {region}" if region else "")
    fig.suptitle(title, fontsize=11)
    if path is not None:
        save_png(fig, path)
    return fig
