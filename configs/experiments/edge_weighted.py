"""The thesis's edge-weighted GCN (stage 2) with Split/Stop and end-to-end fine-tuning (10 % of
tracks 0.21, full events 0.11).

    python launch/train.py --config=configs/experiments/edge_weighted.py --workdir=workdirs/edge_weighted

For comparison with ``configs/default.py`` (the interaction GNN), which scores higher.
"""

import ml_collections

from cgnn_jax.features.hits import FEATURE_NAMES
from configs.experiments import stage3


def get_config() -> ml_collections.ConfigDict:
    c = stage3.get_config()
    # the residual GNN keeps the stage-1 space and learns a correction (better kNN recall)
    c.gnn.residual = True
    c.gnn.out_dim = 12
    c.gnn.degree_norm = True

    # Split/Stop (stage 3) and end-to-end training: configs/experiments/stage3.py's cluster block, with:
    c.cluster.sectors = (3, 6)  # training sub-graphs of ~7k hits
    c.cluster.train_depth = 18
    # Split starts from each cluster's principal axis in the hits' angular position (cos φ, sin φ,
    # η columns of h = [GNN output, hit features]): the GNN space's largest spread is the hit's
    # radius, and a prior on it (prior_dims = out_dim) cut every track in two at the root
    # (validation TrackML score 0.03 after 12 epochs, against 0.07 after 4 with this prior)
    c.cluster.prior_columns = tuple(
        c.gnn.out_dim + FEATURE_NAMES.index(name) for name in ("cos_phi", "sin_phi", "eta")
    )
    c.cluster.learning_rate = 1e-2
    c.cluster.epochs = 12  # one epoch = the 72 sub-graphs of the 4 training events
    c.cluster.e2e_epochs = 4
    c.cluster.e2e_learning_rate = 1e-4
    return c
