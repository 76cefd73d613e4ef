"""Stage 1 on module-map candidates (:mod:`cgnn_jax.graph.module_map`): the map of the module
pairs that consecutive hits of simulated particles join, learned from ``graph.map_events`` full
events, gives each event's candidate pairs inside the pairs' doublet windows; the edge filter,
trained on those candidates (true consecutive pairs against a sample of the rest), keeps the
``filter.edges_per_hit`` best-scored pairs per hit as the GNN's input graph; a first pass
(``filter.prefilter_*``, :mod:`cgnn_jax.models.prefilter`) drops most candidates before it.
The training events spread their collisions along the beam by a sigma_z drawn per event from
5-60 mm, as in ``configs/experiments/luminous.py``.

    # stage 1 alone (embedding, module map, filter and its cut)
    python launch/train.py --config=configs/experiments/module_map.py:stage1 --workdir=W1
    # the dense variant's GNN fine-tuned from the shipped model's on that stage 1's graph
    python launch/train.py --config=configs/experiments/module_map.py:dense --workdir=W2 \\
        --config.stage1_checkpoint=W1 --config.gnn.init_checkpoint=cgnn_jax/pretrained/default
    # the GNN for events of 10 % of the tracks, the same way, at a lower filter cut
    python launch/train.py --config=configs/experiments/module_map.py:sparse --workdir=W3 \\
        --config.stage1_checkpoint=W1 --config.gnn.init_checkpoint=cgnn_jax/pretrained/default

Measured in ``docs/experiments.md`` (section "Module map (stage 1 candidates)").
"""

import ml_collections

from configs import default

#: the range of the luminous region's length (RMS, mm) drawn per training event
VERTEX_SIGMA_Z = (5.0, 60.0)


def _module_map(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    with c.unlocked():
        c.data.vertex_sigma_z = VERTEX_SIGMA_Z
        c.data.train_events = 6
        c.graph.builder = "module_map"
        c.graph.map_events = 300  # simulated full events the map is learned from
        c.graph.window_margin = 0.1  # widen each doublet window by this share of its width ...
        c.graph.window_floor = 1.0  # ... and this many times module_map.DEFAULT_FLOOR
        c.filter.hidden = (64, 64, 64)
        c.filter.negative_rate = 0.05  # share of the false candidates the filter trains on
        c.filter.edges_per_hit = 12.0  # the cut keeps this many distinct edges per hit
        # a first pass (cgnn_jax.models.prefilter; 0 hidden units: none) before the filter,
        # reading where each pair sits in its module pair's windows: keeps ~0.22 of the
        # candidates and prefilter_recall of the true edges the filter keeps
        c.filter.prefilter_hidden = 32
        c.filter.prefilter_windows = True
        c.filter.prefilter_recall = 0.995
        c.filter.prefilter_steps = 6000
        c.filter.target_purity = 0.0  # (the knn builder's cut; unused here)
        c.gnn.input_threshold = -1.0  # the GNN's input graph: the filter's learned cut
    return c


def stage1() -> ml_collections.ConfigDict:
    c = _module_map(default.stage12())
    c.stages = ("stage1",)
    return c


def dense() -> ml_collections.ConfigDict:
    return _module_map(default.dense())


def sparse() -> ml_collections.ConfigDict:
    c = _module_map(default.sparse())
    c.gnn.input_threshold = (
        0.005  # ~8.5 edges per hit on 10 %-track events (12 at the learned cut on full ones)
    )
    c.gnn.steps = 400
    return c


def get_config(step: str = "stage1") -> ml_collections.ConfigDict:
    steps = {"stage1": stage1, "dense": dense, "sparse": sparse}
    if step not in steps:
        raise ValueError(
            f"configs/experiments/module_map.py:{step}: no such step; valid: {', '.join(steps)}"
        )
    return steps[step]()
