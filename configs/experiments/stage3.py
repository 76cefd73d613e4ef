"""Stages 1-3 and end-to-end fine-tuning with the ``config.cluster`` block (Split/Stop).

python launch/train.py --config=configs/experiments/stage3.py --workdir=workdirs/stage3

The base of the experiments' Split/Stop configs; ``cluster_config()`` is the ``cluster`` block alone.
"""

import ml_collections

from configs import default
from configs.experiments import stage2


def cluster_config() -> ml_collections.ConfigDict:
    """The ``config.cluster`` block: ``configs/default.py``'s (:func:`configs.default.stage3`)
    with atoms only where ``merge``/``component_cut`` ask for them, a tree on every hit, no
    extension, and longer stage-3 and e2e training on η–φ sectors of ~6k hits."""
    c = ml_collections.ConfigDict()
    default.stage3(c)
    k = c.cluster
    del k["tree_rows"]  # the tree on every hit (inference.stage3.tree_rows: "points")
    k.inputs = "gnn+features"  # or "gnn": what Split/Stop see
    k.train_depth = 20  # levels of the training trees (sector sub-graphs)
    k.sectors = (3, 6)  # η–φ sectors of the training sub-graphs (~6k hits each at μ = 200)
    # atoms of the graph-consistent Split (none by default): "components" = connected components
    # of the GNN edges with a_ij > component_cut (> 0); "layers" = their layer-constrained merge
    k.merge = "components"
    k.component_cut = 0.0
    k.epochs = 20  # stage 3 (Split/Stop only)
    k.e2e_epochs = 10  # end to end (input embedding, GNN, Split, Stop)
    k.val_events = 1
    k.extend_iterations = 0  # > 0: the track extension (cluster/extend.py)
    return k


def get_config() -> ml_collections.ConfigDict:
    c = stage2.get_config()
    c.stages = ("stage1", "stage2", "stage3", "e2e")
    c.cluster = cluster_config()
    return c
