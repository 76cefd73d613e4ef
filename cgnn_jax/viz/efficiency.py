"""Track efficiency and fake rate versus p_T and η, several methods on the same axes.

One figure, four panels: efficiency vs p_T (log x), efficiency vs η, fake rate vs p_T, fake rate
vs η, each method a marker series with binomial error bars (``sqrt(f (1 - f) / n)``) and the
bin width as horizontal bar. The numbers come from :func:`cgnn_jax.metrics.track_efficiency`
(definitions there): a particle is reconstructable with ``>= min_particle_hits`` hits; a track is
matched when it holds more than half of its majority particle's hits and that particle more
than half of its hits; the fake rate is over tracks with ``>= min_track_hits`` hits. Several
events are pooled by summing counts (:func:`cgnn_jax.metrics.efficiency.combine_track_efficiency`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from cgnn_jax.metrics.efficiency import (
    TrackEfficiency,
    combine_track_efficiency,
    track_efficiency,
)
from cgnn_jax.viz._common import new_figure, save_png

EventTriple = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
"""``(truth, particles, submission)`` of one event (submission: ``hit_id, track_id``)."""

MethodInput = TrackEfficiency | EventTriple | Sequence[EventTriple]
"""What :func:`plot_efficiency` accepts per method."""

PLOT_BINS_PT: tuple[float, ...] = (
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.8,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    100.0,
)
"""p_T bin edges [GeV] of the plots (log axis; TrackML particles start near 0.1 GeV)."""

PLOT_BINS_ETA: tuple[float, ...] = tuple(np.round(np.linspace(-4.0, 4.0, 33), 6).tolist())
"""η bin edges of the plots (0.25 wide, the TrackML acceptance |η| < 4)."""

_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#e377c2")


def _is_triple(x: object) -> bool:
    return (
        isinstance(x, tuple) and len(x) == 3 and all(isinstance(v, pd.DataFrame) for v in x)  # type: ignore[union-attr]
    )


def efficiency_by_method(
    results: Mapping[str, MethodInput],
    bins_pt: Sequence[float] = PLOT_BINS_PT,
    bins_eta: Sequence[float] = PLOT_BINS_ETA,
    min_particle_hits: int = 4,
    min_track_hits: int = 3,
) -> dict[str, TrackEfficiency]:
    """The pooled :class:`TrackEfficiency` of each method.

    Args:
      results: method name -> a :class:`TrackEfficiency` (used as it is), one event's
        ``(truth, particles, submission)``, or a list of them (pooled over the events).
      bins_pt: p_T bin edges [GeV].
      bins_eta: η bin edges.
      min_particle_hits: a particle is reconstructable with at least this many hits.
      min_track_hits: tracks with at least this many hits enter the fake rate.

    Returns:
      name -> :class:`TrackEfficiency`, in the order of ``results``.

    Raises:
      ValueError: no methods, a method without events, or an invalid submission (the
        message names the method and the event's position in its list).
    """
    if not results:
        raise ValueError("no methods to plot")
    out: dict[str, TrackEfficiency] = {}
    for name, value in results.items():
        if isinstance(value, TrackEfficiency):
            out[name] = value
            continue
        events = [value] if _is_triple(value) else list(value)  # type: ignore[arg-type]
        if not events:
            raise ValueError(f"method {name!r}: no events")
        per_event = []
        for i, ev in enumerate(events):
            if not _is_triple(ev):
                raise ValueError(
                    f"method {name!r}, event #{i}: expected a (truth, particles, submission) "
                    f"tuple of DataFrames, got {type(ev).__name__}"
                )
            truth, particles, submission = ev
            try:
                per_event.append(
                    track_efficiency(
                        truth,
                        particles,
                        submission,
                        bins_pt=np.asarray(bins_pt, np.float64),
                        bins_eta=np.asarray(bins_eta, np.float64),
                        min_particle_hits=min_particle_hits,
                        min_track_hits=min_track_hits,
                    )
                )
            except ValueError as e:
                raise ValueError(f"method {name!r}, event #{i}: {e}") from e
        out[name] = combine_track_efficiency(per_event)
    return out


def _draw_series(
    ax: Axes,
    table: pd.DataFrame,
    log_x: bool,
    label: str,
    color: str,
    marker: str,
    offset: float,
    min_count: int = 1,
) -> None:
    """One method's per-bin fractions with binomial y errors and the bin width as x bars."""
    lo = table["bin_lo"].to_numpy(np.float64)
    hi = table["bin_hi"].to_numpy(np.float64)
    f = table["efficiency"].to_numpy(np.float64)
    err = table["error"].to_numpy(np.float64)
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(f)
    ok &= table["n"].to_numpy() >= min_count
    if log_x:
        ok &= lo > 0
    lo, hi, f, err = lo[ok], hi[ok], f[ok], err[ok]
    if log_x:
        width = np.log(hi) - np.log(lo)
        x = np.exp(np.log(lo) + width * (0.5 + offset))
    else:
        x = lo + (hi - lo) * (0.5 + offset)
    ax.errorbar(
        x,
        f,
        yerr=err,
        xerr=[x - lo, hi - x],
        fmt=marker,
        color=color,
        markersize=4.5,
        markeredgewidth=0.8,
        elinewidth=0.9,
        capsize=0,
        label=label,
    )


def _draw_counts(ax: Axes, table: pd.DataFrame, log_x: bool, label: str) -> None:
    """Grey step histogram of the bin counts on a right-hand axis (context for the errors)."""
    lo = table["bin_lo"].to_numpy(np.float64)
    hi = table["bin_hi"].to_numpy(np.float64)
    n = table["n"].to_numpy(np.float64)
    ok = np.isfinite(lo) & np.isfinite(hi) & ((lo > 0) if log_x else True)
    if not ok.any():
        return
    twin = ax.twinx()
    edges = np.r_[lo[ok], hi[ok][-1]]
    twin.stairs(n[ok], edges, fill=True, color="0.88", zorder=0)
    twin.set_ylim(0, max(n[ok].max(), 1) * 3.0)
    twin.set_ylabel(label, color="0.45", fontsize=8)
    twin.tick_params(axis="y", colors="0.45", labelsize=7)
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)


