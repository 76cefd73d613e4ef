"""Stage 1 (metric learning + graph construction), sized for a 2-core CPU (~15 min).

python launch/train.py --config=configs/experiments/stage1.py --workdir=workdirs/stage1
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.stages = ("stage1",)
    c.stage1_checkpoint = ml_collections.config_dict.placeholder(str)  # set: restore, not train

    c.loop = ml_collections.ConfigDict()  # cgnn_jax.train.loop.fit, every stage
    c.loop.log_every = 50  # steps between metric reads (metrics.csv, progress bar)
    c.loop.checkpoint_every = 500  # steps between periodic checkpoints (also at every epoch end)

    c.data = ml_collections.ConfigDict()
    c.data.seed = 1  # simulation seed of the training events
    c.data.train_events = 4
    c.data.mu = 200.0
    c.data.track_fraction = 1.0
    # stages 2, 3 and e2e train on their own events when either is set (else on the above)
    c.data.gnn_train_events = ml_collections.config_dict.placeholder(int)
    c.data.gnn_track_fraction = ml_collections.config_dict.placeholder(float)
    # stage 2 also trains on this many events at another density (0: none; sectors: gnn.mix_sectors)
    c.data.gnn_mix_events = 0
    c.data.gnn_mix_fraction = 1.0

    c.embedding = ml_collections.ConfigDict()
    c.embedding.hidden = (128, 128, 128)
    c.embedding.dim = 12
    c.embedding.margin = 1.0
    # share of the positive pairs between neighbours along a track (else any two of its hits)
    c.embedding.consecutive_fraction = 0.0
    c.embedding.learning_rate = 3e-3
    c.embedding.batch_pairs = 8192
    c.embedding.steps = 3000
    c.embedding.hard_steps = 3000
    c.embedding.hard_fraction = 0.25
    c.embedding.hard_rounds = 4  # hard_steps in rounds, each re-mining from the current embedding
    c.embedding.hard_k = 16
    c.embedding.hard_pool = 2_000_000

    c.graph = ml_collections.ConfigDict()
    c.graph.mode = "knn_radius"
    c.graph.k = 32
    c.graph.radius = 1.0
    c.graph.approx = 0.5  # approximate kd-tree query: (1 + approx) x the k-th distance
    # zone map (cgnn_jax.graph.zones): > 0 learns, after the filter, which zone pairs (this many
    # slices per layer) consecutive training hits join; the kNN graph keeps the k nearest of
    # its `candidates` nearest in allowed zones (k = zone_k there). 0: plain kNN.
    c.graph.zone_bins = 8
    c.graph.zone_k = 40
    c.graph.candidates = 64

    c.filter = ml_collections.ConfigDict()
    c.filter.hidden = (32, 32, 32)
    c.filter.learning_rate = 3e-3
    c.filter.batch_edges = 16384
    c.filter.steps = 3000
    c.filter.pos_weight = 1.0  # 0: learned, (1 - f) / f for a fraction f of true training edges
    c.filter.threshold = 0.5  # used when target_purity = 0; else the threshold is learned
    c.filter.target_purity = 0.5  # > 0: learn the lowest threshold reaching this edge purity
    return c
