"""Stage ceilings: the best TrackML score any later stage could reach from a stage's output.

These are the figures of the stage-ceiling diagnostic (``launch/diagnose.py``): the gap between
the ceiling of one stage and that of the next says which stage loses the score. Every function
here is plain numpy on per-hit arrays (no model), scored with the project's exact TrackML score
(:func:`cgnn_jax.metrics.score.match_tracks`, the double-majority rule of the challenge):

* :func:`oracle_components_ceiling`: a graph's *oracle-completed connected-components ceiling*.
  An oracle deletes every false edge (an edge is true when both ends are hits of the same
  non-noise particle), and the connected components of what is left are the tracks; noise hits
  end up as singletons. No clusterer that only merges hits the graph connects can do better on
  a particle, so this is the best any later stage could do with that graph.
* :func:`oracle_stop_ceiling`: the best pruning of a Split tree (Stop replaced by an oracle).
  The TrackML score is a sum over tracks of a term that depends only on the track's own hits
  (and on the total hit count of its majority particle, which is fixed by the event): a track
  counts the weight of its majority particle's hits when it holds > 50 % of the track's hits
  and > 50 % of the particle's hits. So the score of a pruning is the sum of its leaves' terms,
  and the dynamic programme ``best(node) = max(term(node), sum(best(child)))``, evaluated from
  the leaves up, is exact (each node is scored independently of how the rest of the tree is cut;
  at most one track can hold > 50 % of a particle's hits, so no two tracks compete for one).
* :func:`compactness`: per particle, its hits' spread around their centroid over the distance
  from the centroid to the nearest hit of another particle (a cluster space in which tracks are
  compact and apart has small values).
* :func:`roc_auc`, :func:`edge_efficiency_purity`: edge-classifier figures (e.g. of the GNN's
  learned edge weights ``a_ij``).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from cgnn_jax.metrics.score import match_tracks

__all__ = [
    "compactness",
    "components",
    "dense_labels",
    "edge_efficiency_purity",
    "edge_truth",
    "oracle_components",
    "oracle_components_ceiling",
    "oracle_stop",
    "oracle_stop_ceiling",
    "roc_auc",
    "score_labels",
    "track_terms",
]


def dense_labels(labels: np.ndarray) -> np.ndarray:
    """Any integer labels ``[n]`` -> ``0..K-1`` (int64, in order of the sorted label values)."""
    return np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1).astype(np.int64)


def track_terms(
    particle_id: np.ndarray, track_id: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each track's term of the TrackML score: ``(track ids [K] sorted, terms [K])``.

    A term is the summed weight of the track's majority-particle hits over the event's total
    weight when the track is good (double majority), else 0; the event score is their sum.
    """
    weight = np.asarray(weight, np.float64)
    m = match_tracks(particle_id, track_id, weight)
    total = weight.sum()
    terms = np.where(m["good"], m["major_weight"], 0.0)
    return m["track_id"], (terms / total if total > 0 else terms * 0.0)


def score_labels(particle_id: np.ndarray, track_id: np.ndarray, weight: np.ndarray) -> float:
    """The exact TrackML score of per-hit track ids ``[n]`` (aligned with ``particle_id [n]``
    and the truth ``weight [n]``); the same figure as :func:`cgnn_jax.metrics.score_event`."""
    if len(particle_id) == 0:
        return float("nan")
    return float(track_terms(particle_id, track_id, weight)[1].sum())


def edge_truth(senders: np.ndarray, receivers: np.ndarray, particle_id: np.ndarray) -> np.ndarray:
    """``[E]`` bool: the edge joins two distinct hits of the same non-noise particle."""
    s = np.asarray(senders, np.int64)
    r = np.asarray(receivers, np.int64)
    pid = np.asarray(particle_id, np.int64)
    return (s != r) & (pid[s] == pid[r]) & (pid[s] != 0)