def plot_efficiency(
    results: Mapping[str, MethodInput],
    path: str | os.PathLike[str] | None = None,
    *,
    bins_pt: Sequence[float] = PLOT_BINS_PT,
    bins_eta: Sequence[float] = PLOT_BINS_ETA,
    min_particle_hits: int = 4,
    min_track_hits: int = 3,
    title: str | None = None,
    show_counts: bool = True,
    min_bin_count: int = 5,
) -> Figure:
    """Efficiency and fake rate vs p_T and η of one or more methods, as one 4-panel figure.

    Args:
      results: method name -> a :class:`TrackEfficiency`, one event's ``(truth, particles,
        submission)``, or a list of such triples (pooled); e.g.
        ``{"helix_dbscan": [(truth, particles, sub_h)], "dbscan": [(truth, particles, sub_d)]}``.
        Every method is drawn on the same axes, in this order.
      path: write the figure there as PNG (atomically; the folder is created). ``None``: only
        return the figure.
      bins_pt: p_T bin edges [GeV] (bins not drawable on the log axis, ``lo <= 0`` or
        ``hi = inf``, are left out of the plot).
      bins_eta: η bin edges.
      min_particle_hits: reconstructable particles have at least this many hits.
      min_track_hits: tracks entering the fake rate have at least this many hits.
      title: figure title (default: a summary of the definitions).
      show_counts: grey histograms of the reconstructable particles per bin (first method)
        behind the efficiency panels.
      min_bin_count: bins with fewer particles (tracks) are not drawn: their binomial error
        means little (``0 ± 0`` or ``1 ± 0`` for one entry). They still count overall.

    Returns:
      The matplotlib :class:`~matplotlib.figure.Figure`.

    Raises:
      ValueError: bad inputs (see :func:`efficiency_by_method`); nothing is written then and an
        existing ``path`` is left as it was.
    """
    effs = efficiency_by_method(results, bins_pt, bins_eta, min_particle_hits, min_track_hits)
    fig = new_figure(11.0, 8.2)
    axes = fig.subplots(2, 2)
    (ax_ept, ax_eeta), (ax_fpt, ax_feta) = axes
    n_methods = len(effs)
    offsets = (np.arange(n_methods) - (n_methods - 1) / 2) * (0.12 if n_methods > 1 else 0.0)
    first = next(iter(effs.values()))
    if show_counts:
        _draw_counts(ax_ept, first.efficiency_pt, True, "reconstructable particles / bin")
        _draw_counts(ax_eeta, first.efficiency_eta, False, "reconstructable particles / bin")
    for i, (name, eff) in enumerate(effs.items()):
        style = {
            "color": _COLORS[i % len(_COLORS)],
            "marker": _MARKERS[i % len(_MARKERS)],
            "offset": float(offsets[i]),
            "min_count": int(min_bin_count),
        }
        label = (
            f"{name}: efficiency {eff.efficiency:.3f} ± {eff.efficiency_error:.3f}"
            f" ({eff.n_matched:,} / {eff.n_reconstructable:,} particles),"
            f" fake rate {eff.fake_rate:.3f} ± {eff.fake_rate_error:.3f}"
            f" ({eff.n_fake:,} / {eff.n_tracks:,} tracks)"
        )
        _draw_series(ax_ept, eff.efficiency_pt, True, label, **style)
        _draw_series(ax_eeta, eff.efficiency_eta, False, "_", **style)
        _draw_series(ax_fpt, eff.fake_rate_pt, True, "_", **style)
        _draw_series(ax_feta, eff.fake_rate_eta, False, "_", **style)

    pt_lo = min(v for v in bins_pt if v > 0)
    pt_hi = max(v for v in bins_pt if np.isfinite(v))
    for ax in (ax_ept, ax_fpt):
        ax.set_xscale("log")
        ax.set_xlim(pt_lo, pt_hi)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("particle $p_T$ [GeV]")
    eta_lo = min(v for v in bins_eta if np.isfinite(v))
    eta_hi = max(v for v in bins_eta if np.isfinite(v))
    for ax in (ax_eeta, ax_feta):
        ax.set_xlim(eta_lo, eta_hi)
        ax.set_xlabel("particle η")
    ax_fpt.set_xlabel("$p_T$ of the track's majority particle [GeV]")
    ax_feta.set_xlabel("track η (matched particle's, or of its hits' mean direction)")
    for ax in (ax_ept, ax_eeta):
        ax.set_ylabel("track efficiency")
        ax.set_ylim(0.0, 1.08)
        ax.axhline(1.0, color="0.5", lw=0.6, ls=":")
    for ax in (ax_fpt, ax_feta):
        ax.set_ylabel("fake rate")
        ax.set_ylim(0.0, 1.08)
    for ax in axes.ravel():
        ax.grid(True, which="major", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
    handles, labels = ax_ept.get_legend_handles_labels()
    if show_counts:
        handles.append(Patch(facecolor="0.88", edgecolor="none"))
        labels.append("reconstructable particles per bin (right axis of the efficiency panels)")
    fig.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=9, frameon=False)
    ax_ept.set_title("efficiency vs $p_T$", fontsize=10)
    ax_eeta.set_title("efficiency vs η", fontsize=10)
    ax_fpt.set_title("fake rate vs $p_T$ (tracks of noise majority not shown)", fontsize=10)
    ax_feta.set_title("fake rate vs η", fontsize=10)
    fig.suptitle(
        title
        or (
            f"Tracking efficiency (particles with ≥ {min_particle_hits} hits) and fake rate "
            f"(tracks with ≥ {min_track_hits} hits); matching: > 50 % of track and particle hits"
        ),
        fontsize=11,
    )
    if path is not None:
        save_png(fig, path)
    return fig
