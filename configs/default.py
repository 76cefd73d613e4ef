"""The default cgnn_jax model, shipped as ``cgnn_jax/pretrained/default``.

    make train-default   # = the two commands below, the two fine-tunes after them, the export
    python launch/train.py --config=configs/default.py --workdir=workdirs/default \
        "--config.stages=('stage1','stage2')"
    python launch/train.py --config=configs/finetune_mix.py --workdir=workdirs/default_mix \
        --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default

Sized for this project's 2-core CPU: 48 min 36 s in all here, measured end to end on 2026-12-01
in fresh workdirs (docs/experiments.md), resumable:

- stage 1 as ``configs/stage1.py``: 4 full mu = 200 events, hard negatives re-mined in 4 rounds,
  then the zone map (758 s);
- stage 2: :class:`~cgnn_jax.models.gnn.InteractionGNN` (4 x 32) on stage 1's *refined* graph
  at a low filter cut (``gnn.input_threshold = 0.02``: ~10 edges per hit at 10 % of tracks for
  a ceiling of 0.86, against ~38 and 0.91 for the embedding graph at 4x the cost per step),
  trained on 24 whole 10 %-track events for 2000 steps (1345 s), then fine-tuned 400 steps on
  those events mixed with the eta-phi sectors of 6 full events (``configs/finetune_mix.py``,
  629 s). The message passing learns from the edge truth alone (binary cross-entropy of the
  last layer's ``a_ij``); the cluster space is an MLP head trained by the hinge loss without
  back-propagating into the layers (``gnn.detach_output``): mixed, the two losses held the edge
  loss at the constant-prediction plateau for ~250 steps (``docs/experiments.md``);
- stage 3: Split/Stop over *atoms* the tree never separates: the layer-constrained merge of the
  GNN's edges with ``a_ij > 0.5`` (``cluster.merge = "layers"``: pieces that share more than
  one detector layer never join; :mod:`cgnn_jax.cluster.merge`), 5 epochs, then Stop's cut
  chosen on 2 validation events (``cluster.calibrate_stop``);
- then (``make train-default``) the mixed GNN fine-tuned twice: on full events
  (``configs/finetune_dense.py``, 1791 s), shipped inside the model as its dense variant for events
  of >= 25,000 hits, and on 10 %-track events at GNN input cut 0.005
  (``configs/finetune_sparse.py``, 428 s) for the others (``launch/export_model.py --gnn ...
  --dense ...``, which also sets the inference settings chosen later: the dense variant's input cut
  0.05, the stage-1 query's ``graph.approx = 2``, the track extension, the tree on atom rows, the
  calibrated merge and Stop's cut): ~86 min in all.
"""

import ml_collections

from configs import interaction


def get_config() -> ml_collections.ConfigDict:
    c = interaction.get_config()
    # stage 1: hard negatives re-mined in 4 rounds (configs/stage1.py): +0.03-0.04 on the
    # full-event graph ceilings, and with the layer merge +0.02 on full events
    c.gnn.input_graph = "refined"
    c.gnn.input_threshold = 0.02  # ~10 edges per hit at 10 % of tracks (stage 1's cut: ~5.5)
    c.gnn.aux_weight = 0.0  # the earlier layers' a_ij unsupervised
    c.gnn.detach_output = True  # the hinge trains the cluster-space head only
    c.gnn.output_hidden = 64
    c.gnn.steps = 2000  # 0.67 s per step here; the edge loss still falls at 1200
    c.gnn.learning_rate = 3e-3
    # atoms: the layer-constrained merge of the GNN's edges above 0.5 (cluster/merge.py): 0.73 ->
    # 0.81 at 10 % of tracks and 0.28 -> 0.41 on full events over the components of a_ij > 0.95
    # with the same GNN (docs/experiments.md, 2026-12-01 (2))
    c.cluster.merge = "layers"
    c.cluster.merge_threshold = 0.5
    c.cluster.merge_max_shared = 1
    c.cluster.val_events = 2  # also the events Stop's cut is calibrated on
    c.cluster.calibrate_stop = True
    # track extension along helix roads (cluster/extend.py): +0.04 on full events, +0.006 at
    # 10 % of tracks on validation events (docs/experiments.md, 2026-12-02 (8))
    c.cluster.extend_iterations = 2
    # the inference tree on one weighted row per atom (cluster/recursion.py, atom_rows): ~1 s less
    # per full event, -0.002 on test events (docs/experiments.md, 2026-12-02 (9)); training's
    # tree stays on the hits
    c.cluster.tree_rows = "atoms"
    return c
