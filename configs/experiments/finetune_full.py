"""The default GNN fine-tuned on full mu = 200 events (train for what you evaluate).

    python launch/train.py --config=configs/experiments/finetune_full.py --workdir=workdirs/finetune_full \\
        --config.gnn.init_checkpoint=<a trained default workdir or pipeline> \\
        --config.stage1_checkpoint=<its stage 1> "--config.stages=('stage1','stage2')"

The default GNN trains on whole 10 %-track events (~10k hits each, cheap steps) and meets ten
times the density on full events (a_ij ROC AUC 0.949 there against 0.992 at 10 %). This config
continues its training on eta-phi sectors of full events (2 x 4 sectors of ~15k hits) at a lower
learning rate, starting from the trained parameters (``gnn.init_checkpoint``); Split/Stop then
train on full-event sectors too, and Stop's cut is calibrated on full validation events.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    c = default.base()
    c.data.gnn_train_events = 6
    c.data.gnn_track_fraction = 1.0
    c.gnn.sectors = (2, 4)
    c.gnn.eval_edges_per_event = 131072  # 16k evaluation edges per sector
    c.gnn.steps = 400
    c.gnn.learning_rate = 1e-3
    c.cluster.sectors = (2, 4)  # Split/Stop on full-event sectors of ~15k hits
    return c
