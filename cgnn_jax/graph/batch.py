"""Static-shape graphs for the stage-2 GNN: padding, evaluation edges and η–φ sector sub-graphs.

One event (or one sub-graph of it) becomes a :class:`PaddedGraph`: a ``jraph.GraphsTuple`` padded
with ``jraph.pad_with_graphs`` to node / edge budgets taken from
:func:`cgnn_jax.utils.padding.bucket_size` (events of different sizes compile a few times, not once
each), its node and edge padding masks, and the *evaluation edges* of the loss at a fixed count.
Padded graphs with the same budgets stack along a new leading axis (:func:`stack_graphs`): the
data-parallel batch of the train step.

Sector sub-graphs (:func:`sector_subgraphs`) bound the training memory on full-size events: hits are
split into ``n_eta x n_phi`` sectors by the pseudorapidity and azimuth of their position; each
sub-graph holds the hits of one sector plus a margin around it (context for the message passing),
the input edges among them and the evaluation edges among them that start in the sector's core
(so no pair is counted twice over overlapping sectors).
"""

from __future__ import annotations

import dataclasses

import jax
import jraph
import numpy as np

from cgnn_jax.utils.padding import bucket_size, pad_rows


@dataclasses.dataclass
class PaddedGraph:
    """One padded graph and its loss pairs (numpy; a stack of them has a leading axis ``[B]``).

    Attributes:
      graph: ``jraph.GraphsTuple`` with ``nodes [N, F]``, ``senders/receivers [E]``, ``n_node`` and
        ``n_edge [2]`` (the real graph, then the padding graph).
      node_mask: ``[N]`` bool, True on real nodes.
      edge_mask: ``[E]`` bool, True on real edges.
      eval_senders, eval_receivers: ``[M]`` int32 endpoints of the evaluation edges (local rows).
      eval_y: ``[M]`` bool, same particle.
      eval_mask: ``[M]`` bool, False on padding pairs.
      nodes_index: ``[n]`` int rows of the event's hits that are the real nodes (not stacked).
    """

    graph: jraph.GraphsTuple
    node_mask: np.ndarray
    edge_mask: np.ndarray
    eval_senders: np.ndarray
    eval_receivers: np.ndarray
    eval_y: np.ndarray
    eval_mask: np.ndarray
    nodes_index: np.ndarray | None = None

    def arrays(self) -> dict:
        """The pytree fed to the jitted functions (everything but ``nodes_index``)."""
        return {
            "graph": self.graph,
            "node_mask": self.node_mask,
            "edge_mask": self.edge_mask,
            "eval_senders": self.eval_senders,
            "eval_receivers": self.eval_receivers,
            "eval_y": self.eval_y,
            "eval_mask": self.eval_mask,
        }


def graph_budget(n_nodes: int, n_edges: int) -> tuple[int, int]:
    """``(node_budget, edge_budget)`` from size buckets; one node is kept for the padding graph."""
    return bucket_size(n_nodes + 1), bucket_size(n_edges)


def make_graph(x: np.ndarray, senders: np.ndarray, receivers: np.ndarray) -> jraph.GraphsTuple:
    """One-graph ``GraphsTuple`` with ``nodes = x [n, F]`` and edges ``senders -> receivers [E]``."""
    return jraph.GraphsTuple(
        nodes=np.asarray(x, np.float32),
        edges=None,
        senders=np.asarray(senders, np.int32),
        receivers=np.asarray(receivers, np.int32),
        n_node=np.array([len(x)], np.int32),
        n_edge=np.array([len(senders)], np.int32),
        globals=None,
    )


def pad_graph(
    graph: jraph.GraphsTuple, n_node: int, n_edge: int
) -> tuple[jraph.GraphsTuple, np.ndarray, np.ndarray]:
    """``(padded, node_mask [n_node], edge_mask [n_edge])`` with ``jraph.pad_with_graphs``.

    ``n_node`` must exceed the real node count by at least one (the padding graph's node, which
    all padding edges join).
    """
    g = jraph.pad_with_graphs(graph, n_node, n_edge, n_graph=2)
    node_mask = np.asarray(jraph.get_node_padding_mask(g))
    edge_mask = np.asarray(jraph.get_edge_padding_mask(g))
    return g, node_mask, edge_mask