def components(senders: np.ndarray, receivers: np.ndarray, n: int) -> np.ndarray:
    """``[n]`` int64 connected-component id of every node of an undirected graph on ``0..n-1``."""
    s = np.asarray(senders, np.int64)
    r = np.asarray(receivers, np.int64)
    adj = coo_matrix((np.ones(len(s), np.int8), (s, r)), shape=(n, n)).tocsr()
    return connected_components(adj, directed=False)[1].astype(np.int64)


def oracle_components(
    senders: np.ndarray, receivers: np.ndarray, particle_id: np.ndarray
) -> np.ndarray:
    """Track ids ``[n]`` (int64): connected components of the graph's true edges only.

    Args:
      senders, receivers: ``[E]`` int hit indices in ``0..n-1`` (direction is ignored).
      particle_id: ``[n]`` the true particle of every hit (0: noise; noise hits have no true
        edge and so are singletons).
    """
    true = edge_truth(senders, receivers, particle_id)
    return components(np.asarray(senders)[true], np.asarray(receivers)[true], len(particle_id))


def oracle_components_ceiling(
    senders: np.ndarray, receivers: np.ndarray, particle_id: np.ndarray, weight: np.ndarray
) -> float:
    """The oracle-completed connected-components ceiling of a graph (see the module docstring).

    For the graph holding exactly the true edges between hits adjacent along each track, every
    particle is one track and the ceiling is the weight share of non-noise hits (1.0 with the
    TrackML weights, which give noise 0); for an empty graph it is the score of singletons (the
    weight share of one-hit particles).
    """
    return score_labels(particle_id, oracle_components(senders, receivers, particle_id), weight)


def oracle_stop(
    segment: np.ndarray,
    active: np.ndarray,
    particle_id: np.ndarray,
    weight: np.ndarray,
) -> tuple[float, np.ndarray]:
    """The best pruning of a divisive cluster tree: ``(ceiling, track ids [n])``.

    The tree comes in the level-wise form of :func:`cgnn_jax.cluster.recursion.unrolled_clustering`
    (unpadded to the ``n`` real points): a node is a cluster at a level; a cluster that is
    ``active`` at a level is split into the clusters its points hold at the next level, one that is
    not is carried unchanged. For every node the oracle chooses to stop there (the node is one
    track) or to go on (the best pruning of its children); ties stop. The choice
    ``stop iff term(node) >= sum of the children's best`` made from the leaves up is exact for the
    TrackML score (a sum of per-track terms; module docstring).

    Args:
      segment: ``[L + 1, n]`` int segment (cluster) id of every point before each level (row
        ``L``: the final clusters); ids are in ``0..n-1``.
      active: ``[L, n]`` bool, per segment id, whether that cluster was split at that level (for
        the full Split tree: every cluster that Split could still split).
      particle_id: ``[n]`` true particle per point (0: noise).
      weight: ``[n]`` truth weight per point.
    Returns:
      the ceiling (the score of the best pruning, NaN for ``n == 0``) and the per-point track ids
      (int64, ``0..K-1``) of that pruning, whose :func:`score_labels` is the ceiling.
    """
    segment = np.asarray(segment, np.int64)
    active = np.asarray(active, bool)
    n_levels, n = segment.shape
    depth = n_levels - 1
    if active.shape != (depth, n):
        raise ValueError(f"active has shape {active.shape}, expected {(depth, n)}")
    if n == 0:
        return float("nan"), np.zeros(0, np.int64)
    if segment.min() < 0 or segment.max() >= n:
        raise ValueError(f"segment ids must lie in 0..{n - 1} (unpad the tree to the real points)")

    def terms_at(level: int) -> np.ndarray:
        ids, t = track_terms(particle_id, segment[level], weight)
        out = np.zeros(n)
        out[ids] = t
        return out

    best = terms_at(depth)  # per final segment id
    stop_here = np.zeros((depth, n), bool)
    for lev in range(depth - 1, -1, -1):
        seg, nxt = segment[lev], segment[lev + 1]
        pairs = np.unique(seg * np.int64(n) + nxt)
        parent, child = pairs // n, pairs % n
        below = np.bincount(parent, weights=best[child], minlength=n)  # children's best, summed
        act = active[lev]
        if act.any():
            here = terms_at(lev)
            stop_here[lev] = act & (here >= below)
            best = np.where(act, np.maximum(here, below), below)
        else:
            best = below  # nothing split at this level: every cluster carried as it is
    ceiling = float(best[np.unique(segment[0])].sum())  # one root, or a forest's roots

    label = np.full(n, -1, np.int64)
    for lev in range(depth):
        pick = (label < 0) & stop_here[lev][segment[lev]]
        label[pick] = lev * np.int64(n) + segment[lev][pick]
    rest = label < 0
    label[rest] = depth * np.int64(n) + segment[depth][rest]
    return ceiling, dense_labels(label)


