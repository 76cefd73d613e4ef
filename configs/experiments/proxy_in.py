"""A fast proxy of the interaction GNN (supervised a_ij) and the graph-consistent Split
on 10 %-track events, on a given stage 1.

python launch/train.py --config=configs/experiments/proxy_in.py --workdir=workdirs/proxy_in \
    --config.stage1_checkpoint=workdirs/s1_shipped
"""

import ml_collections

from configs.experiments import stage3


def get_config() -> ml_collections.ConfigDict:
    c = stage3.get_config()
    c.data.track_fraction = 0.1
    c.data.train_events = 24
    c.gnn.arch = "interaction"
    c.gnn.num_layers = 4
    c.gnn.hidden = 48
    c.gnn.out_dim = 12
    c.gnn.input_graph = "embedding"
    c.gnn.sectors = (1, 1)  # whole 10 %-track events (~11k hits, ~400k edges)
    c.gnn.steps = 600
    c.gnn.learning_rate = 2e-3
    c.gnn.edge_weight = 1.0
    c.gnn.aux_weight = 0.5
    c.gnn.pos_weight = 2.0
    c.gnn.hinge_weight = 1.0
    c.gnn.eval_edges_per_event = 32768
    c.cluster.component_cut = 0.9
    c.cluster.inputs = "gnn"
    c.cluster.sectors = (1, 2)
    c.cluster.epochs = 6
    c.cluster.e2e_epochs = 0
    c.cluster.train_depth = 16
    c.cluster.val_events = 1
    return c