def padded_graph(
    x: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    eval_edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    budget: tuple[int, int] | None = None,
    n_eval: int | None = None,
    nodes_index: np.ndarray | None = None,
) -> PaddedGraph:
    """Build and pad one graph.

    Args:
      x: ``[n, F]`` node features.
      senders, receivers: ``[E]`` input edges (local rows).
      eval_edges: ``(s, r, y)`` ``[M']`` evaluation edges (local rows) or None (no loss pairs).
      budget: ``(node_budget, edge_budget)``; default :func:`graph_budget` of this graph.
      n_eval: the fixed evaluation-edge count (padded / truncated); default ``len(s)`` bucketed.
      nodes_index: rows of the real nodes in the event (kept for scattering results back).
    """
    budget = budget or graph_budget(len(x), len(senders))
    g, nm, em = pad_graph(make_graph(x, senders, receivers), *budget)
    if eval_edges is None:
        eval_edges = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, bool))
    es, er, ey = eval_edges
    m = n_eval if n_eval is not None else bucket_size(len(es), minimum=16)
    es, er, ey = es[:m], er[:m], ey[:m]
    return PaddedGraph(
        g,
        nm,
        em,
        pad_rows(es.astype(np.int32), m),
        pad_rows(er.astype(np.int32), m),
        pad_rows(ey.astype(bool), m),
        pad_rows(np.ones(len(es), bool), m),
        nodes_index,
    )


def stack_graphs(graphs: list[PaddedGraph]) -> dict:
    """Stack padded graphs of equal budgets along a new leading axis ``[B, ...]``."""
    trees = [g.arrays() for g in graphs]
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *trees)


# --------------------------------------------------------------------------- evaluation edges