def oracle_stop_ceiling(
    segment: np.ndarray, active: np.ndarray, particle_id: np.ndarray, weight: np.ndarray
) -> float:
    """The oracle-Stop ceiling alone (see :func:`oracle_stop`)."""
    return oracle_stop(segment, active, particle_id, weight)[0]


def compactness(points: np.ndarray, particle_id: np.ndarray, min_hits: int = 2) -> np.ndarray:
    """Per particle with ``>= min_hits`` hits: spread / separation in a space ``points [n, D]``.

    * spread: the RMS distance of the particle's hits to their centroid;
    * separation: the distance from the centroid to the nearest hit of any other particle.

    Noise hits (``particle_id == 0``) are neither particles nor "other particles' hits": a track
    may absorb a few noise hits without losing its score (they weigh 0 and only count against
    the double majority). Values ``< 1`` mean the particle's hits lie closer to their centre
    than any other particle's hit; ``inf`` when another particle's hit sits on the centroid.

    Returns:
      ``[P]`` float64, one ratio per particle with at least ``min_hits`` hits (sorted by id);
      empty when there is none (or fewer than two particles).
    """
    x = np.asarray(points, np.float64)
    pid = np.asarray(particle_id, np.int64)
    sig = np.flatnonzero(pid != 0)
    if len(sig) == 0:
        return np.zeros(0)
    _, inv, cnt = np.unique(pid[sig], return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    if len(cnt) < 2:
        return np.zeros(0)
    xs = x[sig]
    cen = np.stack([np.bincount(inv, weights=xs[:, d]) for d in range(x.shape[1])], 1)
    cen /= cnt[:, None]
    d2 = np.sum((xs - cen[inv]) ** 2, axis=1)
    spread = np.sqrt(np.bincount(inv, weights=d2) / cnt)
    keep = np.flatnonzero(cnt >= min_hits)
    if len(keep) == 0:
        return np.zeros(0)
    # the k = (own hits + 1) nearest hits of a centroid hold at least one other particle's hit
    k = int(min(cnt[keep].max() + 1, len(sig)))
    dist, idx = cKDTree(xs).query(cen[keep], k=k)
    dist, idx = dist.reshape(len(keep), k), idx.reshape(len(keep), k)
    other = inv[np.minimum(idx, len(sig) - 1)] != keep[:, None]
    sep = np.where(other, dist, np.inf).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sep > 0, spread[keep] / sep, np.inf)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores [E]`` for the binary ``labels [E]`` (ties count one half); NaN when
    only one class is present."""
    y = np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def edge_efficiency_purity(
    scores: np.ndarray, labels: np.ndarray, cut: float = 0.5
) -> dict[str, float]:
    """Edges kept by ``scores > cut``: ``efficiency`` (true edges kept / true edges) and
    ``purity`` (true among the kept); NaN where a denominator is 0."""
    y = np.asarray(labels, bool)
    kept = np.asarray(scores) > cut
    n_true, n_kept = int(y.sum()), int(kept.sum())
    hit = int((kept & y).sum())
    return {
        "efficiency": hit / n_true if n_true else float("nan"),
        "purity": hit / n_kept if n_kept else float("nan"),
    }
