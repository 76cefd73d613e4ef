"""Every stage at a toy size, for the end-to-end test of ``train_and_evaluate`` (seconds on a CPU).

python launch/train.py --config=configs/test.py --workdir=/tmp/cgnn_test
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    # the shipped recipe, toy-sized, on the kNN graph (a module map needs hundreds of events; its
    # toy trainings: tests/test_module_map_stage1.py), the simulator's own luminous region
    c = default.knn_graph(default.base())
    c.data.vertex_sigma_z = None
    c.loop.log_every = 10
    c.loop.checkpoint_every = 4  # often: the resume test interrupts every run after 6 steps

    c.data.train_events = 2
    c.data.mu = 10.0
    c.data.track_fraction = 0.3
    c.data.gnn_train_events = None  # stages 2-3 on the stage-1 events
    c.data.gnn_track_fraction = None

    c.embedding.hidden = (32, 32)
    c.embedding.dim = 8
    c.embedding.batch_pairs = 512
    c.embedding.steps = 24
    c.embedding.hard_steps = 24  # 2 rounds of 12 (the resume test cuts every run after 6 steps)
    c.embedding.hard_rounds = 2
    c.embedding.hard_pool = 10_000
    c.graph.k = 8
    c.graph.zone_k = 8  # the zone map (learned from the toy events) keeps 8 of 16 candidates
    c.graph.candidates = 16
    c.filter.hidden = (16, 16)
    c.filter.batch_edges = 512
    c.filter.steps = 24

    c.gnn.update(num_layers=1, hidden=8, kernel_hidden=4, out_dim=8, steps=12, sectors=(1, 2))
    c.gnn.eval_edges_per_event = 1024

    c.cluster.update(epochs=2, e2e_epochs=2, train_depth=4, max_depth=6, sectors=(1, 2))
    c.cluster.prior_columns = ()
    c.cluster.val_loss = False  # the TrackML score alone picks the best parameters
    c.cluster.val_events = 1  # (the default recipe validates and calibrates Stop on 2)
    return c
