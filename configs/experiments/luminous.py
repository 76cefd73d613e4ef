"""The shipped recipe trained on a long luminous region: the training events' collisions spread
along the beam by a sigma_z drawn per event from 5-60 mm (``data.vertex_sigma_z``), so that one
model serves TrackML productions with a 6 mm and a ~50 mm luminous region.

    # stage 1 alone (the shipped recipe's embedding, filter and zone map)
    python launch/train.py --config=configs/experiments/luminous.py:stage1 --workdir=W1
    # the sparse variant's GNN fine-tuned from the shipped model's, on that stage 1
    python launch/train.py --config=configs/experiments/luminous.py:sparse --workdir=W2 \
        --config.stage1_checkpoint=W1 --config.gnn.init_checkpoint=cgnn_jax/pretrained/default
    # the dense variant's GNN, the same way (1400 steps on the sectors of 12 full events)
    python launch/train.py --config=configs/experiments/luminous.py:dense --workdir=W3 \
        --config.stage1_checkpoint=W1 --config.gnn.init_checkpoint=cgnn_jax/pretrained/default

Measured in ``docs/experiments.md`` (the rows of the luminous-region section): the stage-1 GNN
input graph's ceiling on the shipped real event, and the scores with these stages swapped into the
shipped pipeline.
"""

import ml_collections

from configs import default

#: the range of the luminous region's length (RMS, mm) drawn per training event
VERTEX_SIGMA_Z = (5.0, 60.0)


def _long_region(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    with c.unlocked():
        c.data.vertex_sigma_z = VERTEX_SIGMA_Z
    return c


def stage1() -> ml_collections.ConfigDict:
    c = _long_region(default.stage12())
    c.stages = ("stage1",)
    return c


def sparse() -> ml_collections.ConfigDict:
    c = _long_region(default.sparse())
    c.gnn.steps = 400
    return c


def dense() -> ml_collections.ConfigDict:
    return _long_region(default.dense())


def get_config(step: str = "stage1") -> ml_collections.ConfigDict:
    steps = {"stage1": stage1, "sparse": sparse, "dense": dense}
    if step not in steps:
        raise ValueError(
            f"configs/experiments/luminous.py:{step}: no such step; valid: {', '.join(steps)}"
        )
    return steps[step]()
