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
import io
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from cgnn_jax.metrics.edges import consecutive_pairs

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
    chunk: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`candidates` of hits given as arrays: module ``keys [n]`` (:func:`module_keys`) and
    positions ``pos [n, 3]`` (mm)."""
    if window_margin is not None and (window_margin < 0 or floor < 0):
        raise ValueError(f"window_margin and floor must be >= 0, got {window_margin}, {floor}")
    mk = np.asarray(keys, np.int64)
    h = _position_arrays(pos)
    if len(h["x"]) != len(mk):
        raise ValueError(f"{len(mk)} module keys for {len(h['x'])} hit positions")
    order = np.argsort(mk, kind="stable")
    umod, start, cnt = np.unique(mk[order], return_index=True, return_counts=True)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(umod) == 0 or module_map.n_pairs == 0:
        return empty
    ia = np.clip(np.searchsorted(umod, module_map.module_a), 0, len(umod) - 1)
    ib = np.clip(np.searchsorted(umod, module_map.module_b), 0, len(umod) - 1)
    on = np.flatnonzero((umod[ia] == module_map.module_a) & (umod[ib] == module_map.module_b))
    if len(on) == 0:
        return empty
    ia, ib = ia[on], ib[on]
    prod = cnt[ia] * cnt[ib]
    if window_margin is not None:
        wlo, whi = _windows(module_map, window_margin, floor)
        wlo, whi = wlo[on], whi[on]
    # chunks of module pairs holding about `chunk` hit pairs each
    ends = np.cumsum(prod)
    bounds = np.searchsorted(ends, np.arange(chunk, ends[-1], chunk), side="right")
    bounds = np.unique(np.concatenate([[0], bounds, [len(on)]]))
    sa, sb, nb_all = start[ia], start[ib], cnt[ib]
    out_s, out_t = [], []
    for c0, c1 in itertools.pairwise(bounds.tolist()):
        p = prod[c0:c1]
        rep = np.repeat(np.arange(c0, c1), p)
        first = np.repeat(np.cumsum(p) - p, p)
        off = np.arange(len(rep), dtype=np.int64) - first
        nb = nb_all[rep]
        s = order[sa[rep] + off // nb]
        t = order[sb[rep] + off % nb]
        keep = s != t
        s, t, rep = s[keep], t[keep], rep[keep]
        if window_margin is not None:
            for q in range(len(QUANTITIES)):  # cut quantity by quantity on the survivors
                v = _quantity(h, q, s, t)
                keep = (v >= wlo[rep, q]) & (v <= whi[rep, q])
                s, t, rep = s[keep], t[keep], rep[keep]
        out_s.append(s)
        out_t.append(t)
    return np.concatenate(out_s), np.concatenate(out_t)
