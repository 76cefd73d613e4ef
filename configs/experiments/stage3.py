"""Stages 1-3 and end-to-end fine-tuning with the ``config.cluster`` block (Split/Stop).

python launch/train.py --config=configs/experiments/stage3.py --workdir=workdirs/stage3

The base of the experiments' Split/Stop configs; ``cluster_config()`` is the ``cluster`` block alone.
"""

import ml_collections

from configs.experiments import stage2


def cluster_config() -> ml_collections.ConfigDict:
    """The ``config.cluster`` block: Split/Stop, the recursion, stage-3 and e2e training."""
    c = ml_collections.ConfigDict()
    c.split_hidden = (32, 32)
    c.stop_hidden = (32, 32)
    c.split_init_scale = 1.0  # initial scale of the Split MLP's output layer
    c.prior_dims = 0  # > 0: Split adds a learned gain x the principal-axis projection of h[:, :k]
    c.prior_gain = 4.0
    c.prior_columns = ()  # or explicit columns of h for the prior (overrides prior_dims)
    c.stop_aggregate = "mean"  # or "max"
    c.inputs = "gnn+features"  # or "gnn": what Split/Stop see
    c.max_depth = 40  # levels at inference (full events; O(log n) are used)
    c.train_depth = 20  # levels of the training trees (sector sub-graphs)
    c.sectors = (3, 6)  # η–φ sectors of the training sub-graphs (~6k hits each at μ = 200)
    c.min_size = 3
    # atoms of the graph-consistent Split, which the tree never separates (none by default):
    # "components" = connected components of the GNN edges with a_ij > component_cut (> 0);
    # "layers" = their layer-constrained merge (cluster/merge.py): edges with a_ij >
    # merge_threshold join, most confident first, pieces sharing <= merge_max_shared layers
    c.merge = "components"
    c.component_cut = 0.0
    c.merge_threshold = 0.5
    c.merge_max_shared = 1
    c.stop_threshold = 0.5
    # after training, choose Stop's cut on the validation events (best TrackML score over
    # train.stage3.STOP_GRID); kept in the checkpoint as learned["stop_threshold"]
    c.calibrate_stop = True
    c.stop_weight = 1.0
    c.hinge_weight = 1.0  # GNN hinge loss beside the clustering losses (end to end)
    c.learning_rate = 3e-3
    c.e2e_learning_rate = 3e-4
    c.clip_norm = 1.0
    c.graphs_per_device = 1
    c.epochs = 20  # stage 3 (Split/Stop only)
    c.e2e_epochs = 10  # end to end (input embedding, GNN, Split, Stop)
    c.patience = 10  # epochs without validation gain before the learning rate is cut x0.1
    c.val_events = 1
    c.val_loss = True  # also log the losses on the validation sub-graphs (one more compilation)
    c.iterative_rounds = 0  # > 0: reconstruct() re-clusters low-confidence clusters (iterative)
    c.iterative_cutoff = 0.5
    # > 0: after the clustering, hits in tracks of <= extend_free_max hits join the track whose
    # helix road (half widths extend_tol_rphi across, extend_tol_z along the layer, mm) crosses
    # them; tracks of >= extend_min_size hits are extended (cluster/extend.py; not learned)
    c.extend_iterations = 0
    c.extend_tol_rphi = 12.0
    c.extend_tol_z = 15.0
    c.extend_free_max = 2  # chosen again per variant by export_model.py --calibrate_merge_events
    c.extend_min_size = 3
    return c


def get_config() -> ml_collections.ConfigDict:
    c = stage2.get_config()
    c.stages = ("stage1", "stage2", "stage3", "e2e")
    c.cluster = cluster_config()
    return c