def true_pairs(pid: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random ordered pairs of distinct hits of the same particle (noise excluded)."""
    sig = np.flatnonzero(pid != 0)
    if len(sig) == 0 or n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = sig[np.argsort(pid[sig], kind="stable")]
    p = pid[order]
    first = np.r_[0, np.flatnonzero(np.diff(p)) + 1]
    cnt = np.diff(np.r_[first, len(order)])
    group = np.repeat(np.arange(len(first)), cnt)
    rank = np.arange(len(order)) - first[group]
    ok = cnt[group] > 1
    if not ok.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = rng.choice(np.flatnonzero(ok), size=n)
    g = group[a]
    off = rng.integers(1, cnt[g])  # 1 .. cnt-1: another hit of the same particle
    b = first[g] + (rank[a] + off) % cnt[g]
    return order[a], order[b]


def eval_edge_pool(
    senders: np.ndarray,
    receivers: np.ndarray,
    pid: np.ndarray,
    n_true_pairs: int,
    rng: np.random.Generator,
    n_random_pairs: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate evaluation edges: the stage-1 embedding graph ∪ ``n_true_pairs`` random true pairs
    ∪ ``n_random_pairs`` uniformly random pairs (nearly all false: the easy negatives that keep
    far-apart hits apart; the embedding graph's false edges are the hard ones).

    Returns ``(s, r, y)`` ``[M]`` with ``y`` = same particle (not noise, not a self pair).
    """
    n = len(pid)
    ts, tr = true_pairs(pid, n_true_pairs, rng)
    rs, rr = rng.integers(0, n, n_random_pairs), rng.integers(0, n, n_random_pairs)
    s = np.concatenate([np.asarray(senders, np.int64), ts, rs])
    r = np.concatenate([np.asarray(receivers, np.int64), tr, rr])
    y = (pid[s] == pid[r]) & (pid[s] != 0) & (s != r)
    return s, r, y


def balanced_sample(
    s: np.ndarray, r: np.ndarray, y: np.ndarray, m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``m`` edges: ``m / 2`` true and ``m / 2`` false, drawn with replacement (fewer if a class is
    empty: the caller pads and masks)."""
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    pick = []
    if len(pos):
        pick.append(rng.choice(pos, size=m // 2))
    if len(neg):
        pick.append(rng.choice(neg, size=m - m // 2))
    idx = np.concatenate(pick) if pick else np.zeros(0, np.int64)
    return s[idx], r[idx], y[idx]


# --------------------------------------------------------------------------- sectors


def eta_phi(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pseudorapidity and azimuth ``[n]`` of hit positions ``[n, 3]``."""
    rho = np.hypot(pos[:, 0], pos[:, 1])
    return np.arcsinh(pos[:, 2] / np.maximum(rho, 1e-9)), np.arctan2(pos[:, 1], pos[:, 0])


def sector_members(
    pos: np.ndarray,
    n_eta: int,
    n_phi: int,
    eta_margin: float,
    phi_margin: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each η–φ sector, ``(members, core)``: bool ``[n]`` masks of its hits with and without
    the overlap margin.

    η bins are the event's η quantiles (equal hit counts); φ bins are uniform over ``[-π, π)``
    and wrap around. ``eta_margin`` is in units of η, ``phi_margin`` in radians.
    """
    eta, phi = eta_phi(pos)
    edges = np.quantile(eta, np.linspace(0, 1, n_eta + 1)) if len(eta) else np.zeros(n_eta + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    width = 2 * np.pi / n_phi
    phi_bin = np.floor((phi + np.pi) / width).astype(np.int64) % n_phi
    out = []
    for a in range(n_eta):
        lo, hi = edges[a], edges[a + 1]
        in_eta_core = (eta >= lo) & (eta < hi)
        in_eta = (eta >= lo - eta_margin) & (eta < hi + eta_margin)
        for b in range(n_phi):
            centre = -np.pi + (b + 0.5) * width
            dphi = np.abs((phi - centre + np.pi) % (2 * np.pi) - np.pi)
            in_phi = (dphi <= width / 2 + phi_margin) | (phi_bin == b)
            out.append((in_eta & in_phi, in_eta_core & (phi_bin == b)))
    return out


def induced_edges(
    member: np.ndarray, senders: np.ndarray, receivers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges with both ends in ``member [n]`` (bool): ``(keep [E] bool, local_s, local_r)``."""
    local = np.cumsum(member) - 1
    keep = member[senders] & member[receivers]
    return keep, local[senders[keep]], local[receivers[keep]]


def sector_subgraphs(
    x: np.ndarray,
    pos: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    eval_pool: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_eta: int,
    n_phi: int,
    eta_margin: float,
    phi_margin: float,
) -> list[dict]:
    """Unpadded sector sub-graphs of one event.

    Args:
      x: ``[n, F]`` node features; ``pos [n, 3]`` hit positions.
      senders, receivers: ``[E]`` input edges of the whole event.
      eval_pool: ``(s, r, y)`` candidate evaluation edges of the whole event.
    Returns:
      one dict per non-empty sector: ``x [m, F]``, ``senders/receivers`` (local), ``eval``
      ``(s, r, y)`` (local; only pairs whose sender is in the sector's core), ``nodes_index [m]``.
    """
    es, er, ey = eval_pool
    out = []
    for member, core in sector_members(pos, n_eta, n_phi, eta_margin, phi_margin):
        if member.sum() < 2:
            continue
        _, ls, lr = induced_edges(member, senders, receivers)
        keep, les, ler = induced_edges(member, es, er)
        in_core = core[es[keep]]
        out.append(
            {
                "x": x[member],
                "senders": ls,
                "receivers": lr,
                "eval": (les[in_core], ler[in_core], ey[keep][in_core]),
                "nodes_index": np.flatnonzero(member),
            }
        )
    return out
