"""The module map: which detector modules a track joins in turn, and the doublets it forms there.

A *module* is one sensor, keyed by ``(volume_id, layer_id, module_id)`` of the hits table. The
*module map* holds every ordered pair of modules ``(a, b)`` that two consecutive hits of one
training particle fell in (hits ordered along the path, as
:func:`cgnn_jax.metrics.consecutive_pairs` orders them: by distance from the origin, inner hit
first), with, per pair, the min/max window of a few cheap doublet quantities of those training
doublets (:data:`QUANTITIES`) and the number of doublets seen. It is the fine end of the zone map
(:mod:`cgnn_jax.graph.zones`) and the first stage of ATLAS's GNN4ITk / Exa.TrkX pipelines.

A full event's *candidates* (:func:`candidates`) are the hit pairs ``(i, j)`` with ``i`` on a
module ``a`` and ``j`` on a module ``b`` for a mapped pair ``(a, b)``, optionally only those
whose doublet quantities lie inside the pair's window (widened by a relative margin and an
absolute floor). Enumeration is plain vectorized numpy over chunks of module pairs.

Storage: :meth:`ModuleMap.to_bytes` writes a compressed ``.npz`` (the sorted int64 pair keys as
steps, float16 windows rounded outward with the upper bound only where a pair saw two doublets or more, uint16
counts, a format version); :meth:`ModuleMap.to_json` wraps it in base64
for a checkpoint's ``learned`` metadata.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from cgnn_jax.metrics.edges import consecutive_pairs
from cgnn_jax.utils.padding import bucket_size

FORMAT_VERSION = 2
_F16_MAX = np.float32(np.finfo(np.float16).max)  # stored windows beyond it mean "no bound"
#: Doublet quantities, inner hit 1 -> outer hit 2 (mm, rad): z of the line through both hits
#: at r = 0; Δφ / Δr; Δη; the signed curvature of the circle through the origin and both hits
#: (1/mm); Δφ (wrapped to [-π, π)).
QUANTITIES = ("z0", "phi_slope", "deta", "curvature", "dphi")
#: Absolute widening of each window side (same order as :data:`QUANTITIES`) when ``floor = 1``.
DEFAULT_FLOOR = np.array([100.0, 1e-3, 0.02, 1e-3, 0.03], np.float32)
HIT_COLUMNS = ("volume_id", "layer_id", "module_id", "x", "y", "z")
_CLIP = np.float32(1e6)  # doublets with Δr ≈ 0 (same-layer pairs, endcap disks): finite values
_MIN_DR = np.float32(1e-3)  # mm


def _check_columns(df: Any, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column {missing[0]!r} (needs {', '.join(columns)})")


def module_keys(hits: Any) -> np.ndarray:
    """``[n]`` int64 module key of every hit: ``volume << 24 | layer << 16 | module``.

    Raises:
      ValueError: a column is missing or an id is outside its range (volume 0..127, layer
        0..255, module 0..65535).
    """
    _check_columns(hits, ("volume_id", "layer_id", "module_id"), "hits table")
    v = hits["volume_id"].to_numpy(np.int64)
    la = hits["layer_id"].to_numpy(np.int64)
    m = hits["module_id"].to_numpy(np.int64)
    for name, a, hi in (("volume_id", v, 127), ("layer_id", la, 255), ("module_id", m, 65535)):
        if len(a) and (a.min() < 0 or a.max() > hi):
            raise ValueError(
                f"hits table: {name} outside 0..{hi} (e.g. {int(a[(a < 0) | (a > hi)][0])})"
            )
    return (v << 24) | (la << 16) | m


def hit_module_keys(module_index: np.ndarray) -> np.ndarray:
    """``[n]`` int64 module keys (as :func:`module_keys`) of hits given by their module's row in
    the detector geometry (:attr:`cgnn_jax.features.HitFeatures.module_index`)."""
    from cgnn_jax.sim.geometry import load_geometry

    g = load_geometry()
    rows = np.asarray(module_index, np.int64)
    v, la, m = (np.asarray(a, np.int64)[rows] for a in (g.volume_id, g.layer_id, g.module_id))
    return (v << 24) | (la << 16) | m


def map_coverage(
    module_map: ModuleMap, keys: np.ndarray, pos: np.ndarray, pid: np.ndarray
) -> float:
    """Share of an event's consecutive pairs (inner -> outer along each particle) whose module
    pair is in the map; hits given by module ``keys [n]``, positions ``pos [n, 3]``, ``pid [n]``
    (0: noise). NaN without a consecutive pair."""
    a, b = consecutive_pairs(np.asarray(pos, np.float64), np.asarray(pid))
    a, b = a[: len(a) // 2], b[: len(b) // 2]  # inner -> outer, then the reverse
    if len(a) == 0:
        return float("nan")
    mk = np.asarray(keys, np.int64)
    return float(np.isin(_pair_key(mk[a], mk[b]), module_map.keys).mean())


def symmetric_edges(
    senders: np.ndarray, receivers: np.ndarray, p: np.ndarray, n: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates with ``p > threshold`` as an undirected graph in both directions.

    A hit pair that is a candidate in both directions keeps its larger ``p``.

    Returns:
      ``(senders [2U], receivers [2U], p [2U])``: the ``U`` distinct pairs ``(lo, hi)`` (sorted
      by ``lo * n + hi``), then the same pairs reversed.
    """
    keep = np.asarray(p) > threshold
    s, r, q = np.asarray(senders)[keep], np.asarray(receivers)[keep], np.asarray(p)[keep]
    lo, hi = np.minimum(s, r).astype(np.int64), np.maximum(s, r).astype(np.int64)
    key = lo * np.int64(n) + hi
    order = np.argsort(key, kind="stable")
    key, q, lo, hi = key[order], q[order], lo[order], hi[order]
    if len(key):
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        q = np.maximum.reduceat(q, starts)
        lo, hi = lo[starts], hi[starts]
    q = q.astype(np.float32)
    return np.concatenate([lo, hi]), np.concatenate([hi, lo]), np.concatenate([q, q])


