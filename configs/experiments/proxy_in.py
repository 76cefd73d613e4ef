"""A fast proxy of the interaction GNN (supervised a_ij) and the graph-consistent Split
on 10 %-track events, on a given stage 1.

python launch/train.py --config=configs/experiments/proxy_in.py --workdir=workdirs/proxy_in \
    --config.stage1_checkpoint=workdirs/s1_shipped
"""

import ml_collections

from configs.experiments import interaction, stage3


def get_config() -> ml_collections.ConfigDict:
    c = stage3.get_config()
    c.data.track_fraction = 0.1
    c.data.train_events = 24
    interaction.interaction_gnn(c, hidden=48, steps=600, learning_rate=2e-3)
    c.cluster.component_cut = 0.9
    c.cluster.epochs = 6
    c.cluster.train_depth = 16
    c.cluster.val_events = 1
    return c
