"""A context filter trained onto an existing stage 1 (e.g. the shipped model's), two rounds: the
GNN input graph of full events from the neighbourhood of each candidate edge.

python launch/train.py --config=configs/experiments/context_filter.py --workdir=W \\
    --config.stage1_checkpoint=cgnn_jax/pretrained/default
python launch/export_model.py --workdir=cgnn_jax/pretrained/default --stage1=W --out=M
python launch/diagnose.py --checkpoint=M --fraction=1

``configs/default.py``'s stage 1 (:func:`configs.default.stage1`) with ``filter.context_*`` set:
the first pass keeps three quarters of the module-map candidates, two 3 x 64 context rounds, the
first round's best 60 edges per hit pass to the second, whose cut keeps 16 edges per hit (the
GNN's graph at stage 1's learned cut: the dense variant's), trained on the 6 full stage-1 events.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    default.stage1(c)
    c.stages = ("stage1",)
    c.filter.context_hidden = (64, 64, 64)
    c.filter.context_rounds = 2
    c.filter.context_keep_fraction = 0.75
    c.filter.context_prune_edges_per_hit = 60.0
    c.filter.context_edges_per_hit = 16.0
    c.filter.context_steps = 3000
    return c
