"""What a candidate edge's neighbourhood says about it: its rivals and its best continuation.

An edge filter that sees one pair of hits at a time cannot tell a true doublet from a false one
that looks as good; the graph around the pair can. For directed, scored candidate edges
``s -> r`` (inner hit first, as the module map orders them) this computes, per edge:

* **rivals** (``[E, 10]``, :data:`RIVAL_NAMES`): the highest score among the edges leaving and
  entering each of its two hits, the edge's own score relative to its rivals', and the hits'
  out- and in-degrees (log);
* **continuation** (``[E, 8]``, :data:`CONTINUATION_NAMES`): at each end, among the ``top``
  highest-scored edges that continue it (leaving ``r`` forward, entering ``s`` backward), the
  one that bends least like a helix (an edge straight back to the other hit is no partner): the change of cot θ between the two segments, the 3-point
  circle's curvature minus the doublet's circle through the origin, their combined mismatch
  ``(Δcot θ / 0.02)² + (Δκ / (0.3 |κ| + 2e-4 /mm))²`` (log) and the partner's score.

It is the one round of message passing that Exa.TrkX's and GNN4ITk's edge classifiers spend
their first layers on, written as fixed arithmetic over segment maxima and a ``[n, top]`` table
of each hit's best edges (segment maxima, no sort), so that it runs inside one jitted program of static shapes. Padding
edges (``mask`` False) take part in nothing and get zero rows.

``benchmarks/filter_context_probe.py`` measures what these inputs are worth to the edge filter
on full events.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

RIVAL_NAMES = (
    "max_out_s", "max_in_r", "max_out_r", "max_in_s", "score_over_out_s", "score_over_in_r",
    "log_deg_out_s", "log_deg_in_r", "log_deg_out_r", "log_deg_in_s",
)  # fmt: skip
CONTINUATION_NAMES = tuple(
    f"{end}_{q}"
    for end in ("next", "prev")
    for q in ("log_mismatch", "dcot", "dkappa_per_m", "score")
)
COT_SCALE = 0.02
KAPPA_REL, KAPPA_FLOOR = 0.3, 2e-4  # 1/mm
_NONE = 1e6  # the mismatch reported for "no partner"
_EPS = 1e-6


def _wrap(a: jnp.ndarray) -> jnp.ndarray:
    return (a + jnp.pi) % (2 * jnp.pi) - jnp.pi


def _pick(a: jnp.ndarray, col: jnp.ndarray) -> jnp.ndarray:
    """``a[i, col[i, 0]]`` for every row ``i``."""
    return jnp.take_along_axis(a, col, 1)[:, 0]


def _best_edges(group: jnp.ndarray, score: jnp.ndarray, n: int, top: int) -> jnp.ndarray:
    """``[n, top]`` int32 ids of each hit's ``top`` highest-scored edges in ``group`` (``n``:
    padding, in no hit's row), best first, the lower edge id first among equal scores; -1 where
    a hit has fewer. ``top`` rounds of a segment maximum and a segment minimum of edge ids: no
    sort of the ``E`` edges."""
    e = group.shape[0]
    ids = jnp.arange(e, dtype=jnp.int32)
    alive = group < n
    cols = []
    for _ in range(top):
        sc = jnp.where(alive, score, -1.0)
        best = jax.ops.segment_max(sc, group, num_segments=n + 1)
        first = jax.ops.segment_min(
            jnp.where(alive & (sc == best[group]), ids, e), group, num_segments=n + 1
        )
        cols.append(jnp.where(first < e, first, -1)[:n])
        alive = alive & (ids != first[group])
    return jnp.stack(cols, 1)


@functools.partial(jax.jit, static_argnames=("n", "top"))
def edge_context(
    pos: jnp.ndarray,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    score: jnp.ndarray,
    mask: jnp.ndarray,
    n: int,
    top: int = 4,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Rival and continuation features of directed scored edges.

    Args:
      pos: ``[n, 3]`` hit positions (mm).
      senders, receivers: ``[E]`` int hit indices (``s -> r``, inner hit first).
      score: ``[E]`` the edges' scores in [0, 1] (e.g. the edge filter's probabilities).
      mask: ``[E]`` bool, False for padding edges.
      n: number of hits (static).
      top: continuation partners looked at per end (static).

    Returns:
      ``(rivals [E, 10], continuation [E, 8])`` float32 (:data:`RIVAL_NAMES`,
      :data:`CONTINUATION_NAMES`); zero rows for padding edges.
    """
    pos = jnp.asarray(pos, jnp.float32)
    s = jnp.where(mask, senders, n).astype(jnp.int32)  # padding: hit n, outside every segment
    r = jnp.where(mask, receivers, n).astype(jnp.int32)
    p = jnp.where(mask, score, 0.0).astype(jnp.float32)
    x, y, z = (jnp.concatenate([pos[:, k], jnp.zeros(1, jnp.float32)]) for k in range(3))
    dx, dy, dz = x[r] - x[s], y[r] - y[s], z[r] - z[s]
    rho = jnp.hypot(dx, dy) + _EPS
    cot, alpha = dz / rho, jnp.arctan2(dy, dx)
    phi = jnp.arctan2(y, x)
    kappa = 2 * jnp.sin(_wrap(phi[r] - phi[s])) / rho  # circle through the origin and both hits

    def seg_max(idx: jnp.ndarray) -> jnp.ndarray:
        return jnp.maximum(jax.ops.segment_max(p, idx, num_segments=n + 1), 0.0)

    def degree(idx: jnp.ndarray) -> jnp.ndarray:
        return jax.ops.segment_sum(mask.astype(jnp.float32), idx, num_segments=n + 1)

    out_max, in_max = seg_max(s), seg_max(r)
    deg_out, deg_in = jnp.log1p(degree(s)), jnp.log1p(degree(r))
    rivals = jnp.stack(
        [
            out_max[s], in_max[r], out_max[r], in_max[s],
            p / (out_max[s] + _EPS), p / (in_max[r] + _EPS),
            deg_out[s], deg_in[r], deg_out[r], deg_in[s],
        ],
        1,
    )  # fmt: skip

    cont = []
    for forward in (True, False):
        # each hit's best continuing edges, gathered per hit ([n + 1, top]) and then once per
        # edge end: the far hit, its direction, cot θ, far position and score of each partner
        near, far_end = (s, r) if forward else (r, s)
        table = _best_edges(near, p, n, top)
        table = jnp.concatenate([table, jnp.full((1, top), -1, jnp.int32)])
        f = jnp.where(table >= 0, table, 0)
        other = far_end[f]
        rows = jnp.stack([alpha[f], cot[f], x[other], y[other], p[f]], -1)
        at = r if forward else s  # the end the partners continue from
        part, o = rows[at], jnp.where(table >= 0, other, -1)[at]  # [E, top, 5], [E, top]
        valid = (o >= 0) & (o != (s if forward else r)[:, None])  # r -> s: no turn
        p_alpha, p_cot, p_x, p_y, p_score = (part[..., k] for k in range(5))
        if forward:  # s -> r -> partner's far hit
            dal = p_alpha - alpha[:, None]
            far = jnp.hypot(p_x - x[s][:, None], p_y - y[s][:, None])
            dcot = p_cot - cot[:, None]
        else:  # partner's far hit -> s -> r
            dal = alpha[:, None] - p_alpha
            far = jnp.hypot(x[r][:, None] - p_x, y[r][:, None] - p_y)
            dcot = cot[:, None] - p_cot
        dk = 2 * jnp.sin(_wrap(dal)) / (far + _EPS) - kappa[:, None]
        mis = (dcot / COT_SCALE) ** 2 + (
            dk / (KAPPA_REL * jnp.abs(kappa[:, None]) + KAPPA_FLOOR)
        ) ** 2
        b = jnp.argmin(jnp.where(valid, mis, jnp.inf), 1)[:, None]
        ok = jnp.take_along_axis(valid, b, 1)[:, 0]
        cont += [
            jnp.log1p(jnp.where(ok, _pick(mis, b), _NONE)),
            jnp.clip(_pick(dcot, b), -5, 5) * ok,
            jnp.clip(_pick(dk, b) * 1e3, -20, 20) * ok,
            _pick(p_score, b) * ok,
        ]
    continuation = jnp.stack(cont, 1)
    m = mask[:, None]
    return jnp.where(m, rivals, 0.0), jnp.where(m, continuation, 0.0)
