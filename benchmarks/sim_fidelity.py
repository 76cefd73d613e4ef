r"""Fidelity of the simulator: simulated μ = 200 events next to the real TrackML event.

    python benchmarks/sim_fidelity.py [--events=5] [--rough_events=10] [--score_events=5] [--seed=0]
        [--vertex_events=5] [--vertex_sigma_z=50]

"Real" columns: the shipped real particle list of TrackML event 1000 (p_T, η, vertex, nhits) and the
facts measured on real events listed in the project's shared inputs. Prints four markdown tables:
the marginals (``--events`` full events), the track roughness and baseline scores on 5 %-track
events (``track_fraction=0.05``; roughness pooled over ``--rough_events`` events, scores over the
first ``--score_events`` of them), the cell-derived direction error per volume, and the luminous
region: the vertices of simulated events at the native setting and at ``--vertex_sigma_z`` beside
those of both real events (the particle list of event 1000 and the shipped real sample).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from cgnn_jax.analysis.fidelity import (
    QUANTILES,
    ROUGHNESS_BINS,
    VOLUMES,
    cell_direction_error,
    collision_vertices_z,
    event_stats,
    particle_distributions,
    roughness_table,
    track_residuals,
    vertex_spread,
)
from cgnn_jax.inference.dataset import reconstruct_event
from cgnn_jax.metrics.score import score_event
from cgnn_jax.sim import simulate_event
from cgnn_jax.sim.dataset import event_seed
from cgnn_jax.sim.particles import real_particles, sample_particles

REAL_FACTS = {
    "hits per event": "100k-120k",
    "noise fraction": "0.10-0.15",
    "share of (particle, layer) pairs with >= 2 hits": "0.28",
    "cells/hit pixel barrel (mean / median)": "7.0 / 5",
    "cells/hit pixel endcaps (mean / median)": "1.7 / 1-2",
    "cells/hit short strips (mean)": "1.7-2.6",
    "cells/hit long strips (mean)": "2.7-3.0",
    "pixel charge per hit (mean)": "0.3",
}
REAL_VOLUME = {7: 13, 8: 24, 9: 13, 12: 7, 13: 23, 14: 6, 16: 3, 17: 8, 18: 3}
REAL_NOISE_VOLUME = {7: 4, 8: 10, 9: 4, 12: 7, 13: 30, 14: 6, 16: 3, 17: 32, 18: 5}
# Track roughness of a real TrackML event reduced to 5 % of its tracks: median over particles
# (>= 5 hits) of the median residual of a Kåsa circle fit in x-y and of a line fit z(r), in mm,
# as (x-y, r-z). Source: the project's shared inputs, ../shared/README.md, section "Track roughness
# and baseline difficulty on a real event" (one event: x-y good to about ±15 %, r-z to about ±40 %).
REAL_ROUGHNESS: dict[str, tuple[float, float]] = {
    "p_T 0-0.3 GeV": (0.29, 7.9),
    "p_T 0.3-0.6": (0.27, 4.7),
    "p_T 0.6-1": (0.16, 1.8),
    "p_T 1-2": (0.15, 0.86),
    "p_T > 2": (0.08, 0.14),
    "p_T > 0.6, |η| 0-1": (0.090, 1.0),
    "p_T > 0.6, |η| 1-2": (0.31, 2.4),
    "p_T > 0.6, |η| 2-2.6": (0.58, 1.4),
    "p_T > 0.6, |η| > 2.6": (0.032, 0.51),
}
# TrackML scores of the baselines (default eps) on that real 5 %-track event (same source).
REAL_SCORES: dict[str, float] = {"dbscan": 0.07, "helix_dbscan": 0.14}
ROUGH_TRACK_FRACTION = 0.05


def _q(x: np.ndarray, fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in np.quantile(x, QUANTILES))


def fidelity_table(n_events: int = 5, seed: int = 0) -> list[tuple[str, str, str]]:
    """Rows ``(quantity, simulated, real)``."""
    evs = [simulate_event(event_seed(seed, i), 200.0) for i in range(n_events)]
    stats = pd.DataFrame([event_stats(e) for e in evs])
    sim_p = {
        k: np.concatenate([particle_distributions(e.particles)[k] for e in evs])
        for k in ("pt", "eta", "vertex_r", "nhits")
    }
    real_p = particle_distributions(real_particles())
    rows = [
        (
            "hits per event",
            f"{stats.hits.mean():,.0f} ± {stats.hits.std():,.0f}",
            REAL_FACTS["hits per event"],
        ),
        ("particles with >= 1 hit", f"{stats.particles.mean():,.0f}", f"{len(real_p['pt']):,}"),
        ("noise fraction", f"{stats.noise_fraction.mean():.3f}", REAL_FACTS["noise fraction"]),
        (
            "hits per particle (mean)",
            f"{sim_p['nhits'].mean():.2f}",
            f"{real_p['nhits'].mean():.2f}",
        ),
        (
            "hits per particle, quantiles 10/25/50/75/90 %",
            _q(sim_p["nhits"], "{:.0f}"),
            _q(real_p["nhits"], "{:.0f}"),
        ),
        ("p_T [GeV], quantiles 10/25/50/75/90 %", _q(sim_p["pt"]), _q(real_p["pt"])),
        ("η, quantiles 10/25/50/75/90 %", _q(sim_p["eta"]), _q(real_p["eta"])),
        (
            "vertex r [mm], quantiles 10/25/50/75/90 %",
            _q(sim_p["vertex_r"], "{:.1f}"),
            _q(real_p["vertex_r"], "{:.1f}"),
        ),
        (
            "share of (particle, layer) pairs with >= 2 hits",
            f"{stats.double_hit_fraction.mean():.3f}",
            REAL_FACTS["share of (particle, layer) pairs with >= 2 hits"],
        ),
    ]
    rows.append(
        (
            "hits per volume (%) " + "/".join(map(str, VOLUMES)),
            "/".join(f"{stats[f'vol{v}_share'].mean():.0f}" for v in VOLUMES),
            "/".join(str(REAL_VOLUME[v]) for v in VOLUMES),
        )
    )
    noise_vol = pd.concat(
        [e.hits.loc[(e.truth.particle_id == 0).to_numpy(), "volume_id"] for e in evs]
    )
    share = noise_vol.value_counts(normalize=True) * 100
    rows.append(
        (
            "noise hits per volume (%) " + "/".join(map(str, VOLUMES)),
            "/".join(f"{share.get(v, 0):.0f}" for v in VOLUMES),
            "/".join(str(REAL_NOISE_VOLUME[v]) for v in VOLUMES),
        )
    )
    cells = []
    for e in evs:
        n = e.cells.groupby("hit_id").size().reindex(e.hits.hit_id).to_numpy()
        q = e.cells.groupby("hit_id")["value"].sum().reindex(e.hits.hit_id).to_numpy()
        cells.append(pd.DataFrame({"vol": e.hits.volume_id.to_numpy(), "n": n, "q": q}))
    cells = pd.concat(cells)
    for name, vols, fmt in (
        ("pixel barrel (mean / median)", (8,), "mm"),
        ("pixel endcaps (mean / median)", (7, 9), "mm"),
        ("short strips (mean)", (12, 13, 14), "m"),
        ("long strips (mean)", (16, 17, 18), "m"),
    ):
        n = cells.loc[cells.vol.isin(vols), "n"]
        sim = f"{n.mean():.2f} / {n.median():.0f}" if fmt == "mm" else f"{n.mean():.2f}"
        rows.append((f"cells/hit {name}", sim, REAL_FACTS[f"cells/hit {name}"]))
    rows.append(
        (
            "pixel charge per hit (mean)",
            f"{cells.loc[cells.vol.isin((7, 8, 9)), 'q'].mean():.3f}",
            REAL_FACTS["pixel charge per hit (mean)"],
        )
    )
    return rows


def roughness_rows(
    n_events: int = 10, n_score: int = 5, seed: int = 0
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Roughness rows ``(bin, x-y sim, x-y real, ratio, r-z sim, r-z real, ratio, particles)`` and
    score rows ``(method, sim mean ± std, real)`` on 5 %-track μ = 200 events."""
    evs = [
        simulate_event(
            event_seed(seed + 1, i), 200.0, track_fraction=ROUGH_TRACK_FRACTION, event_id=i
        )
        for i in range(n_events)
    ]
    table = roughness_table(pd.concat([track_residuals(e) for e in evs]))
    rows = []
    for label, *_ in ROUGHNESS_BINS:
        sx, sz, n = table[label]
        rx, rz = REAL_ROUGHNESS[label]
        rows.append(
            (
                label,
                f"{sx:.3f}",
                f"{rx:.3f}",
                f"{sx / rx:.2f}",
                f"{sz:.2f}",
                f"{rz:.2f}",
                f"{sz / rz:.2f}",
                str(n),
            )
        )
    scores = []
    for method, real in REAL_SCORES.items():
        s = [score_event(e.truth, reconstruct_event(e, method)) for e in evs[:n_score]]
        scores.append((method, f"{np.mean(s):.3f} ± {np.std(s):.3f}", f"{real:.2f}"))
    return rows, scores


