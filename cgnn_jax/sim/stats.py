"""Summary statistics of an event, real or simulated (``launch/inspect.py``, fidelity table)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cgnn_jax.io.event import Event

VOLUMES = (7, 8, 9, 12, 13, 14, 16, 17, 18)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def event_stats(event: Event) -> dict:
    """Per-event figures.

    Returns a dict with ``event_id, hits, particles`` (with >= 1 hit), ``noise_fraction``,
    ``mean_hits_per_particle``, ``hits_per_particle_q{10,25,50,75,90}``, ``double_hit_fraction``
    (share of (particle, volume, layer) pairs holding two or more hits), ``vol{V}_share`` (percent of
    all hits in volume V) and ``cells_per_hit`` (if cells were read). Needs ``truth`` for the
    particle figures; without it those keys are NaN.
    """
    hits = event.hits
    out: dict = {"event_id": int(event.event_id), "hits": len(hits)}
    vol = hits["volume_id"].to_numpy()
    counts = pd.Series(vol).value_counts()
    for v in VOLUMES:
        out[f"vol{v}_share"] = 100.0 * counts.get(v, 0) / max(len(hits), 1)
    if event.truth is not None:
        tr = event.truth.set_index("hit_id").loc[hits["hit_id"].to_numpy()]
        pid = tr["particle_id"].to_numpy()
        sig = pid != 0
        out["noise_fraction"] = float(1.0 - sig.mean())
        _, nh = np.unique(pid[sig], return_counts=True)
        out["particles"] = len(nh)
        out["mean_hits_per_particle"] = float(nh.mean()) if len(nh) else float("nan")
        for q, val in zip(
            QUANTILES, np.quantile(nh, QUANTILES) if len(nh) else [np.nan] * 5, strict=True
        ):
            out[f"hits_per_particle_q{int(q * 100)}"] = float(val)
        key = pd.DataFrame({"p": pid[sig], "v": vol[sig], "l": hits["layer_id"].to_numpy()[sig]})
        pairs = key.value_counts()
        out["double_hit_fraction"] = float((pairs >= 2).mean()) if len(pairs) else float("nan")
    else:
        for k in ("noise_fraction", "particles", "mean_hits_per_particle", "double_hit_fraction"):
            out[k] = float("nan")
    if event.cells is not None:
        out["cells_per_hit"] = len(event.cells) / max(len(hits), 1)
    return out


def particle_distributions(particles: pd.DataFrame) -> dict[str, np.ndarray]:
    """p_T (GeV), η, vertex r (mm) and nhits of the particles with at least one hit."""
    p = particles[particles["nhits"] > 0]
    pt = np.hypot(p["px"].to_numpy(np.float64), p["py"].to_numpy(np.float64))
    eta = np.arcsinh(p["pz"].to_numpy(np.float64) / pt)
    rv = np.hypot(p["vx"].to_numpy(np.float64), p["vy"].to_numpy(np.float64))
    return {"pt": pt, "eta": eta, "vertex_r": rv, "nhits": p["nhits"].to_numpy()}
