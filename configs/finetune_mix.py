"""The default GNN fine-tuned on a mix of densities: its 24 whole 10 %-track events and the
η–φ sectors of 6 full mu = 200 events, drawn at random (issue 13: one default for both).

    python launch/train.py --config=configs/finetune_mix.py --workdir=workdirs/finetune_mix \\
        --config.gnn.init_checkpoint=<a trained default workdir or pipeline> \\
        --config.stage1_checkpoint=<its stage 1> "--config.stages=('stage1','stage2')"

``configs/finetune_full.py`` (full-event sectors alone) gained 0.06 on full events and lost 0.10
at 10 % of the tracks; here the 10 % events stay in the training set.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    c = default.get_config()
    c.data.gnn_mix_events = 6
    c.data.gnn_mix_fraction = 1.0
    c.gnn.mix_sectors = (2, 4)
    c.gnn.eval_edges_per_event = 32768  # per sub-graph: a whole 10 % event or a full-event sector
    c.gnn.steps = 400
    c.gnn.learning_rate = 1e-3
    return c
