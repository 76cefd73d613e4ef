"""Real against simulated events, input by input: the distributions the model sees, side by side
with their Kolmogorov–Smirnov distance (``benchmarks/sim_vs_real.py``).

:func:`event_samples` takes one event apart into named samples ``(group, quantity) -> values``:

* ``hits vol V``: every per-hit feature of :func:`cgnn_jax.features.hit_features` except the
  volume one-hot and ``is_barrel`` (constant within a volume), and ``dir_error``: the angle (rad)
  between the cell-derived direction and the true direction from the truth momentum;
* ``noise``: the noise hits' ``r, z, phi`` (mm, rad) and ``volume``;
* ``pairs true`` / ``pairs false``: every pair feature of :func:`cgnn_jax.features.pair_features`
  on the consecutive hits of each particle (ordered by distance from the origin) and on false
  pairs made from them, the true pair's sender with the hit nearest its receiver that is not of
  the same particle;
* ``tracks`` (and ``tracks p_T < 0.6`` / ``tracks p_T >= 0.6``, GeV): per particle with >= 5 hits
  the median residual of a Kåsa circle fit in x–y and of a line z(r) (:func:`cgnn_jax.analysis.fidelity.
  track_residuals`), and ``z0``: that line's z at r = 0 (mm);
* ``particles``: the particles with hits: ``vz``, ``vertex_r`` (mm), ``pt`` (GeV), ``eta``,
  ``nhits``.

:func:`ks_table` pools samples over events and compares them. :func:`half_phi` reduces an event as
the shipped real sample was reduced (particles whose momentum points to φ >= 0, noise hits at
φ >= 0), so that simulated events of the same kind compare with it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.stats import ks_2samp

from cgnn_jax.analysis.fidelity import track_residuals
from cgnn_jax.features.hits import FEATURE_NAMES, VOLUMES, hit_features
from cgnn_jax.features.pairs import PAIR_FEATURE_NAMES, pair_features
from cgnn_jax.io.event import Event

Samples = dict[tuple[str, str], np.ndarray]

# Constant within a volume: nothing to compare there.
_SKIP_HIT_FEATURES = {*(f"vol_{v}" for v in VOLUMES), "is_barrel"}
PT_SPLIT_GEV = 0.6
FALSE_PAIR_NEIGHBOURS = 8


def half_phi(event: Event) -> Event:
    """``event`` without the particles whose production momentum points to φ < 0 (with their
    hits) and the noise hits at φ < 0, hit ids, weights and every other column unchanged."""
    p = event.particles
    keep_p = p.loc[np.arctan2(p["py"], p["px"]) >= 0.0, "particle_id"].to_numpy()
    tr = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy()]
    pid = tr["particle_id"].to_numpy()
    phi = np.arctan2(event.hits["y"].to_numpy(), event.hits["x"].to_numpy())
    keep = np.where(pid == 0, phi >= 0.0, np.isin(pid, keep_p))
    hits = event.hits[keep].reset_index(drop=True)
    ids = hits["hit_id"].to_numpy()
    return Event(
        event_id=event.event_id,
        hits=hits,
        cells=None
        if event.cells is None
        else event.cells[event.cells["hit_id"].isin(ids)].reset_index(drop=True),
        particles=p[p["particle_id"].isin(keep_p)].reset_index(drop=True),
        truth=event.truth[event.truth["hit_id"].isin(ids)].reset_index(drop=True),
    )


def like_real_sample(seed: int, event_id: int = 0) -> Event:
    """A simulated event of the shipped real sample's kind (:mod:`cgnn_jax.data`): a μ = 200
    event at twice the sample's track fraction, its collisions spread along the beam as the
    sample's, cut to the half of the particles and noise at φ >= 0 (:func:`half_phi`)."""
    from cgnn_jax.data import REAL_SAMPLE_TRACK_FRACTION, REAL_SAMPLE_VERTEX_SIGMA_Z
    from cgnn_jax.sim import simulate_event

    event = simulate_event(
        seed,
        200.0,
        track_fraction=2 * REAL_SAMPLE_TRACK_FRACTION,
        vertex_sigma_z=REAL_SAMPLE_VERTEX_SIGMA_Z,
        event_id=event_id,
    )
    return half_phi(event)


def _track_pairs(pos: np.ndarray, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive hits of each particle, ordered by distance from the origin: ``(s, t)``."""
    sig = np.flatnonzero(pid != 0)
    order = sig[np.lexsort((np.linalg.norm(pos[sig], axis=1), pid[sig]))]
    same = pid[order[1:]] == pid[order[:-1]]
    return order[:-1][same], order[1:][same]


def _false_pairs(
    pos: np.ndarray, pid: np.ndarray, s: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each true pair ``s -> t``: ``s ->`` the hit nearest ``t`` not of ``s``'s particle."""
    k = min(FALSE_PAIR_NEIGHBOURS + 1, len(pos))
    _, nb = cKDTree(pos).query(pos[t], k=k)
    nb = nb.reshape(len(t), k)
    other = pid[nb] != pid[s][:, None]
    has = other.any(axis=1)
    first = np.argmax(other, axis=1)
    return s[has], nb[has, first[has]]


def _z0(event: Event, min_hits: int = 5) -> np.ndarray:
    """Per particle with >= ``min_hits`` hits: z at r = 0 of its line fit z(r) (mm)."""
    tr = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy()]
    pid = tr["particle_id"].to_numpy()
    sig = pid != 0
    r = np.hypot(event.hits["x"], event.hits["y"]).to_numpy(np.float64)[sig]
    z = event.hits["z"].to_numpy(np.float64)[sig]
    _, g, cnt = np.unique(pid[sig], return_inverse=True, return_counts=True)
    g = g.reshape(-1)
    n = cnt.astype(np.float64)
    mr, mz = np.bincount(g, r) / n, np.bincount(g, z) / n
    dr, dz = r - mr[g], z - mz[g]
    slope = np.bincount(g, dr * dz) / np.maximum(np.bincount(g, dr * dr), 1e-12)
    return (mz - slope * mr)[cnt >= min_hits]


