"""The shipped stage 1's context filter trained onto a stage 1 that has none (e.g. one trained
with ``filter.context_hidden = ()``, or a stage-1 experiment's):

python launch/train.py --config=configs/experiments/context_filter.py --workdir=W \\
    --config.stage1_checkpoint=S
python launch/export_model.py --workdir=M0 --stage1=W --out=M
python launch/diagnose.py --checkpoint=M --fraction=1

``configs/default.py``'s stage 1 (:func:`configs.default.stage1`), stage 1 alone: the first pass
keeps three quarters of the module-map candidates, two 3 x 64 context rounds, the first round's
best 60 edges per hit pass to the second, whose cut keeps 16 edges per hit (the GNN's graph at
stage 1's learned cut: the dense variant's), trained on the 6 full stage-1 events.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    default.stage1(c)
    c.stages = ("stage1",)
    return c
