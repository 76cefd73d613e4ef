"""The default model's dense variant: its mixed-density GNN fine-tuned on full mu = 200 events.

    python launch/train.py --config=configs/finetune_dense.py --workdir=workdirs/default_dense \\
        --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default_mix \\
        "--config.stages=('stage1','stage2')"
    python launch/export_model.py --workdir=workdirs/default_mix --dense=workdirs/default_dense \\
        --dense_min_hits=25000   # make train-default also passes --gnn (configs/finetune_sparse.py)

1400 steps in one cosine schedule on the 2 x 4 eta-phi sectors of 12 full events (~30 min here; 800
steps gave 0.584 on full events, 1600 gave 0.607: docs/experiments.md, E3 and E6; 1400 keeps ``make
train-default`` within 90 minutes). ``launch/export_model.py --dense`` ships this GNN inside the
default model, with the default's Split/Stop, as its dense variant (Stop's cut chosen again for it
by ``--calibrate_stop_events``): ``Pipeline.reconstruct`` runs it on events of at least
``--dense_min_hits`` hits (``Pipeline.for_hits``). One GNN of 4 x 32 does not serve both densities
(``configs/finetune_full.py``: +0.06 on full events, -0.10 at 10 % of the tracks); two on one stage
1 can. Split/Stop are not retrained: on full events the pipeline already scores what its atoms
allow, and Split/Stop retrained on full-event sectors scored lower on the validation sectors after
one epoch (0.573) than at its start (0.587; docs/experiments.md).
"""

import ml_collections

from configs import finetune_full


def get_config() -> ml_collections.ConfigDict:
    c = finetune_full.get_config()
    c.data.gnn_train_events = 12
    c.gnn.steps = 1400
    return c
