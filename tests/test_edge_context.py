"""A candidate edge's rivals and best continuation (cgnn_jax.features.edge_context)."""

from __future__ import annotations

import numpy as np
import pytest

from cgnn_jax.features.edge_context import CONTINUATION_NAMES, RIVAL_NAMES, edge_context


def _reference(pos, s, r, p, n, top):
    """Edge by edge, with loops: the features as the module docstring defines them."""
    pos = np.asarray(pos, np.float64)

    def seg(e):
        d = pos[r[e]] - pos[s[e]]
        rho = np.hypot(d[0], d[1]) + 1e-6
        phi = np.arctan2(pos[:, 1], pos[:, 0])
        dphi = (phi[r[e]] - phi[s[e]] + np.pi) % (2 * np.pi) - np.pi
        return d[2] / rho, np.arctan2(d[1], d[0]), 2 * np.sin(dphi) / rho

    def best(edges):  # the `top` highest-scored
        return sorted(edges, key=lambda e: -p[e])[:top]

    out = {h: [e for e in range(len(s)) if s[e] == h] for h in range(n)}
    inc = {h: [e for e in range(len(s)) if r[e] == h] for h in range(n)}
    rivals, cont = [], []
    for e in range(len(s)):
        mo = lambda h: max([p[k] for k in out[h]], default=0.0)  # noqa: E731
        mi = lambda h: max([p[k] for k in inc[h]], default=0.0)  # noqa: E731
        rivals.append([
            mo(s[e]), mi(r[e]), mo(r[e]), mi(s[e]),
            p[e] / (mo(s[e]) + 1e-6), p[e] / (mi(r[e]) + 1e-6),
            np.log1p(len(out[s[e]])), np.log1p(len(inc[r[e]])),
            np.log1p(len(out[r[e]])), np.log1p(len(inc[s[e]])),
        ])  # fmt: skip
        cot_e, al_e, kap_e = seg(e)
        row = []
        for forward in (True, False):
            cands = []
            for f in best(out[r[e]] if forward else inc[s[e]]):
                if (r[f] == s[e]) if forward else (s[f] == r[e]):
                    continue  # straight back: no partner
                cot_f, al_f, _ = seg(f)
                if forward:
                    dal, dcot = al_f - al_e, cot_f - cot_e
                    far = np.hypot(*(pos[r[f]] - pos[s[e]])[:2])
                else:
                    dal, dcot = al_e - al_f, cot_e - cot_f
                    far = np.hypot(*(pos[r[e]] - pos[s[f]])[:2])
                dal = (dal + np.pi) % (2 * np.pi) - np.pi
                dk = 2 * np.sin(dal) / (far + 1e-6) - kap_e
                mis = (dcot / 0.02) ** 2 + (dk / (0.3 * abs(kap_e) + 2e-4)) ** 2
                cands.append((mis, dcot, dk, p[f]))
            if cands:
                mis, dcot, dk, pf = min(cands, key=lambda c: c[0])  # first: best score
                row += [np.log1p(mis), np.clip(dcot, -5, 5), np.clip(dk * 1e3, -20, 20), pf]
            else:
                row += [np.log1p(1e6), 0.0, 0.0, 0.0]
        cont.append(row)
    return np.array(rivals), np.array(cont)


def _graph(seed, n=40, e=160):
    rng = np.random.default_rng(seed)
    r_ = np.sort(rng.uniform(30, 1000, n))
    phi = rng.uniform(-0.4, 0.4, n)
    pos = np.column_stack([r_ * np.cos(phi), r_ * np.sin(phi), rng.uniform(-500, 500, n)])
    key = np.unique(rng.integers(0, n * n, e))  # distinct pairs, as candidates are
    s, t = key // n, key % n
    keep = s != t
    return pos.astype(np.float32), s[keep], t[keep], rng.uniform(0, 1, keep.sum()), n


@pytest.mark.parametrize("seed,top", [(0, 4), (1, 2)])
def test_edge_context_matches_an_edge_by_edge_reference(seed, top):
    pos, s, r, p, n = _graph(seed)
    rivals, cont = edge_context(pos, s, r, p.astype(np.float32), np.ones(len(s), bool), n, top)
    want_r, want_c = _reference(pos, s, r, p.astype(np.float32).astype(np.float64), n, top)
    assert rivals.shape == (len(s), len(RIVAL_NAMES))
    assert cont.shape == (len(s), len(CONTINUATION_NAMES))
    np.testing.assert_allclose(np.asarray(rivals), want_r, rtol=1e-4, atol=1e-5)
    # float32 against float64 geometry: the mismatch is a ratio of small differences
    np.testing.assert_allclose(np.asarray(cont), want_c, rtol=2e-3, atol=2e-3)


def test_padding_edges_change_nothing_and_get_zero_rows():
    pos, s, r, p, n = _graph(2)
    p = p.astype(np.float32)
    a = edge_context(pos, s, r, p, np.ones(len(s), bool), n)
    rng = np.random.default_rng(3)
    k = 37  # padding with values that would matter if they were read
    sp = np.concatenate([s, rng.integers(0, n, k)])
    rp = np.concatenate([r, rng.integers(0, n, k)])
    pp = np.concatenate([p, np.ones(k, np.float32)])
    mask = np.arange(len(sp)) < len(s)
    b = edge_context(pos, sp, rp, pp, mask, n)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(y)[: len(s)], np.asarray(x))
        assert not np.asarray(y)[len(s) :].any()


def test_the_straight_continuation_wins_over_a_brighter_kink():
    # hits 0 -> 1 -> 2 on one straight line from the origin; hit 3 is a kink at the same radius
    pos = np.array([[100, 0, 50], [200, 0, 100], [300, 0, 150], [300, 60, 300]], np.float32)
    s, r = np.array([0, 1, 1]), np.array([1, 2, 3])
    p = np.array([0.5, 0.3, 0.9], np.float32)
    _, cont = edge_context(pos, s, r, p, np.ones(3, bool), 4)
    nxt = dict(zip(CONTINUATION_NAMES, np.asarray(cont)[0], strict=True))
    assert nxt["next_score"] == pytest.approx(0.3)  # edge 1 -> 2, not the brighter 1 -> 3
    assert abs(nxt["next_dcot"]) < 1e-4
    prev = dict(zip(CONTINUATION_NAMES, np.asarray(cont)[1], strict=True))
    assert prev["prev_score"] == pytest.approx(0.5)
    assert prev["next_log_mismatch"] == pytest.approx(np.log1p(1e6))  # hit 2 leads nowhere
