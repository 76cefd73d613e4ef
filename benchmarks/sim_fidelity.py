r"""Fidelity of the simulator: simulated μ = 200 events next to the real TrackML event.

    python benchmarks/sim_fidelity.py [--events=5] [--seed=0]

"Real" columns: the shipped real particle list of TrackML event 1000 (p_T, η, vertex, nhits) and the
facts measured on real events listed in the project's shared inputs. Prints a markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from cgnn_jax.sim import simulate_event
from cgnn_jax.sim.dataset import event_seed
from cgnn_jax.sim.particles import real_particles
from cgnn_jax.sim.stats import QUANTILES, VOLUMES, event_stats, particle_distributions

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = fidelity_table(args.events, args.seed)
    print(f"| quantity | simulated (μ = 200, {args.events} events) | real TrackML |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