def _hit_arrays(hits: Any) -> dict[str, np.ndarray]:
    """Per-hit float32 ``x, y, r, phi, z, eta`` of a hits table."""
    _check_columns(hits, HIT_COLUMNS, "hits table")
    return _position_arrays(hits[["x", "y", "z"]].to_numpy(np.float64))


def _position_arrays(pos: np.ndarray) -> dict[str, np.ndarray]:
    """Per-hit float32 ``x, y, r, phi, z, eta`` of positions ``pos [n, 3]`` (mm)."""
    pos = np.asarray(pos, np.float64).reshape(-1, 3)
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    r = np.hypot(x, y)
    eta = np.arcsinh(z / np.maximum(r, 1e-6))
    f = np.float32
    return {
        "x": x.astype(f),
        "y": y.astype(f),
        "r": r.astype(f),
        "phi": np.arctan2(y, x).astype(f),
        "z": z.astype(f),
        "eta": eta.astype(f),
    }


def _quantity(h: dict[str, np.ndarray], q: int, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[e]`` float32 doublet quantity ``QUANTITIES[q]`` of the pairs ``s -> t``."""
    name = QUANTITIES[q]
    if name == "dphi" or name == "phi_slope":
        d = h["phi"][t] - h["phi"][s]
        d = (d + np.float32(np.pi)) % np.float32(2 * np.pi) - np.float32(np.pi)
        if name == "dphi":
            return d
        dr = h["r"][t] - h["r"][s]
        dr = np.where(np.abs(dr) < _MIN_DR, np.copysign(_MIN_DR, dr), dr)
        return np.clip(d / dr, -_CLIP, _CLIP)
    if name == "z0":
        r1, z1 = h["r"][s], h["z"][s]
        dr = h["r"][t] - r1
        dr = np.where(np.abs(dr) < _MIN_DR, np.copysign(_MIN_DR, dr), dr)
        return np.clip(z1 - r1 * (h["z"][t] - z1) / dr, -_CLIP, _CLIP)
    if name == "deta":
        return h["eta"][t] - h["eta"][s]
    # curvature of the circle through (0, 0), p1, p2: 2 (p1 x p2) / (|p1| |p2| |p1 - p2|)
    x1, y1, x2, y2 = h["x"][s], h["y"][s], h["x"][t], h["y"][t]
    den = h["r"][s] * h["r"][t] * np.hypot(x2 - x1, y2 - y1)
    return np.clip(
        np.float32(2) * (x1 * y2 - x2 * y1) / np.maximum(den, np.float32(1e-6)), -_CLIP, _CLIP
    )


def doublet_quantities(hits: Any, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """``[e, len(QUANTITIES)]`` float32 doublet quantities of the pairs ``senders -> receivers``
    (row indices of ``hits``)."""
    h = _hit_arrays(hits)
    s, t = np.asarray(senders, np.int64), np.asarray(receivers, np.int64)
    return np.stack([_quantity(h, q, s, t) for q in range(len(QUANTITIES))], 1)


def _pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.asarray(a, np.int64) << 32) | np.asarray(b, np.int64)


@dataclasses.dataclass(frozen=True)
class ModuleMap:
    """Ordered module pairs and their doublet windows.

    Attributes:
      keys: ``[P]`` int64, sorted and unique: ``module_a << 32 | module_b`` (module keys of
        :func:`module_keys`; ``a`` the inner module along the path).
      lo, hi: ``[P, len(QUANTITIES)]`` float32 min and max of each doublet quantity.
      count: ``[P]`` uint32 training doublets seen in the pair.
    """

    keys: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    count: np.ndarray

    def __post_init__(self) -> None:
        p, q = len(self.keys), len(QUANTITIES)
        if self.lo.shape != (p, q) or self.hi.shape != (p, q) or self.count.shape != (p,):
            raise ValueError(
                f"module map: keys [{p}] need lo/hi [{p}, {q}] and count [{p}], got "
                f"{self.lo.shape}, {self.hi.shape}, {self.count.shape}"
            )
        if p > 1 and not np.all(self.keys[1:] > self.keys[:-1]):
            raise ValueError("module map: keys must be sorted and unique")

    @property
    def n_pairs(self) -> int:
        return len(self.keys)

    @property
    def module_a(self) -> np.ndarray:
        return self.keys >> 32

    @property
    def module_b(self) -> np.ndarray:
        return self.keys & np.int64(0xFFFFFFFF)

    @classmethod
    def from_doublets(cls, keys: np.ndarray, values: np.ndarray) -> ModuleMap:
        """The map of doublets with pair ``keys [e]`` and quantities ``values [e, Q]``."""
        keys = np.asarray(keys, np.int64)
        values = np.asarray(values, np.float32).reshape(len(keys), len(QUANTITIES))
        return _reduce(keys, values, values, np.ones(len(keys), np.uint32))

    def merge(self, other: ModuleMap) -> ModuleMap:
        """The map of both maps' training doublets (union of pairs, widest windows)."""
        return _reduce(
            np.concatenate([self.keys, other.keys]),
            np.concatenate([self.lo, other.lo]),
            np.concatenate([self.hi, other.hi]),
            np.concatenate([self.count, other.count]),
        )

    def to_bytes(self) -> bytes:
        """A compressed ``.npz`` of the map (with its format version): the windows in float16,
        rounded outward (a stored window holds the exact one; a bound beyond float16's range
        is stored as no bound), the counts clipped to 65535."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            format_version=np.array(FORMAT_VERSION, np.int64),
            quantities=np.array(QUANTITIES),
            key_steps=np.diff(self.keys, prepend=np.int64(0)),  # small steps compress well
            lo=_outward_f16(self.lo, -1),
            hi_seen_twice=_outward_f16(self.hi[self.count > 1], +1),  # hi == lo when seen once
            count=np.minimum(self.count, 65535).astype(np.uint16),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModuleMap:
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            version = int(z["format_version"])
        except Exception as e:  # any unreadable blob: one clear line
            raise ValueError(f"module map: not a module-map npz ({type(e).__name__}: {e})") from e
        if version != FORMAT_VERSION:
            raise ValueError(f"module map: format version {version}, expected {FORMAT_VERSION}")
        if tuple(str(q) for q in z["quantities"]) != QUANTITIES:
            raise ValueError(f"module map: quantities {list(z['quantities'])} != {QUANTITIES}")
        count = z["count"].astype(np.uint32)
        lo = _from_f16(z["lo"])
        twice = count > 1
        if int(twice.sum()) != len(z["hi_seen_twice"]):
            raise ValueError("module map: the windows and the counts disagree")
        # a pair seen once stores lo only (lo == hi): its upper bound, one float16 step above
        with np.errstate(over="ignore"):
            hi = _from_f16(np.nextafter(z["lo"], np.float16(np.inf)))
        hi[twice] = _from_f16(z["hi_seen_twice"])
        return cls(np.cumsum(z["key_steps"].astype(np.int64)), lo, hi, count)

    def to_json(self) -> dict:
        """A JSON-able dict (for a checkpoint's ``learned`` metadata)."""
        return {
            "format_version": FORMAT_VERSION,
            "npz_base64": base64.b64encode(self.to_bytes()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, d: dict) -> ModuleMap:
        if int(d.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError(
                f"module map: format version {d.get('format_version')}, expected {FORMAT_VERSION}"
            )
        return cls.from_bytes(base64.b64decode(d["npz_base64"]))

    def size_mb(self) -> float:
        """Size of :meth:`to_bytes` in MB (10^6 bytes)."""
        return len(self.to_bytes()) / 1e6


def _outward_f16(v: np.ndarray, direction: int) -> np.ndarray:
    """``v`` in float16, rounded toward ``direction`` (-1: down, +1: up) so that the float16
    bound holds the float32 one. A value beyond float16's range on the outer side becomes ±inf
    (no bound); on the inner side (a lower bound above the range, an upper one below it), the
    largest float16 of that sign, which still holds it."""
    v = np.asarray(v, np.float32)
    with np.errstate(over="ignore"):
        h = v.astype(np.float16)
    hf = h.astype(np.float32)
    wrong = np.isfinite(hf) & ((hf > v) if direction < 0 else (hf < v))
    with np.errstate(over="ignore"):
        h = np.where(wrong, np.nextafter(h, np.float16(direction * np.inf)), h)
    inner = np.float16(-direction * np.inf)
    return np.where(h == inner, np.float16(-direction * _F16_MAX), h).astype(np.float16)


def _from_f16(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, np.float16).astype(np.float32)


def _reduce(keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, count: np.ndarray) -> ModuleMap:
    """Group rows by key: min of ``lo``, max of ``hi``, sum of ``count``."""
    if len(keys) == 0:
        q = len(QUANTITIES)
        return ModuleMap(
            np.zeros(0, np.int64), np.zeros((0, q), np.float32), np.zeros((0, q), np.float32),
            np.zeros(0, np.uint32),
        )  # fmt: skip
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    return ModuleMap(
        k[starts],
        np.minimum.reduceat(lo[order], starts, axis=0).astype(np.float32),
        np.maximum.reduceat(hi[order], starts, axis=0).astype(np.float32),
        np.add.reduceat(count[order].astype(np.uint64), starts).astype(np.uint32),
    )


def event_truth(event: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(particle_id [n], weight [n])`` of an event's hits, in hit row order.

    Raises:
      ValueError: the event has no truth, or its truth lacks a column or a hit.
    """
    if event.truth is None:
        raise ValueError(f"event {event.event_id}: no truth (a module map needs particle ids)")
    _check_columns(event.truth, ("hit_id", "particle_id", "weight"), "truth table")
    _check_columns(event.hits, ("hit_id",), "hits table")
    tr = event.hits[["hit_id"]].merge(event.truth, on="hit_id", how="left")
    if tr["particle_id"].isna().any():
        raise ValueError(f"event {event.event_id}: a hit has no truth row")
    return tr["particle_id"].to_numpy(np.int64), tr["weight"].to_numpy(np.float64)


def path_pairs(hits: Any, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive hit pairs of every particle, inner hit first (one direction only)."""
    _check_columns(hits, ("x", "y", "z"), "hits table")
    pos = hits[["x", "y", "z"]].to_numpy(np.float64)
    a, b = consecutive_pairs(pos, np.asarray(pid))
    half = len(a) // 2  # consecutive_pairs returns (inner, outer) pairs, then the reverse
    return a[:half], b[:half]


def event_module_map(event: Any) -> ModuleMap:
    """The module map of one event with truth (:func:`build_module_map` of one event)."""
    pid, _ = event_truth(event)
    mk = module_keys(event.hits)
    s, t = path_pairs(event.hits, pid)
    return ModuleMap.from_doublets(_pair_key(mk[s], mk[t]), doublet_quantities(event.hits, s, t))


def build_module_map(events: Iterable[Any]) -> ModuleMap:
    """The module map of training events (:class:`cgnn_jax.io.Event` with hits and truth).

    Raises:
      ValueError: no event, or an event without truth or a needed column.
    """
    out = None
    for ev in events:
        m = event_module_map(ev)
        out = m if out is None else out.merge(m)
    if out is None:
        raise ValueError("a module map needs at least one training event")
    return out


def _windows(
    module_map: ModuleMap, window_margin: float, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    w = module_map.hi - module_map.lo
    pad = np.float32(window_margin) * w + np.float32(floor) * DEFAULT_FLOOR
    return module_map.lo - pad, module_map.hi + pad


def candidates(
    event_hits: Any,
    module_map: ModuleMap,
    window_margin: float | None = 0.1,
    floor: float = 1.0,
    chunk: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """A full event's candidate edges from the module map: ``(senders [E], receivers [E])``.

    Every pair of distinct hits ``i`` on module ``a`` and ``j`` on module ``b`` for a mapped pair
    ``(a, b)``, directed ``i -> j`` (inner to outer as in the map). With ``window_margin`` not
    None, only pairs whose doublet quantities lie in the pair's window widened on each side by
    ``window_margin`` times its width plus ``floor`` times :data:`DEFAULT_FLOOR`.

    Args:
      event_hits: the hits table (``volume_id, layer_id, module_id, x, y, z``); row indices are
        the returned hit indices.
      module_map: the map.
      window_margin: relative widening of the windows; None: no window cut.
      floor: scale of the absolute widening :data:`DEFAULT_FLOOR`.
      chunk: cross-product pairs enumerated at once (bounds the memory).

    Returns:
      int64 ``senders, receivers`` in the order of the map's module pairs; a hit pair may
      appear in both directions when both module orders are mapped.

    Raises:
      ValueError: a missing column or a module id out of range.
    """
    _check_columns(event_hits, HIT_COLUMNS, "hits table")
    return candidate_pairs(
        module_keys(event_hits),
        event_hits[["x", "y", "z"]].to_numpy(np.float64),
        module_map,
        window_margin,
        floor,
        chunk,
    )


def candidate_pairs(
    keys: np.ndarray,
    pos: np.ndarray,
    module_map: ModuleMap,
    window_margin: float | None = 0.1,
    floor: float = 1.0,
    chunk: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`candidates` of hits given as arrays: module ``keys [n]`` (:func:`module_keys`) and
    positions ``pos [n, 3]`` (mm)."""
    if window_margin is not None and (window_margin < 0 or floor < 0):
        raise ValueError(f"window_margin and floor must be >= 0, got {window_margin}, {floor}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    mk = np.asarray(keys, np.int64)
    h = _position_arrays(pos)
    if len(h["x"]) != len(mk):
        raise ValueError(f"{len(mk)} module keys for {len(h['x'])} hit positions")
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(mk) == 0 or module_map.n_pairs == 0:
        return empty
    # hits by module, then η, then row: a hit's partners in a Δη window are one slice of a module
    order = np.lexsort((h["eta"], mk))
    g = {k: v[order] for k, v in h.items()}
    umod, start, cnt = np.unique(mk[order], return_index=True, return_counts=True)
    ia = np.clip(np.searchsorted(umod, module_map.module_a), 0, len(umod) - 1)
    ib = np.clip(np.searchsorted(umod, module_map.module_b), 0, len(umod) - 1)
    on = np.flatnonzero((umod[ia] == module_map.module_a) & (umod[ib] == module_map.module_b))
    if len(on) == 0:
        return empty
    start, cnt = start.astype(np.int32), cnt.astype(np.int32)
    a_start, a_cnt, b_start, b_cnt = start[ia[on]], cnt[ia[on]], start[ib[on]], cnt[ib[on]]
    pairs = np.arange(len(on), dtype=np.int32)
    if window_margin is None:  # every pair: each of a's hits with all of b's
        p, i = _expand(pairs, a_start, a_cnt)
        return _every_pair(order, i, b_start[p], b_cnt[p], chunk)
    wlo, whi = _windows(module_map, window_margin, floor)
    jit_bounds, jit_codes, device = _kernels()
    size = 1 << (chunk - 1).bit_length()
    steps = max(8, int(cnt.max()).bit_length())  # binary-search steps within a module
    eta = g["eta"]
    eta_pad = np.zeros(bucket_size(len(eta)), np.float32)
    eta_pad[: len(eta)] = eta
    eta_pad = device(eta_pad)
    dlo, dhi = wlo[on, _DETA], whi[on, _DETA]

    def bounds(s0: np.ndarray, n0: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """``[2, m]`` first and end positions of the keys in ``[lo, hi]`` (widened) in each
        module slice ``s0 : s0 + n0`` of the η-sorted hits."""
        calls = []
        for c in range(0, len(s0), size):
            args = [np.zeros(size, a.dtype) for a in (s0, n0, lo, hi)]
            for pad, a in zip(args, (s0, n0, lo, hi), strict=True):
                pad[: len(a[c : c + size])] = a[c : c + size]
            calls.append(jit_bounds(eta_pad, *args, steps))
        out = np.concatenate([np.asarray(x) for x in calls], axis=1) if calls else None
        return np.zeros((2, 0), np.int32) if out is None else out[:, : len(s0)]

    # a's hits that may reach b's η extent, then b's hits in each one's Δη window
    a0, a1 = bounds(a_start, a_cnt, eta[b_start] - dhi, eta[b_start + b_cnt - 1] - dlo)
    p, i = _expand(pairs, a0, np.maximum(a1 - a0, 0))
    j0, j1 = bounds(b_start[p], b_cnt[p], eta[i] + dlo[p], eta[i] + dhi[p])
    nz = np.flatnonzero(j1 > j0)
    w = device(np.concatenate([wlo.T, whi.T]))
    tab = np.zeros((6, bucket_size(len(eta))), np.float32)
    for k, name in enumerate(_TAB):
        tab[k, : len(eta)] = g[name]
    tab = device(tab)
    rows = (on[p[nz]].astype(np.int32), i[nz], j0[nz], (j1 - j0)[nz])

    def check(s: np.ndarray, t: np.ndarray, rep: np.ndarray) -> np.ndarray:
        return _in_windows(g, s, t, wlo[rep], whi[rep])

    return _cut_rows(order, rows, size, lambda s, t, rep: jit_codes(tab, w, s, t, rep), check)


_DETA = QUANTITIES.index("deta")
_TAB = ("x", "y", "r", "phi", "z", "eta")  # rows of the kernels' hit table
_ETA_TOL = (1e-4, 1e-5)  # a Δη slice's widening: absolute, relative to the bound (rounding)
_EDGE_TOL = 1e-5  # the kernel's values within this relative distance of an edge: checked again


def _expand(ids: np.ndarray, first: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids repeated count times, first + 0 .. count - 1)`` as int32."""
    count = np.asarray(count, np.int64)
    rep = np.repeat(ids, count)
    local = np.arange(len(rep), dtype=np.int32) - np.repeat(
        (np.cumsum(count) - count).astype(np.int32), count
    )
    return rep, (np.repeat(first.astype(np.int32), count) + local).astype(np.int32)


def _row_chunks(n: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Consecutive row ranges holding at most ``size`` items each (a larger row alone)."""
    if len(n) == 0:
        return []
    ends = np.cumsum(n, dtype=np.int64)
    bounds = np.searchsorted(ends, np.arange(size, ends[-1], size), side="right")
    bounds = np.unique(np.concatenate([[0], bounds, [len(n)]]))
    return list(itertools.pairwise(bounds.tolist()))


def _every_pair(
    order: np.ndarray, i: np.ndarray, j0: np.ndarray, nj: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``i`` with every ``j0 .. j0 + nj - 1`` but itself, as row indices via ``order``."""
    out_s, out_t = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c0, c1 in _row_chunks(nj, chunk):
        s, t = _expand(i[c0:c1], j0[c0:c1], nj[c0:c1])
        keep = s != t
        out_s.append(order[s[keep]])
        out_t.append(order[t[keep]])
    return np.concatenate(out_s), np.concatenate(out_t)


def _in_windows(
    g: dict[str, np.ndarray], s: np.ndarray, t: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Whether each pair ``s -> t`` (distinct hits) has every quantity in ``[lo, hi]``: the
    reference test, numpy float32 as :func:`doublet_quantities` computes them."""
    keep = s != t
    for q in range(len(QUANTITIES)):
        v = _quantity(g, q, s, t)
        keep &= (v >= lo[:, q]) & (v <= hi[:, q])
    return keep


def _cut_rows(
    order: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    size: int,
    codes: Any,
    check: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of rows ``(pair, i, j0, nj)`` (hit ``i`` with ``j0 .. j0 + nj - 1``) that pass
    the windows: ``codes`` (the jitted test, 0 out, 1 in, 2 too close to an edge to tell) on
    chunks of ``size`` padded pairs, ``check`` (the reference test) on the undecided ones."""
    rep_all, i_all, j0_all, nj_all = rows
    out_s, out_t = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    pending: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []

    def finish(code_dev: Any, s: np.ndarray, t: np.ndarray, rep: np.ndarray) -> None:
        code = np.asarray(code_dev)[: len(s)]
        keep = code == 1
        tell = np.flatnonzero(code == 2)
        if len(tell):
            keep[tell] = check(s[tell], t[tell], rep[tell])
        k = np.flatnonzero(keep)
        out_s.append(order[s[k]])
        out_t.append(order[t[k]])

    for c0, c1 in _row_chunks(nj_all, size):
        rep, t = _expand(rep_all[c0:c1], j0_all[c0:c1], nj_all[c0:c1])
        s = np.repeat(i_all[c0:c1], nj_all[c0:c1])
        m = 1 << max(len(s) - 1, 0).bit_length() if len(s) > size else size
        args = [np.zeros(m, np.int32) for _ in range(3)]  # padding: s == t == 0, never a pair
        for pad, a in zip(args, (s, t, rep), strict=True):
            pad[: len(a)] = a
        pending.append((codes(*args), s, t, rep))  # dispatched; runs while the next is built
        if len(pending) > 1:
            finish(*pending.pop(0))
    for item in pending:
        finish(*item)
    return np.concatenate(out_s), np.concatenate(out_t)


@functools.cache
def _kernels() -> tuple[Any, Any, Any]:
    """The jitted slice search and window test, and ``jax.device_put`` (jax imported on first
    use)."""
    import jax
    import jax.numpy as jnp

    f32 = np.float32

    def bounds(keys, start, cnt, lo, hi, steps: int):
        lo = lo - (f32(_ETA_TOL[0]) + f32(_ETA_TOL[1]) * jnp.abs(lo))
        hi = hi + (f32(_ETA_TOL[0]) + f32(_ETA_TOL[1]) * jnp.abs(hi))

        def first(q, strict: bool):
            base, n = start, cnt  # branchless lower bound in keys[start : start + cnt]
            for _ in range(steps):
                half = n // 2
                v = keys[base + half]
                go = v < q if strict else v <= q
                base, n = jnp.where(go, base + half, base), n - half
            v = keys[base]
            return base + ((n > 0) & ((v < q) if strict else (v <= q))).astype(base.dtype)

        return jnp.stack([first(lo, True), first(hi, False)])

    def codes(tab, w, s, t, rep):
        x1, y1, r1, p1, z1, e1 = (tab[k][s] for k in range(6))
        x2, y2, r2, p2, z2, e2 = (tab[k][t] for k in range(6))
        # the formulas of _quantity, in the same float32 operations where XLA allows
        dr = r2 - r1
        dr = jnp.where(jnp.abs(dr) < _MIN_DR, jnp.copysign(_MIN_DR, dr), dr)
        slope = r1 * (z2 - z1) / dr
        z0 = jnp.clip(z1 - slope, -_CLIP, _CLIP)
        a = p2 - p1 + f32(np.pi)  # numpy's float remainder by 2π, without fmod
        two_pi = f32(2 * np.pi)
        a = jnp.where(a >= two_pi, a - two_pi, jnp.where(a < 0, a + two_pi, a))
        dphi = a - f32(np.pi)
        # near ±π the two may wrap to opposite ends: such pairs are checked again
        wraps = jnp.abs(jnp.abs(dphi) - f32(np.pi)) < f32(1e-4)
        phi_slope = jnp.clip(dphi / dr, -_CLIP, _CLIP)
        deta = e2 - e1
        cross1, cross2 = x1 * y2, x2 * y1
        den = jnp.maximum(r1 * r2 * jnp.sqrt(jnp.square(x2 - x1) + jnp.square(y2 - y1)), f32(1e-6))
        curv = jnp.clip(f32(2) * (cross1 - cross2) / den, -_CLIP, _CLIP)
        # how far the numpy value may lie from these (XLA may round a step differently: FMA
        # contraction, reassociation, sqrt for hypot): bounds with a wide margin
        u, tiny = f32(_EDGE_TOL), f32(1e-9)
        value_tol = {
            "z0": (z0, u * (jnp.abs(z1) + jnp.abs(slope) + 1)),
            "phi_slope": (phi_slope, u * jnp.abs(phi_slope) + u / jnp.abs(dr)),
            "deta": (deta, u * (jnp.abs(e1) + jnp.abs(e2)) + tiny),
            "curvature": (
                curv,
                u * (f32(2) * (jnp.abs(cross1) + jnp.abs(cross2)) / den + jnp.abs(curv)) + tiny,
            ),
            "dphi": (dphi, u),
        }
        maybe = sure = s != t
        for q, name in enumerate(QUANTITIES):
            v, tol = value_tol[name]
            lo, hi = w[q][rep], w[len(QUANTITIES) + q][rep]
            maybe_q = (v >= lo - tol) & (v <= hi + tol)
            sure_q = (v >= lo + tol) & (v <= hi - tol)
            if name in ("dphi", "phi_slope"):
                maybe_q, sure_q = maybe_q | wraps, sure_q & ~wraps
            maybe, sure = maybe & maybe_q, sure & sure_q
        return jnp.where(maybe, jnp.where(sure, 1, 2), 0).astype(jnp.int8)

    return jax.jit(bounds, static_argnums=5), jax.jit(codes), jax.device_put
