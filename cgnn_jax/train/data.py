"""Training data of the learned stages: the shared training events, stacked hits for pair
sampling (stage 1), and padded sector sub-graphs with their one batch sampler (stages 2, 3, e2e)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import numpy as np

from cgnn_jax.cluster.targets import dense_particle_labels
from cgnn_jax.graph.batch import (
    balanced_sample,
    eval_edge_pool,
    graph_budget,
    padded_graph,
    sector_subgraphs,
    stack_graphs,
)
from cgnn_jax.inference.events import PreparedEvent, evaluation_events, prepare_event
from cgnn_jax.sim.dataset import simulated_events
from cgnn_jax.utils.padding import pad_rows

__all__ = [
    "PairData",
    "PreparedEvent",
    "SubgraphSet",
    "TrainingEvents",
    "epoch_batch_at",
    "evaluation_events",
    "pair_data",
    "prepare_event",
    "sample_batch",
    "simulated_events",
]


@dataclasses.dataclass
class PairData:
    """Concatenated hits of several events for pair sampling inside jit (all numpy, ``[N]``).

    ``x [N, F]`` features; ``pid [N]``; ``event_start/event_count [N]`` the row range of each
    hit's event; ``signal [S]`` rows of non-noise hits; ``by_particle [S]`` signal rows grouped by
    particle and, within a particle, ordered along the trajectory (by distance from the origin),
    with ``group_start/group_count/rank [N]`` for each hit's particle group (``rank ± 1``: the
    hit's neighbours on its track).
    """

    x: np.ndarray
    pid: np.ndarray
    event_start: np.ndarray
    event_count: np.ndarray
    signal: np.ndarray
    by_particle: np.ndarray
    group_start: np.ndarray
    group_count: np.ndarray
    rank: np.ndarray


def pair_data(events: list[PreparedEvent]) -> PairData:
    """Stack events; particle ids are made unique across events."""
    x = np.concatenate([e.hf.x for e in events]).astype(np.float32)
    counts = np.array([e.n for e in events])
    starts = np.cumsum(counts) - counts
    ev_start = np.repeat(starts, counts)
    ev_count = np.repeat(counts, counts)
    # A particle is (event index, particle_id): ids are only unique within an event.
    event_index = np.repeat(np.arange(len(events)), counts)
    raw = np.concatenate([e.pid for e in events])
    _, key = np.unique(np.stack([event_index, raw], 1), axis=0, return_inverse=True)
    key = key.reshape(-1)
    signal = np.flatnonzero(raw != 0)
    dist = np.linalg.norm(np.concatenate([e.hf.pos for e in events]), axis=1)
    order = signal[np.lexsort((dist[signal], key[signal]))]
    k_sorted = key[order]
    first = np.r_[0, np.flatnonzero(np.diff(k_sorted)) + 1]
    cnt = np.diff(np.r_[first, len(order)])
    n = len(x)
    group_start = np.zeros(n, np.int64)
    group_count = np.ones(n, np.int64)
    rank = np.zeros(n, np.int64)
    group_start[order] = np.repeat(first, cnt)
    group_count[order] = np.repeat(cnt, cnt)
    rank[order] = np.arange(len(order)) - np.repeat(first, cnt)
    pid = np.where(raw != 0, key + 1, 0).astype(np.int64)
    return PairData(x, pid, ev_start, ev_count, signal, order, group_start, group_count, rank)


# --------------------------------------------------------------------------- shared events


class TrainingEvents:
    """The events every stage trains on, simulated once per run and shared by the stages.

    ``train``: ``data.train_events`` events (seed ``data.seed``) at ``data.track_fraction``, for
    stage 1; ``gnn_train``: the events of stages 2, 3 and e2e, ``data.gnn_train_events`` events
    at ``data.gnn_track_fraction`` (seed ``data.seed + 104729``; the stage-1 events themselves
    when both are unset); ``validation``: the held-out events of stages 3 and e2e
    (``cluster.val_events``, seed ``data.seed + 7919``, ids from 1000, at the stage-2 fraction).
    All are simulated on first use; :meth:`graphs` caches each event's stage-1 graphs.
    ``data.vertex_sigma_z`` (optional): the luminous region of all of them, an RMS in mm or a
    range ``(low, high)`` each event draws its own from (:func:`cgnn_jax.sim.dataset.
    event_vertex_sigma_z`); unset: the simulator's native vertices (σ_z ≈ 6 mm).
    """

    def __init__(self, config, log=print):
        self.config = config
        self._log = log
        self._train: list[PreparedEvent] | None = None
        self._gnn: list[PreparedEvent] | None = None
        self._mix: list[PreparedEvent] | None = None
        self._val: list | None = None
        self._graphs: dict = {}

    @property
    def vertex_sigma_z(self):
        """``data.vertex_sigma_z`` (``None`` when unset), a range as a tuple."""
        v = self.config.data.get("vertex_sigma_z", None)
        return tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else v

    def _region(self) -> str:
        v = self.vertex_sigma_z
        return "" if v is None else f", vertex_sigma_z={v}"

    @property
    def gnn_fraction(self) -> float:
        d = self.config.data
        f = d.get("gnn_track_fraction", None)
        return float(d.track_fraction if f is None else f)

    @property
    def gnn_train(self) -> list[PreparedEvent]:
        d = self.config.data
        n, f = d.get("gnn_train_events", None), d.get("gnn_track_fraction", None)
        if n is None and f is None:
            return self.train
        if self._gnn is None:
            n = int(d.train_events if n is None else n)
            self._log(
                f"simulating {n} stage-2 training events (mu={d.mu}, "
                f"track_fraction={self.gnn_fraction}{self._region()})"
            )
            raw = simulated_events(
                n, d.seed + 104729, d.mu, self.gnn_fraction,
                first_event=2000, vertex_sigma_z=self.vertex_sigma_z,
            )  # fmt: skip
            self._gnn = [prepare_event(e) for e in raw]
        return self._gnn

    @property
    def gnn_mix(self) -> list[PreparedEvent]:
        """``data.gnn_mix_events`` further stage-2 training events at ``data.gnn_mix_fraction``
        (seed ``data.seed + 15485863``, ids from 3000; none when unset): a GNN trained on a mix
        of densities (e.g. 10 %-track events and full-event sectors)."""
        d = self.config.data
        n = int(d.get("gnn_mix_events", 0) or 0)
        if n <= 0:
            return []
        if self._mix is None:
            f = float(d.get("gnn_mix_fraction", 1.0))
            self._log(
                f"simulating {n} more stage-2 training events (mu={d.mu}, track_fraction={f}"
                f"{self._region()})"
            )
            raw = simulated_events(
                n, d.seed + 15485863, d.mu, f, first_event=3000, vertex_sigma_z=self.vertex_sigma_z
            )
            self._mix = [prepare_event(e) for e in raw]
        return self._mix

    @property
    def train(self) -> list[PreparedEvent]:
        if self._train is None:
            d = self.config.data
            self._log(
                f"simulating {d.train_events} training events (mu={d.mu}, "
                f"track_fraction={d.track_fraction}{self._region()})"
            )
            raw = simulated_events(
                d.train_events, d.seed, d.mu, d.track_fraction, vertex_sigma_z=self.vertex_sigma_z
            )
            self._train = [prepare_event(e) for e in raw]
        return self._train

    @property
    def validation(self) -> list:
        """Whole events with truth (:class:`cgnn_jax.io.Event`: scored by TrackML)."""
        if self._val is None:
            self._val = self.validation_events(
                int(self.config.cluster.val_events), self.gnn_fraction
            )
        return self._val

    def validation_events(self, n: int, track_fraction: float) -> list:
        """``n`` whole validation events with ``track_fraction`` of the tracks: the seeds of
        :attr:`validation` (disjoint from every training and test seed), any density."""
        d = self.config.data
        self._log(
            f"simulating {n} validation events (mu={d.mu}, track_fraction={track_fraction}"
            f"{self._region()})"
        )
        return simulated_events(
            n, d.seed + 7919, d.mu, track_fraction,
            first_event=1000, vertex_sigma_z=self.vertex_sigma_z,
        )  # fmt: skip

    def graphs(
        self, stage1, events: list[PreparedEvent], kind: str, threshold: float | None = None
    ) -> list[dict]:
        """Per event: its stage-1 embedding graph ``emb`` and the GNN input graph ``input``
        (``kind``: ``"refined"`` or ``"embedding"``; ``threshold``: the refined graph's cut,
        ``None`` = stage 1's), each ``(senders, receivers)``."""
        from cgnn_jax.inference.stage2 import input_graph

        out = []
        for ev in events:
            key = (id(stage1), kind, threshold, ev.event_id, ev.n)
            if key not in self._graphs:
                emb = stage1.embedding_graph(ev)
                inp = input_graph(ev, stage1, kind, emb, threshold)
                self._graphs[key] = {"emb": emb, "input": inp}
            out.append(self._graphs[key])
        return out


# --------------------------------------------------------------------------- sub-graphs


@dataclasses.dataclass
class SubgraphSet:
    """Padded η–φ sector sub-graphs of events (one node / edge ``budget``), each with its dense
    particle labels ``[N]`` and its evaluation-edge pool ``(s, r, y)`` for the hinge loss."""

    graphs: list
    labels: list[np.ndarray]
    pools: list[tuple]
    budget: tuple[int, int]
    n_eval: int
    layers: list[np.ndarray] | None = None  # [N] detector-layer index per node (atoms' merge)

    def __len__(self) -> int:
        return len(self.graphs)


def eval_per_graph(config) -> int:
    """Evaluation edges per sub-graph (static): ``gnn.eval_edges_per_event / n_sectors``, even."""
    n_eta, n_phi = config.gnn.sectors
    return max(2 * math.ceil(config.gnn.eval_edges_per_event / (n_eta * n_phi) / 2), 2)


def event_subgraphs(
    config, ev: PreparedEvent, x: np.ndarray, graph: dict, sectors, seed: int
) -> list[dict]:
    """The η–φ sector sub-graphs of one event, unpadded: node inputs ``x [n, F]`` cut with the
    input graph, the evaluation-edge pool (the embedding graph, ``gnn.true_pairs_per_hit x n``
    same-particle and ``gnn.random_pairs_per_hit x n`` random pairs) and ``label`` (dense)."""
    c = config.gnn
    rng = np.random.default_rng([seed, ev.event_id])
    es, er = graph["emb"]
    pool = eval_edge_pool(
        es, er, ev.pid, int(c.true_pairs_per_hit * ev.n), rng, int(c.random_pairs_per_hit * ev.n)
    )
    s, r = graph["input"]
    n_eta, n_phi = sectors
    subs = sector_subgraphs(
        np.asarray(x, np.float32), ev.hf.pos, s, r, pool,
        n_eta, n_phi, c.sector_margin_eta, c.sector_margin_phi,
    )  # fmt: skip
    for sub in subs:
        pid = ev.pid[sub["nodes_index"]]
        sub["label"] = dense_particle_labels(pid, np.ones(len(pid), bool))
        sub["layer"] = np.asarray(ev.hf.layer_index, np.int32)[sub["nodes_index"]]
    return subs


def trainable_subgraphs(subs: list[dict]) -> list[dict]:
    """The sub-graphs whose evaluation edges hold both true and false pairs (a hinge loss)."""
    out = [s for s in subs if s["eval"][2].any() and (~s["eval"][2]).any()]
    if not out:
        raise ValueError("no training sub-graph holds both true and false evaluation edges")
    return out


def subgraph_budget(subs: list[dict]) -> tuple[int, int]:
    """One ``(node, edge)`` budget that fits every sub-graph."""
    return graph_budget(max(len(s["x"]) for s in subs), max(len(s["senders"]) for s in subs))


def pad_subgraphs(subs: list[dict], budget: tuple[int, int], m: int) -> SubgraphSet:
    graphs = [
        padded_graph(s["x"], s["senders"], s["receivers"], None, budget, m, s["nodes_index"])
        for s in subs
    ]
    labels = [pad_rows(s["label"].astype(np.int32), budget[0]) for s in subs]
    layers = (
        [pad_rows(s["layer"], budget[0]) for s in subs] if subs and "layer" in subs[0] else None
    )
    return SubgraphSet(graphs, labels, [s["eval"] for s in subs], budget, m, layers)


def sample_batch(data: SubgraphSet, idx: np.ndarray, rng: np.random.Generator) -> dict:
    """Stack the sub-graphs ``idx`` ``[B]`` with their labels and a fresh balanced sample of
    ``data.n_eval`` evaluation edges each (half true where the pool allows)."""
    m = data.n_eval
    out = []
    for i in idx:
        s, r, y = balanced_sample(*data.pools[i], m, rng)
        out.append(
            dataclasses.replace(
                data.graphs[i],
                eval_senders=pad_rows(s.astype(np.int32), m),
                eval_receivers=pad_rows(r.astype(np.int32), m),
                eval_y=pad_rows(y.astype(bool), m),
                eval_mask=np.arange(m) < len(s),
            )
        )
    batch = stack_graphs(out)
    batch["label"] = np.stack([data.labels[i] for i in idx])
    if data.layers is not None:
        batch["layer"] = np.stack([data.layers[i] for i in idx])
    return batch


def epoch_batch_at(
    data: SubgraphSet, batch_size: int, steps_per_epoch: int, seed: int, shuffle: bool
) -> Callable[[int], dict]:
    """``step -> batch``: with ``shuffle``, epoch ``step // steps_per_epoch`` is a permutation
    of the sub-graphs (seeded by the epoch); else each step draws ``batch_size`` at random.
    Every draw is seeded by ``(seed, process, step)``: a resumed run redraws the same batches."""
    proc = jax.process_index()

    def batch_at(step: int) -> dict:
        rng = np.random.default_rng([seed, proc, step])
        if shuffle:
            epoch, it = divmod(step, steps_per_epoch)
            order = np.random.default_rng([seed, proc, epoch, 1]).permutation(len(data))
            idx = order[it * batch_size : (it + 1) * batch_size]
            if len(idx) < batch_size:
                idx = np.concatenate([idx, rng.choice(len(data), batch_size - len(idx))])
        else:
            idx = rng.choice(len(data), size=batch_size, replace=len(data) < batch_size)
        return sample_batch(data, idx, rng)

    return batch_at
