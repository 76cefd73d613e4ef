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
absolute floor). Enumeration never forms the whole cross product: each module's hits are sorted
by η, so that a hit's partners inside a pair's Δη window are one slice of the partner module,
found by a jitted binary search (widened for rounding); the other windows are tested on those
slices only by one fused, jitted kernel over fixed-size chunks (a few compilations per process).
The kernel may round a step differently from numpy, so a pair within a small band of a window
edge is decided by the numpy formulas of :func:`doublet_quantities`: the candidates are exactly
the cross-product pairs inside the windows.

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

    def select(self, keep: np.ndarray) -> ModuleMap:
        """The map of the pairs where ``keep [P]`` (bool) is True."""
        return ModuleMap(self.keys[keep], self.lo[keep], self.hi[keep], self.count[keep])

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
        """The map of :meth:`to_json`; the same blob decodes once per process (a checkpoint's
        stage 1 is rebuilt for every event it reconstructs; ~0.5 s per 20 MB map)."""
        if int(d.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError(
                f"module map: format version {d.get('format_version')}, expected {FORMAT_VERSION}"
            )
        return _decoded(d["npz_base64"])

    def size_mb(self) -> float:
        """Size of :meth:`to_bytes` in MB (10^6 bytes)."""
        return len(self.to_bytes()) / 1e6


@functools.lru_cache(maxsize=2)
def _decoded(npz_base64: str) -> ModuleMap:
    m = ModuleMap.from_bytes(base64.b64decode(npz_base64))
    for a in (m.keys, m.lo, m.hi, m.count):  # shared by every caller: read-only
        a.flags.writeable = False
    return m


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
    """The windows widened by ``window_margin`` of their width plus ``floor`` times
    :data:`DEFAULT_FLOOR` (an unbounded side stays unbounded, a zero margin adds nothing)."""
    w = module_map.hi - module_map.lo
    with np.errstate(invalid="ignore"):  # 0 × an unbounded width: no widening
        rel = np.nan_to_num(np.float32(window_margin) * w, nan=0.0, posinf=np.inf, neginf=-np.inf)
    pad = rel + np.float32(floor) * DEFAULT_FLOOR
    return module_map.lo - pad, module_map.hi + pad


def candidates(
    event_hits: Any,
    module_map: ModuleMap,
    window_margin: float | None = 0.1,
    floor: float = 1.0,
    chunk: int = 1 << 18,
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
      chunk: hit pairs tested at once by the jitted window test, rounded up to a power of two
        (bounds its memory; a new size compiles it again).

    Returns:
      int64 ``senders, receivers``, grouped by module pair in the map's order; within a pair,
      the senders by (η, row), each with its receivers by (η, row). The same input gives the
      same arrays. A hit pair may appear in both directions when both module orders are mapped.

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
    rows: bool = False,
) -> tuple[np.ndarray, ...]:
    """:func:`candidates` of hits given as arrays: module ``keys [n]`` (:func:`module_keys`) and
    positions ``pos [n, 3]`` (mm); with ``rows``, also each candidate's module pair as an int32
    row of the map (``module_map.keys``): ``(senders, receivers, rows)``."""
    if window_margin is not None and (window_margin < 0 or floor < 0):
        raise ValueError(f"window_margin and floor must be >= 0, got {window_margin}, {floor}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    mk = np.asarray(keys, np.int64)
    h = _position_arrays(pos)
    if len(h["x"]) != len(mk):
        raise ValueError(f"{len(mk)} module keys for {len(h['x'])} hit positions")
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if rows:
        empty = (*empty, np.zeros(0, np.int32))
    if len(mk) == 0 or module_map.n_pairs == 0:
        return empty
    # hits by module, then η, then row: a hit's partners in a Δη window are one slice of a module
    order = np.lexsort((h["eta"], mk))
    umod, start, cnt = np.unique(mk[order], return_index=True, return_counts=True)
    ma, mb = module_map.module_a, module_map.module_b
    ia = np.clip(np.searchsorted(umod, ma), 0, len(umod) - 1)
    ib = np.clip(np.searchsorted(umod, mb), 0, len(umod) - 1)
    on = np.flatnonzero((umod[ia] == ma) & (umod[ib] == mb))
    if len(on) == 0:
        return empty
    start, cnt = start.astype(np.int32), cnt.astype(np.int32)
    mods = _Modules(order, start, cnt, on.astype(np.int32), ia[on], ib[on])
    if window_margin is None:  # every pair: each of a's hits with all of b's
        p, i = _expand(np.arange(len(on), dtype=np.int32), mods.a_start, mods.a_cnt)
        out = _every_pair(order, i, mods.b_start[p], mods.b_cnt[p], chunk, mods.on[p])
    else:
        wlo, whi = _windows(module_map, window_margin, floor)
        out = _windowed_pairs({k: v[order] for k, v in h.items()}, mods, wlo, whi, chunk)
    return out if rows else out[:2]


_DETA = QUANTITIES.index("deta")
_TAB = ("x", "y", "r", "phi", "z", "eta")  # rows of the kernels' hit table, then the η key
_ETA_TOL = (1e-4, 1e-5)  # a Δη slice's widening: absolute, relative to the bound (rounding)
_EDGE_TOL = 1e-5  # the kernel's values within this relative distance of an edge: checked again
_LANES = 8  # partners of one hit the window kernel tests together


@dataclasses.dataclass
class _Modules:
    """An event's hits by module (``order``: sorted position -> row; module ``m`` holds
    positions ``start[m] : start[m] + cnt[m]``) and its mapped module pairs (``on``: map rows,
    ``ia, ib``: their modules)."""

    order: np.ndarray
    start: np.ndarray
    cnt: np.ndarray
    on: np.ndarray
    ia: np.ndarray
    ib: np.ndarray

    def __post_init__(self) -> None:
        self.a_start, self.a_cnt = self.start[self.ia], self.cnt[self.ia]
        self.b_start, self.b_cnt = self.start[self.ib], self.cnt[self.ib]


def _windowed_pairs(
    g: dict[str, np.ndarray], mods: _Modules, wlo: np.ndarray, whi: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates inside the windows ``wlo, whi [P, Q]`` of the hits ``g`` (float32 arrays
    in sorted order): Δη slices by a jitted binary search, then the jitted window test on them
    in padded chunks of ``chunk`` (rounded up to a power of two) hit pairs."""
    jit = _kernels()
    size = 1 << (chunk - 1).bit_length()
    steps = np.int32(int(mods.cnt.max()).bit_length())  # binary-search halvings in a module
    n, n_map = len(mods.order), len(wlo)
    # the search key: η, NaN as +inf (where the sort puts it: the sorted slices stay sorted)
    key = np.where(np.isnan(g["eta"]), np.float32(np.inf), g["eta"])
    tab = np.zeros((len(_TAB) + 1, bucket_size(n)), np.float32)
    for k, name in enumerate(_TAB):
        tab[k, :n] = g[name]
    tab[len(_TAB), :n] = key
    tab = jit.device(tab)
    w = jit.device(np.concatenate([wlo.T, whi.T]))  # [2Q, P]: lows, then highs
    dlo, dhi = wlo[mods.on, _DETA], whi[mods.on, _DETA]

    # a's hits that may reach b's η extent (pair by pair)
    b_min, b_max = key[mods.b_start], key[mods.b_start + mods.b_cnt - 1]
    a0, a1 = _chunked(
        lambda *a: jit.search(tab, *a, steps),
        size,
        (mods.a_start, mods.a_cnt, b_min - dhi, b_max - dlo),
        (0, 0, 0, 0),
    )
    p, i = _expand(mods.on, a0, np.maximum(a1 - a0, 0))
    # then, for each, b's hits in its Δη window
    b_start = np.zeros(n_map, np.int32)
    b_cnt = np.zeros(n_map, np.int32)
    b_start[mods.on], b_cnt[mods.on] = mods.b_start, mods.b_cnt
    b_start, b_cnt = jit.device(b_start), jit.device(b_cnt)
    j0, j1 = _chunked(
        lambda *a: jit.search_rows(tab, w, b_start, b_cnt, *a, steps), size, (p, i), (0, 0)
    )
    nz = np.flatnonzero(j1 > j0)
    rows = np.stack([p[nz], i[nz], j0[nz], (j1 - j0)[nz]], 1)

    def check(s: np.ndarray, t: np.ndarray, rep: np.ndarray) -> np.ndarray:
        return _in_windows(g, s, t, wlo[rep], whi[rep])

    return _cut_rows(rows, size, lambda *a: jit.codes(tab, w, *a), check, mods.order)


def _chunked(call: Any, size: int, arrays: tuple, fill: tuple) -> np.ndarray:
    """``call`` on chunks of ``size`` entries of ``arrays`` (the last padded with ``fill``),
    all dispatched before the first is read; the ``[k, m]`` results joined."""
    m = len(arrays[0])
    outs = []
    for c in range(0, m, size):
        args = []
        for a, f in zip(arrays, fill, strict=True):
            part = a[c : c + size]
            if len(part) < size:
                part = np.concatenate([part, np.full(size - len(part), f, part.dtype)])
            args.append(part)
        outs.append(call(*args))
    if not outs:
        return np.zeros((2, 0), np.int32)
    return np.concatenate([np.asarray(o) for o in outs], axis=1)[:, :m]


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
    order: np.ndarray, i: np.ndarray, j0: np.ndarray, nj: np.ndarray, chunk: int, rep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``i`` with every ``j0 .. j0 + nj - 1`` but itself, as row indices via ``order``,
    and each pair's map row (``rep`` of its ``i``)."""
    out_s, out_t = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    out_p = [np.zeros(0, np.int32)]
    for c0, c1 in _row_chunks(nj, chunk):
        s, t = _expand(i[c0:c1], j0[c0:c1], nj[c0:c1])
        keep = s != t
        out_s.append(order[s[keep]])
        out_t.append(order[t[keep]])
        out_p.append(np.repeat(rep[c0:c1].astype(np.int32), nj[c0:c1])[keep])
    return np.concatenate(out_s), np.concatenate(out_t), np.concatenate(out_p)


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
    rows: np.ndarray, size: int, codes: Any, check: Any, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of ``rows [R, 4]`` (``pair, i, j0, nj``: hit ``i`` with each of ``j0 .. j0 +
    nj - 1``) inside their pair's windows, as row indices (``order``), and their map rows
    (``pair``): ``codes`` (the jitted
    test) on pieces of up to ``_LANES`` consecutive partners, ``size`` pairs at a time,
    ``check`` (the reference test) on the pairs the kernel cannot tell."""
    n_pieces = (rows[:, 3] + _LANES - 1) // _LANES
    pieces = np.repeat(rows, n_pieces, axis=0)  # one row per piece, then its own lanes
    lane0 = np.arange(len(pieces), dtype=np.int32)
    lane0 -= np.repeat((np.cumsum(n_pieces) - n_pieces).astype(np.int32), n_pieces)
    lane0 *= _LANES
    pieces[:, 2] += lane0
    pieces[:, 3] = np.minimum(pieces[:, 3] - lane0, _LANES)
    per_call = max(size // _LANES, 1)
    out_s, out_t = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    out_p = [np.zeros(0, np.int32)]
    pending: list[tuple[Any, np.ndarray]] = []

    def finish(code: Any, piece: np.ndarray) -> None:
        code = np.asarray(code).reshape(-1)
        keep = code == 1
        tell = np.flatnonzero(code == 2)
        if len(tell):  # too close to an edge for the kernel: the reference test decides
            k, lane = tell // _LANES, tell % _LANES
            keep[tell] = check(piece[k, 1], piece[k, 2] + lane, piece[k, 0])
        k = np.flatnonzero(keep)
        lane = (k % _LANES).astype(np.int32)
        k //= _LANES
        out_s.append(order[piece[k, 1]])
        out_t.append(order[piece[k, 2] + lane])
        out_p.append(piece[k, 0].astype(np.int32))

    for c in range(0, len(pieces), per_call):
        piece = pieces[c : c + per_call]
        if len(piece) < per_call:  # padding: no partner
            piece = np.concatenate([piece, np.zeros((per_call - len(piece), 4), np.int32)])
        pending.append((codes(piece), piece))
        if len(pending) > 1:  # the next chunk is built while this one runs
            finish(*pending.pop(0))
    for item in pending:
        finish(*item)
    return np.concatenate(out_s), np.concatenate(out_t), np.concatenate(out_p)


@dataclasses.dataclass(frozen=True)
class _Jitted:
    search: Any
    search_rows: Any
    codes: Any
    device: Any


@functools.cache
def _kernels() -> _Jitted:
    """The jitted Δη slice searches and window test (jax imported on first use)."""
    import jax
    import jax.numpy as jnp

    f32 = np.float32

    def slice_of(keys, start, cnt, lo, hi, steps):
        """``[2, m]``: the first key ``>= lo`` and the first ``> hi`` (both widened for
        rounding) in each slice ``keys[start : start + cnt]`` (sorted): a branchless binary
        search, ``steps >= log2(cnt)`` halvings."""
        lo = lo - (f32(_ETA_TOL[0]) + f32(_ETA_TOL[1]) * jnp.abs(lo))
        hi = hi + (f32(_ETA_TOL[0]) + f32(_ETA_TOL[1]) * jnp.abs(hi))

        def halve(_, c):
            b_lo, b_hi, n = c
            half = n // 2
            b_lo = jnp.where(keys[b_lo + half] < lo, b_lo + half, b_lo)
            b_hi = jnp.where(keys[b_hi + half] <= hi, b_hi + half, b_hi)
            return b_lo, b_hi, n - half

        b_lo, b_hi, n = jax.lax.fori_loop(0, steps, halve, (start, start, cnt))
        last = (n > 0).astype(start.dtype)
        return jnp.stack([b_lo + last * (keys[b_lo] < lo), b_hi + last * (keys[b_hi] <= hi)])

    def search(tab, start, cnt, lo, hi, steps):
        return slice_of(tab[6], start, cnt, lo, hi, steps)

    def search_rows(tab, w, b_start, b_cnt, p, i, steps):
        eta_i = tab[6][i]
        lo, hi = eta_i + w[_DETA][p], eta_i + w[len(QUANTITIES) + _DETA][p]
        return slice_of(tab[6], b_start[p], b_cnt[p], lo, hi, steps)

    def codes(tab, w, piece):
        """``[m, _LANES]`` 0 out, 1 in, 2 too close to an edge to tell: for each piece ``(rep,
        s, t0, n)``, the pairs of hit ``s`` with ``t0 + lane`` (``lane < n``) against the
        windows of map row ``rep``."""
        rep, s, t0, n = (piece[:, k] for k in range(4))
        lane = jnp.arange(_LANES, dtype=jnp.int32)[None, :]
        t = t0[:, None] + lane
        x1, y1, r1, p1, z1, e1 = (tab[k][s][:, None] for k in range(6))
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
        maybe = sure = (s[:, None] != t) & (lane < n[:, None])
        for q, name in enumerate(QUANTITIES):
            v, tol = value_tol[name]
            lo, hi = w[q][rep][:, None], w[len(QUANTITIES) + q][rep][:, None]
            maybe_q = (v >= lo - tol) & (v <= hi + tol)
            sure_q = (v >= lo + tol) & (v <= hi - tol)
            if name in ("dphi", "phi_slope"):
                maybe_q, sure_q = maybe_q | wraps, sure_q & ~wraps
            maybe, sure = maybe & maybe_q, sure & sure_q
        return jnp.where(maybe, jnp.where(sure, 1, 2), 0).astype(jnp.int8)

    return _Jitted(
        jax.jit(search),
        jax.jit(search_rows),
        jax.jit(codes),
        jax.device_put,
    )