def direction_rows(n_events: int = 2, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """Per volume: ``(volume, median, 68 % quantile of the angle [mrad], hits)`` between the
    cell-derived direction and the true one, on 20 %-track μ = 200 events."""
    d = pd.concat(
        [
            cell_direction_error(simulate_event(event_seed(seed + 2, i), 200.0, track_fraction=0.2))
            for i in range(n_events)
        ]
    )
    return [
        (str(v), f"{1e3 * a.median():.0f}", f"{1e3 * a.quantile(0.68):.0f}", str(len(a)))
        for v, a in d.groupby("volume_id")["angle"]
    ]


VERTEX_TRACK_FRACTION = 0.25


def vertex_rows(n_events: int = 5, sigma_z: float = 50.0, seed: int = 0) -> list[tuple[str, ...]]:
    """The luminous region, rows ``(sample, particles, σ(v_z), robust σ(v_z), median |v_z|,
    collisions, σ(collision z))``: simulated events (``VERTEX_TRACK_FRACTION`` of the tracks,
    pooled) at the native setting and at ``sigma_z`` mm, the real particle list of event 1000 and
    the shipped real sample (collisions: TrackML's ``particle_id >> 52``; for simulated events the
    simulator's own, none at the native setting where every particle keeps its real vertex)."""
    from cgnn_jax.data import real_sample

    def row(name: str, particles: pd.DataFrame, coll_z: np.ndarray | None, n_coll: str) -> tuple:
        v = vertex_spread(particles)
        return (
            name,
            f"{v['particles']:,}",
            f"{v['sigma_z']:.1f}",
            f"{v['robust_sigma_z']:.1f}",
            f"{v['median_abs_vz']:.1f}",
            n_coll,
            "—" if coll_z is None else f"{coll_z.std():.1f}",
        )

    rows = []
    for sigma in (None, sigma_z):
        evs = [
            simulate_event(
                event_seed(seed + 3, i),
                200.0,
                track_fraction=VERTEX_TRACK_FRACTION,
                vertex_sigma_z=sigma,
            )
            for i in range(n_events)
        ]
        parts = pd.concat([e.particles for e in evs], ignore_index=True)
        coll = None
        if sigma is not None:  # the same particles as the events' (the first draws of a seed)
            coll = np.concatenate(
                [
                    sample_particles(event_seed(seed + 3, i), 200.0, sigma).collision_vertex[:, 2]
                    for i in range(n_events)
                ]
            )
        label = "native" if sigma is None else f"vertex_sigma_z={sigma:g} mm"
        rows.append(
            row(
                f"simulated, {label} ({n_events} events)",
                parts,
                coll,
                "—" if coll is None else f"{len(coll) / n_events:.0f} per event",
            )
        )
    for name, parts in (
        ("real particle list, event000001000", real_particles()),
        ("real sample (cgnn_jax/data/real), event000000002", real_sample().particles),
    ):
        z = collision_vertices_z(parts)
        rows.append(row(name, parts, z, str(len(z))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--rough_events", type=int, default=10)
    ap.add_argument("--score_events", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vertex_events", type=int, default=5)
    ap.add_argument("--vertex_sigma_z", type=float, default=50.0)
    args = ap.parse_args()
    if min(args.events, args.rough_events, args.score_events, args.vertex_events) < 1:
        raise SystemExit(
            "--events, --rough_events, --score_events and --vertex_events must be >= 1"
        )
    if not 0 <= args.vertex_sigma_z < float("inf"):
        raise SystemExit(f"--vertex_sigma_z must be a length >= 0 (mm), got {args.vertex_sigma_z}")
    rows = fidelity_table(args.events, args.seed)
    print(f"| quantity | simulated (μ = 200, {args.events} events) | real TrackML |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")

    rough, scores = roughness_rows(args.rough_events, args.score_events, args.seed)
    print(
        f"\nTrack roughness, 5 %-track μ = 200 events (simulated: {args.rough_events} events "
        "pooled; real: one event), median over particles with >= 5 hits of the median residual "
        "(mm):\n"
    )
    print("| bin | x–y sim | x–y real | sim/real | r–z sim | r–z real | sim/real | sim particles |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rough:
        print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    print(f"\nBaselines (default eps) on the 5 %-track events ({args.score_events} simulated):\n")
    print("| method | TrackML score sim | real |")
    print("| --- | --- | --- |")
    for r in scores:
        print("| " + " | ".join(r) + " |")
    print("\nCell-derived hit direction vs the true direction (simulated, angle in mrad):\n")
    print("| volume | median | 68 % | hits |")
    print("| --- | --- | --- | --- |")
    for r in direction_rows(seed=args.seed):
        print("| " + " | ".join(r) + " |")
    print(
        "\nLuminous region: production z of the particles with hits (prompt: vertex within "
        "1 mm of the beam; robust σ = 1.4826 MAD) and of the collisions (mm):\n"
    )
    print(
        "| sample | particles | σ(v_z) prompt | robust σ(v_z) | median \\|v_z\\| | collisions "
        "| σ(collision z) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in vertex_rows(args.vertex_events, args.vertex_sigma_z, args.seed):
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
