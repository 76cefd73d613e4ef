"""The default GNN fine-tuned on full mu = 200 events (train for what you evaluate).

    python launch/train.py --config=configs/experiments/finetune_full.py --workdir=workdirs/finetune_full \\
        --config.gnn.init_checkpoint=<a trained default workdir or pipeline> \\
        --config.stage1_checkpoint=<its stage 1> "--config.stages=('stage1','stage2')"

The default GNN trains on whole 10 %-track events (~10k hits each, cheap steps) and meets ten
times the density on full events (a_ij ROC AUC 0.949 there against 0.992 at 10 %). This config
continues its training on eta-phi sectors of full events (2 x 4 sectors of ~15k hits) at a lower
learning rate, starting from the trained parameters (``gnn.init_checkpoint``); Split/Stop then
train on full-event sectors too, and Stop's cut is calibrated on full validation events.

``configs/default.py:dense`` (:func:`configs.default.dense`) on 6 events for 400 steps, with every
stage listed.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    c = default.dense()
    c.stages = default.base().stages
    c.data.gnn_train_events = 6
    c.gnn.steps = 400
    return c