def event_samples(event: Event) -> Samples:
    """The named samples of one event with hits, cells, particles and truth (module docstring)."""
    if event.truth is None or event.particles is None or event.cells is None:
        raise ValueError("event_samples needs an event with cells, particles and truth")
    out: Samples = {}
    hf = hit_features(event)
    tr = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy()]
    pid = tr["particle_id"].to_numpy()
    vol = event.hits["volume_id"].to_numpy()
    true_dir = tr[["tpx", "tpy", "tpz"]].to_numpy(np.float64)
    norm = np.linalg.norm(true_dir, axis=1)
    with_dir = (pid != 0) & hf.has_cells & (norm > 0)
    cos = np.abs(np.einsum("nj,nj->n", true_dir, hf.cell_dir)) / np.where(norm > 0, norm, 1.0)
    angle = np.arccos(np.clip(cos, 0.0, 1.0))
    for v in VOLUMES:
        m = vol == v
        if not m.any():
            continue
        for j, name in enumerate(FEATURE_NAMES):
            if name not in _SKIP_HIT_FEATURES:
                out[(f"hits vol {v}", name)] = hf.x[m, j].astype(np.float64)
        out[(f"hits vol {v}", "dir_error")] = angle[m & with_dir]

    noise = pid == 0
    x, y, z = hf.pos[noise].T
    out[("noise", "r")] = np.hypot(x, y)
    out[("noise", "z")] = z
    out[("noise", "phi")] = np.arctan2(y, x)
    out[("noise", "volume")] = vol[noise].astype(np.float64)

    s, t = _track_pairs(hf.pos, pid)
    fs, ft = _false_pairs(hf.pos, pid, s, t)
    for group, (a, b) in (("pairs true", (s, t)), ("pairs false", (fs, ft))):
        feats = pair_features(hf, a, b, threads=1)
        for j, name in enumerate(PAIR_FEATURE_NAMES):
            out[(group, name)] = feats[:, j].astype(np.float64)

    res = track_residuals(event)
    for group, m in (
        ("tracks", np.ones(len(res), bool)),
        (f"tracks p_T < {PT_SPLIT_GEV}", res["pt"].to_numpy() < PT_SPLIT_GEV),
        (f"tracks p_T >= {PT_SPLIT_GEV}", res["pt"].to_numpy() >= PT_SPLIT_GEV),
    ):
        out[(group, "residual_xy")] = res["xy"].to_numpy()[m]
        out[(group, "residual_rz")] = res["rz"].to_numpy()[m]
    out[("tracks", "z0")] = _z0(event)

    p = event.particles
    p = p[p["particle_id"].isin(np.unique(pid[pid != 0]))]
    px, py, pz = (p[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    out[("particles", "vz")] = p["vz"].to_numpy(np.float64)
    out[("particles", "vertex_r")] = np.hypot(p["vx"], p["vy"]).to_numpy(np.float64)
    out[("particles", "pt")] = pt
    out[("particles", "eta")] = np.arcsinh(pz / np.maximum(pt, 1e-12))
    out[("particles", "nhits")] = (
        pd.Series(pid[pid != 0]).value_counts().reindex(p["particle_id"]).to_numpy(np.float64)
    )
    return out


def pool(samples: Iterable[Samples]) -> Samples:
    """Concatenate the samples of several events, key by key."""
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for s in samples:
        for k, v in s.items():
            out.setdefault(k, []).append(np.asarray(v, np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def ks_table(real: Samples, sim: Samples, min_count: int = 5) -> pd.DataFrame:
    """One row per sample both sides hold (at least ``min_count`` values each), worst first.

    Columns: ``group, quantity, n_real, n_sim, real_median, sim_median, ks`` (the two-sample
    Kolmogorov–Smirnov distance), ``p_value`` and ``ks_95``: the distance two samples of these sizes
    from one distribution exceed with 5 % probability (``1.358 sqrt(1/n_real + 1/n_sim)``).
    """
    rows = []
    for key in sorted(set(real) & set(sim)):
        a, b = real[key], sim[key]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) < min_count or len(b) < min_count:
            continue
        ks = ks_2samp(a, b)
        rows.append(
            {
                "group": key[0],
                "quantity": key[1],
                "n_real": len(a),
                "n_sim": len(b),
                "real_median": float(np.median(a)),
                "sim_median": float(np.median(b)),
                "ks": float(ks.statistic),
                "p_value": float(ks.pvalue),
                "ks_95": float(1.358 * np.sqrt(1.0 / len(a) + 1.0 / len(b))),
            }
        )
    cols = ["group", "quantity", "n_real", "n_sim", "real_median", "sim_median", "ks", "p_value"]
    table = pd.DataFrame(rows, columns=[*cols, "ks_95"])
    return table.sort_values("ks", ascending=False, kind="stable").reset_index(drop=True)


def markdown(table: pd.DataFrame, top: int | None = None) -> str:
    """``table`` (of :func:`ks_table`) as a markdown table, its first ``top`` rows."""
    t = table if top is None else table.head(top)
    lines = [
        "| group | quantity | KS | KS 95 % | real median | sim median | n real | n sim |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in t.itertuples(index=False):
        lines.append(
            f"| {r.group} | {r.quantity} | {r.ks:.3f} | {r.ks_95:.3f} | {r.real_median:.4g} | "
            f"{r.sim_median:.4g} | {r.n_real} | {r.n_sim} |"
        )
    return "\n".join(lines)
