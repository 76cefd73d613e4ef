"""Stage 1 on the thesis's graph (metric learning + kNN graph + edge filter), sized for a 2-core
CPU (~15 min); the base of the thesis's configuration (``configs/experiments/stage2.py``,
``stage3.py``).

python launch/train.py --config=configs/experiments/stage1.py --workdir=workdirs/stage1

``configs/default.py``'s stage 1 (:func:`configs.default.stage1`) on the kNN graph with the zone map
instead of the module map (:func:`configs.default.knn_graph`), with its own stages 2, 3 and e2e
events left unset and checkpoints every 500 steps.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    default.stage1(c)
    default.knn_graph(c)
    c.stages = ("stage1",)
    c.loop.checkpoint_every = 500
    # stages 2, 3 and e2e train on their own events when either is set (else on data.train_events)
    c.data.gnn_train_events = ml_collections.config_dict.placeholder(int)
    c.data.gnn_track_fraction = ml_collections.config_dict.placeholder(float)
    return c
