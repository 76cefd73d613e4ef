"""The default cgnn_jax model, shipped as ``cgnn_jax/pretrained/default``.

    make train-default   # = python launch/train.py --config=configs/default.py --workdir=workdirs/default

Sized for this project's 2-core CPU (~70 min, resumable):

- stage 1 as ``configs/stage1.py`` with one hard-negative round: 4 full mu = 200 events (~18 min);
- stage 2: :class:`~cgnn_jax.models.gnn.InteractionGNN` (4 x 32) on stage 1's *refined* graph
  at a low filter cut (``gnn.input_threshold = 0.02``: ~10 edges per hit at 10 % of tracks for
  a ceiling of 0.86, against ~38 and 0.91 for the embedding graph at 4x the cost per step),
  trained on 24 whole 10 %-track events for 2000 steps (~45 min; 1200 steps gave 0.671 at 10 % of
  tracks and 0.236 on full events, 2000 give 0.730 and 0.277: ``docs/experiments.md``). The message passing learns
  from the edge truth alone (binary cross-entropy of the last layer's ``a_ij``); the cluster
  space is an MLP head trained by the hinge loss without back-propagating into the layers
  (``gnn.detach_output``): mixed, the two losses held the edge loss at the constant-prediction
  plateau for ~250 steps (``docs/experiments.md``);
- stage 3: Split/Stop with atoms of ``a_ij > 0.95`` (``cluster.component_cut``), 5 epochs, then
  Stop's cut chosen on 2 validation events (``cluster.calibrate_stop``).
"""

import ml_collections

from configs import interaction


def get_config() -> ml_collections.ConfigDict:
    c = interaction.get_config()
    # The shipped stage 1 mined its hard negatives once; 4 rounds (configs/stage1.py) raise the
    # full-event graph ceilings by 0.03-0.04 but this pipeline's scores not at all
    # (docs/experiments.md, 2026-12-01), so the default recipe stays the shipped model's.
    c.embedding.hard_rounds = 1
    c.gnn.input_graph = "refined"
    c.gnn.input_threshold = 0.02  # ~10 edges per hit at 10 % of tracks (stage 1's cut: ~5.5)
    c.gnn.aux_weight = 0.0  # the earlier layers' a_ij unsupervised
    c.gnn.detach_output = True  # the hinge trains the cluster-space head only
    c.gnn.output_hidden = 64
    c.gnn.steps = 2000  # ~1.3 s per step here; the edge loss still falls at 1200
    c.gnn.learning_rate = 3e-3
    c.cluster.val_events = 2  # also the events Stop's cut is calibrated on
    c.cluster.calibrate_stop = True
    return c
