"""Summary statistics of an event, real or simulated (``launch/dataset_stats.py``, fidelity table)."""

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


# Bins of the roughness table: (label, p_T lo, p_T hi, |η| lo, |η| hi), GeV and |η|.
ROUGHNESS_BINS: tuple[tuple[str, float, float, float, float], ...] = (
    ("p_T 0-0.3 GeV", 0.0, 0.3, 0.0, np.inf),
    ("p_T 0.3-0.6", 0.3, 0.6, 0.0, np.inf),
    ("p_T 0.6-1", 0.6, 1.0, 0.0, np.inf),
    ("p_T 1-2", 1.0, 2.0, 0.0, np.inf),
    ("p_T > 2", 2.0, np.inf, 0.0, np.inf),
    ("p_T > 0.6, |η| 0-1", 0.6, np.inf, 0.0, 1.0),
    ("p_T > 0.6, |η| 1-2", 0.6, np.inf, 1.0, 2.0),
    ("p_T > 0.6, |η| 2-2.6", 0.6, np.inf, 2.0, 2.6),
    ("p_T > 0.6, |η| > 2.6", 0.6, np.inf, 2.6, np.inf),
)


def track_residuals(event: Event, min_hits: int = 5) -> pd.DataFrame:
    """Per-particle roughness: median residuals of a circle fit in x–y and a line fit z(r).

    For every particle with at least ``min_hits`` hits: an algebraic (Kåsa) circle fit to all its
    hits in x–y, residual ``| |p - c| - R |``; a least-squares line ``z = a + b r``, residual
    ``| z - z_fit |``. A particle's value is the median residual over its hits (mm).

    Args:
      event: an event with ``hits``, ``truth`` and ``particles``.
      min_hits: the fewest hits a particle needs.
    Returns:
      One row per particle: ``particle_id, n_hits, pt, eta, xy, rz`` (p_T in GeV from the
      particle's production momentum, residuals in mm).
    """
    if event.truth is None or event.particles is None:
        raise ValueError("track_residuals needs an event with truth and particles")
    tr = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy()]
    pid = tr["particle_id"].to_numpy()
    sig = pid != 0
    x = event.hits["x"].to_numpy(np.float64)[sig]
    y = event.hits["y"].to_numpy(np.float64)[sig]
    z = event.hits["z"].to_numpy(np.float64)[sig]
    ids, g, cnt = np.unique(pid[sig], return_inverse=True, return_counts=True)
    keep = cnt[g] >= min_hits
    x, y, z, g = x[keep], y[keep], z[keep], g[keep]
    ids, g = np.unique(ids[g], return_inverse=True)
    n_p = len(ids)
    cols = ["particle_id", "n_hits", "pt", "eta", "xy", "rz"]
    if n_p == 0:
        return pd.DataFrame({c: np.zeros(0) for c in cols})
    # Centre the coordinates per particle for conditioning.
    n = np.bincount(g, minlength=n_p).astype(np.float64)
    mx = np.bincount(g, x, n_p) / n
    my = np.bincount(g, y, n_p) / n
    xc, yc = x - mx[g], y - my[g]
    # Kåsa: x² + y² + D x + E y + F = 0, least squares in (D, E, F).
    a = np.stack([xc, yc, np.ones_like(xc)], axis=1)  # [H, 3]
    b = -(xc * xc + yc * yc)
    ata = np.zeros((n_p, 3, 3))
    atb = np.zeros((n_p, 3))
    for i in range(3):
        atb[:, i] = np.bincount(g, a[:, i] * b, n_p)
        for j in range(i, 3):
            ata[:, i, j] = ata[:, j, i] = np.bincount(g, a[:, i] * a[:, j], n_p)
    ata += np.eye(3) * 1e-9
    sol = np.linalg.solve(ata, atb[..., None])[..., 0]
    cx, cy = -sol[:, 0] / 2, -sol[:, 1] / 2
    rad = np.sqrt(np.maximum(cx * cx + cy * cy - sol[:, 2], 0.0))
    res_xy = np.abs(np.hypot(xc - cx[g], yc - cy[g]) - rad[g])
    # Line z = a + b r.
    r = np.hypot(x, y)
    mr = np.bincount(g, r, n_p) / n
    mz = np.bincount(g, z, n_p) / n
    dr, dz = r - mr[g], z - mz[g]
    srr = np.bincount(g, dr * dr, n_p)
    slope = np.bincount(g, dr * dz, n_p) / np.maximum(srr, 1e-12)
    res_rz = np.abs(dz - slope[g] * dr)
    med = pd.DataFrame({"g": g, "xy": res_xy, "rz": res_rz}).groupby("g").median()
    parts = event.particles.set_index("particle_id").loc[ids]
    px, py, pz = (parts[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    return pd.DataFrame(
        {
            "particle_id": ids,
            "n_hits": n.astype(np.int64),
            "pt": pt,
            "eta": np.arcsinh(pz / np.maximum(pt, 1e-12)),
            "xy": med["xy"].to_numpy(),
            "rz": med["rz"].to_numpy(),
        }
    )


def roughness_table(per_particle: pd.DataFrame) -> dict[str, tuple[float, float, int]]:
    """Median residuals per bin of :data:`ROUGHNESS_BINS`.

    Args:
      per_particle: rows of :func:`track_residuals` (one event or several concatenated).
    Returns:
      ``{bin label: (median x–y residual, median r–z residual, particles)}`` (mm; NaN if empty).
    """
    pt = per_particle["pt"].to_numpy()
    aeta = np.abs(per_particle["eta"].to_numpy())
    out = {}
    for label, plo, phi_, elo, ehi in ROUGHNESS_BINS:
        m = (pt >= plo) & (pt < phi_) & (aeta >= elo) & (aeta < ehi)
        if m.any():
            out[label] = (
                float(np.median(per_particle["xy"].to_numpy()[m])),
                float(np.median(per_particle["rz"].to_numpy()[m])),
                int(m.sum()),
            )
        else:
            out[label] = (float("nan"), float("nan"), 0)
    return out


def cell_direction_error(event: Event) -> pd.DataFrame:
    """Angle between the cell-derived direction of each signal hit and its true direction.

    Uses :attr:`cgnn_jax.features.hits.HitFeatures.cell_dir` (unsigned: the angle is folded to
    ``[0, π/2]``) against the truth momentum ``tpx, tpy, tpz``.

    Returns:
      One row per signal hit with cells: ``volume_id, angle`` (radians).
    """
    from cgnn_jax.features.hits import hit_features

    if event.truth is None or event.cells is None:
        raise ValueError("cell_direction_error needs an event with truth and cells")
    f = hit_features(event)
    tr = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy()]
    t = tr[["tpx", "tpy", "tpz"]].to_numpy(np.float64)
    norm = np.linalg.norm(t, axis=1)
    ok = (tr["particle_id"].to_numpy() != 0) & f.has_cells & (norm > 0)
    t = t[ok] / norm[ok, None]
    cos = np.abs(np.einsum("nj,nj->n", t, f.cell_dir[ok]))
    return pd.DataFrame(
        {
            "volume_id": event.hits["volume_id"].to_numpy()[ok],
            "angle": np.arccos(np.clip(cos, 0.0, 1.0)),
        }
    )


PROMPT_RADIUS_MM = 1.0


def vertex_spread(particles: pd.DataFrame) -> dict[str, float]:
    """The luminous region seen in a particle list (its particles with ``nhits > 0``).

    Returns ``particles``; ``sigma_z``: the standard deviation of the production z of the prompt
    particles (vertex within ``PROMPT_RADIUS_MM`` of the beam, mm); ``robust_sigma_z``: the same
    from the median absolute deviation (``1.4826 MAD``: blind to the few displaced decays along z);
    ``median_abs_vz``: the median |v_z| of all of them (mm).
    """
    p = particles[particles["nhits"] > 0]
    vz = p["vz"].to_numpy(np.float64)
    prompt = np.hypot(p["vx"], p["vy"]).to_numpy(np.float64) < PROMPT_RADIUS_MM
    z = vz[prompt]
    if len(z) == 0:
        nan = float("nan")
        return {"particles": len(p), "sigma_z": nan, "robust_sigma_z": nan, "median_abs_vz": nan}
    return {
        "particles": len(p),
        "sigma_z": float(z.std()),
        "robust_sigma_z": float(1.4826 * np.median(np.abs(z - np.median(z)))),
        "median_abs_vz": float(np.median(np.abs(vz))),
    }


def collision_vertices_z(particles: pd.DataFrame) -> np.ndarray:
    """``[C]`` the z (mm) of each collision of a real TrackML particle list: its particles grouped
    by ``particle_id >> 52`` (TrackML's vertex number), each group's most common prompt vertex."""
    pid = particles["particle_id"].to_numpy(np.int64)
    prompt = np.hypot(particles["vx"], particles["vy"]).to_numpy(np.float64) < PROMPT_RADIUS_MM
    df = particles.loc[prompt, ["vx", "vy", "vz"]].assign(c=pid[prompt] >> 52)
    counts = df.groupby(["c", "vx", "vy", "vz"]).size().reset_index(name="n")
    best = counts.sort_values(["c", "n"], ascending=[True, False], kind="stable")
    return best.drop_duplicates("c")["vz"].to_numpy(np.float64)
