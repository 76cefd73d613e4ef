r"""Context features for stage 1's edge filter: how much of the GNN input ceiling they add.

    python benchmarks/filter_context_probe.py [--train_events=3] [--test_events=1]
        [--keep_fraction=0.5] [--score=filter] [--variants=control,rivals,context]
        [--steps=3000] [--pipeline] [--json_out=PATH]

On the shipped model's module-map candidates of simulated full μ = 200 events, the first pass
(:mod:`cgnn_jax.models.prefilter`) keeps the ``--keep_fraction`` of each event's candidates it
scores highest (the shipped model keeps ~0.22 at its learned cut); ``--score`` (the shipped edge
filter's probability, or the first pass's sigmoid) then scores the kept edges. A fresh MLP
(3 × 64, LayerNorm) is trained on ``--train_events`` events (data seed 4242, σ_z drawn from
5–60 mm; every true consecutive pair and 5 % of the rest) with the inputs of each variant:

* ``control``: the shipped filter's inputs ``[x_i, x_j, z_ij]`` and the score;
* ``rivals``: + the edge's rivals at both ends (:func:`cgnn_jax.features.edge_context.edge_context`:
  the highest scores among the edges leaving and entering its hits, its own score relative to
  theirs, the degrees);
* ``context``: + its best continuation at each end (the same function: the change of cot θ and of
  curvature to the best of the 4 highest-scored edges that continue it, and that edge's score).

Each variant's GNN input ceiling (:func:`cgnn_jax.metrics.ceilings.oracle_components_ceiling`
of the edges above a global cut, both directions, as ``launch/diagnose.py`` counts them) is
printed at ~12.7 and ~19.8 edges per hit on ``--test_events`` unseen full events (the events
``launch/diagnose.py`` simulates: ``event_seed(99, i)``), beside the shipped filter's and the
kept set's own ceiling, with the time the context columns take on each test event
(:func:`cgnn_jax.inference.stage1.context_columns`: edges padded to a bucket; compiled on the
training events of the same bucket, else on the first).

With ``--pipeline`` (and the ``context`` variant), the shipped pipeline reconstructs each test
event twice and both are scored: as shipped, and with its GNN input graph replaced by the
``context`` MLP's ~12.7 highest-scored edges per hit (the cut chosen per event by the budget
alone, as the shipped filter's learned cut keeps ~12.7 on full events); the GNN, Split/Stop, the
merge and the extension are the shipped ones, not retrained on that graph.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_gib

CHUNK = 1 << 21


def _event(ev, s1, keep_fraction: float, score: str) -> dict:
    from cgnn_jax.graph.module_map import event_truth
    from cgnn_jax.inference.events import as_prepared
    from cgnn_jax.inference.stage1 import context_columns, edge_probabilities_fused
    from cgnn_jax.metrics.edges import consecutive_pairs

    pr = as_prepared(ev)
    s, r = s1.embedding_graph(pr)
    logit = np.asarray(s1.first_pass.logits(pr, s, r))
    keep = logit >= np.quantile(logit, 1 - keep_fraction) if keep_fraction < 1 else logit > -np.inf
    s, r, logit = s[keep], r[keep], logit[keep]
    pid, weight = event_truth(ev)
    pos = ev.hits[["x", "y", "z"]].to_numpy(np.float64)
    a, b = consecutive_pairs(pos, pid)
    n = pr.n
    y = np.isin(s.astype(np.int64) * n + r, a.astype(np.int64) * n + b)
    if score == "filter":
        p = edge_probabilities_fused(s1.filter_model, s1.filter_params, pr.hf, s, r)
    else:
        p = 1 / (1 + np.exp(-logit))
    p = p.astype(np.float32)
    t = time.perf_counter()
    c = context_columns(pr.hf, s, r, p)  # [p, rivals (10), continuation (8)]
    dt = time.perf_counter() - t
    rivals, context = c[:, 1:11], c[:, 11:]
    return dict(
        pr=pr, s=s, r=r, y=y, pid=pid, weight=weight, p=p, rivals=rivals, context=context,
        context_s=dt, event=ev,
    )  # fmt: skip


def _inputs(d: dict, idx: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from cgnn_jax.features.pairs_jax import pair_columns, pair_features_jnp

    @jax.jit
    def base(x, cols, s, t):
        return jnp.concatenate([x[s], x[t], pair_features_jnp(cols, s, t)], -1)

    x = jnp.asarray(np.asarray(d["pr"].hf.x, np.float32))
    cols = jnp.asarray(pair_columns(d["pr"].hf))
    rows = [
        np.asarray(base(x, cols, jnp.asarray(d["s"][j]), jnp.asarray(d["r"][j])))
        for j in (idx[k : k + CHUNK] for k in range(0, len(idx), CHUNK))
    ]
    return np.concatenate(
        [np.concatenate(rows), d["p"][idx, None], d["rivals"][idx], d["context"][idx]], 1
    )


def _budget_graph(d: dict, q: np.ndarray, target: float):
    """The undirected graph (both directions) of the global cut on ``q`` that keeps
    ~``target`` edges per hit: ``(senders, receivers, q)``."""
    from cgnn_jax.graph.module_map import symmetric_edges

    n, lo, hi = d["pr"].n, 0.0, 1.0
    for _ in range(25):
        t = 0.5 * (lo + hi)
        a, _, _ = symmetric_edges(d["s"], d["r"], q, n, t)
        lo, hi = (t, hi) if len(a) / n > target else (lo, t)
    return symmetric_edges(d["s"], d["r"], q, n, hi)


def _at_budget(d: dict, q: np.ndarray, target: float) -> tuple[float, float]:
    """(edges per hit, ceiling) at the global cut on ``q`` that keeps ~``target`` edges per hit."""
    from cgnn_jax.metrics.ceilings import oracle_components_ceiling

    a, b, _ = _budget_graph(d, q, target)
    return len(a) / d["pr"].n, oracle_components_ceiling(a, b, d["pid"], d["weight"])


def _scores(pipe, d: dict, q: np.ndarray, target: float) -> tuple[float, float]:
    """TrackML scores of the shipped pipeline on the event of ``d``: as shipped, and on the
    graph of :func:`_budget_graph` (the stages after the graph unchanged; the shipped graph
    through the same path must give the shipped score)."""
    import pandas as pd

    from cgnn_jax.metrics.score import score_event

    ev, pr = d["event"], d["pr"]

    def score(tid):
        sub = pd.DataFrame({"hit_id": ev.hits["hit_id"].to_numpy(), "track_id": tid})
        return score_event(ev.truth, sub)

    dense = pipe.for_hits(pr.n)
    votes = dense.config.cluster.iterative_rounds > 0

    def tracks(s, r):
        out = {}
        out["gnn"], out["edge_score"] = dense.stage2.outputs(pr, s, r)
        out.update(dense.stage3.outputs(pr, out["gnn"], out["edge_score"], s, r, votes=votes))
        return dense.stage3.tracks(pr, out)

    shipped = score(pipe.reconstruct(ev))
    g = dense.stage2.graph(pr)
    if (
        score(tracks(g["senders"], g["receivers"])) != shipped
    ):  # the swap itself must change nothing
        raise RuntimeError("the shipped graph through the swap does not give the shipped score")
    s, r, _ = _budget_graph(d, q, target)
    return shipped, score(tracks(s, r))


def _train(x: np.ndarray, y: np.ndarray, steps: int, rng: np.random.Generator):
    """A 3 x 64 MLP (LayerNorm) trained on standardized ``x``; ``(predict, final loss)``."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class Net(nn.Module):
        @nn.compact
        def __call__(self, v):
            for h in (64, 64, 64):
                v = nn.relu(nn.LayerNorm()(nn.Dense(h)(v)))
            return nn.Dense(1)(v)[:, 0]

    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = ((x - mu) / sd).astype(np.float32)
    net = Net()
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, x.shape[1])))
    tx = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    state = tx.init(params)

    def loss_fn(q, xb, yb):
        return optax.sigmoid_binary_cross_entropy(net.apply(q, xb), yb).mean()

    @jax.jit
    def step(params, state, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(params, xb, yb)
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state, loss

    loss = jnp.nan
    for _ in range(steps):
        j = rng.integers(0, len(xn), 16384)
        params, state, loss = step(params, state, xn[j], y[j])
    apply = jax.jit(lambda v: jax.nn.sigmoid(net.apply(params, v)))

    def predict(v: np.ndarray) -> np.ndarray:
        return np.asarray(apply(((v - mu) / sd).astype(np.float32)))

    return predict, float(loss)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train_events", type=int, default=3)
    ap.add_argument("--test_events", type=int, default=1)
    ap.add_argument("--keep_fraction", type=float, default=0.5)
    ap.add_argument("--score", choices=("filter", "first_pass"), default="filter")
    ap.add_argument("--variants", default="control,rivals,context")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--json_out", default="")
    args = ap.parse_args(argv)
    if not 0 < args.keep_fraction <= 1:
        ap.error(f"--keep_fraction must be in (0, 1], got {args.keep_fraction}")

    from cgnn_jax.inference.pipeline import Pipeline
    from cgnn_jax.sim import simulate_event
    from cgnn_jax.sim.dataset import event_seed

    if args.pipeline and "context" not in args.variants.split(","):
        ap.error("--pipeline needs the context variant in --variants")
    pipe = Pipeline.restore()
    s1 = pipe.stage1
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    xs, ys = [], []
    for i in range(args.train_events):
        sz = float(rng.uniform(5, 60))
        ev = simulate_event(np.random.default_rng([4242, i]), 200.0, event_id=100 + i,
                            vertex_sigma_z=sz)  # fmt: skip
        d = _event(ev, s1, args.keep_fraction, args.score)
        pos_, neg = np.flatnonzero(d["y"]), np.flatnonzero(~d["y"])
        idx = np.concatenate([pos_, rng.choice(neg, int(0.05 * len(neg)), replace=False)])
        xs.append(_inputs(d, idx))
        ys.append(d["y"][idx])
        print(f"training event {i}: {len(d['s'])} kept candidates, {int(d['y'].sum())} true "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    x_train, y_train = np.concatenate(xs), np.concatenate(ys).astype(np.float32)
    n_base = x_train.shape[1] - 19  # then the score, 10 rival and 8 continuation columns
    columns = {
        "control": np.arange(n_base + 1),
        "rivals": np.arange(n_base + 11),
        "context": np.arange(n_base + 19),
    }
    tests = []
    for e in range(args.test_events):
        ev = simulate_event(event_seed(99, e), 200.0, event_id=1 + e)  # as diagnose's
        d = _event(ev, s1, args.keep_fraction, args.score)
        d["x"] = _inputs(d, np.arange(len(d["s"])))
        tests.append(d)
    out = {"machine": machine(), "args": vars(args), "events": []}
    for e, d in enumerate(tests):
        from cgnn_jax.graph.module_map import symmetric_edges
        from cgnn_jax.metrics.ceilings import oracle_components_ceiling

        a, b, _ = symmetric_edges(d["s"], d["r"], np.ones(len(d["s"])), d["pr"].n, 0.0)
        row = {
            "kept_edges_per_hit": len(a) / d["pr"].n,
            "kept_ceiling": oracle_components_ceiling(a, b, d["pid"], d["weight"]),
            "score": {str(t): _at_budget(d, d["p"], t) for t in (12.7, 19.8)},
            "edge_context_s": d["context_s"],
        }
        out["events"].append(row)
        print(f"test event {e + 1}: kept {row['kept_edges_per_hit']:.1f} e/h, ceiling "
              f"{row['kept_ceiling']:.4f}; {args.score} score alone at ~12.7 / ~19.8 e/h: "
              + " / ".join(f"{v[1]:.4f}" for v in row["score"].values())
              + f"; edge_context {d['context_s']:.2f} s", flush=True)  # fmt: skip

    for name in args.variants.split(","):
        if name not in columns:
            ap.error(f"--variants: unknown {name!r} (choose from {', '.join(columns)})")
        c = columns[name]
        t1 = time.perf_counter()
        predict, loss = _train(x_train[:, c], y_train, args.steps, rng)
        for e, d in enumerate(tests):
            xt = d["x"][:, c]
            q = np.concatenate([predict(xt[k : k + CHUNK]) for k in range(0, len(xt), CHUNK)])
            res = {str(t): _at_budget(d, q, t) for t in (12.7, 19.8)}
            out["events"][e][name] = res
            print(f"{name} (loss {loss:.4f}, {time.perf_counter() - t1:.0f} s), test event "
                  f"{e + 1} at ~12.7 / ~19.8 e/h: "
                  + " / ".join(f"{v[1]:.4f}" for v in res.values()), flush=True)  # fmt: skip
            if args.pipeline and name == "context":
                shipped, swapped = _scores(pipe, d, q, 12.7)
                out["events"][e]["pipeline"] = {"shipped": shipped, "context_graph": swapped}
                print(f"pipeline, test event {e + 1}: shipped {shipped:.4f}, on the context "
                      f"graph {swapped:.4f}", flush=True)  # fmt: skip
    out["peak_rss_gib"] = peak_rss_gib()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
