"""Stage 2 (the edge-weighted GNN) on top of stage 1, sized for a 2-core CPU.

python launch/train.py --config=configs/experiments/stage2.py --workdir=workdirs/stage2 \
    --config.stage1_checkpoint=workdirs/stage1

With ``stage1_checkpoint = None`` stage 1 is trained first (into the same workdir). The GNN trains
on η–φ sector sub-graphs of ``data.train_events`` events; a few hundred steps take < 10 min on
2 cores at μ = 200 with 2-4 events.

``configs/default.py``'s ``gnn`` block (:func:`configs.default.stage2`) without the interaction
GNN's settings (architecture, output head, edge losses), at a smaller size.
"""

import ml_collections

from configs import default
from configs.experiments import stage1

# the gnn keys of configs/default.py that only the interaction GNN reads; without "arch" the GNN
# is the edge-weighted one (cgnn_jax.models.factory)
INTERACTION_KEYS = (
    "arch",
    "output_hidden",
    "distance_dims",
    "edge_weight",
    "aux_weight",
    "pos_weight",
    "hinge_weight",
    "detach_output",
)


def get_config() -> ml_collections.ConfigDict:
    c = stage1.get_config()
    c.stages = ("stage1", "stage2")
    default.stage2(c)
    for key in INTERACTION_KEYS:
        del c.gnn[key]
    c.gnn.num_layers = 3
    c.gnn.hidden = 64
    c.gnn.out_dim = 8
    c.gnn.learning_rate = 1e-3
    c.gnn.steps = 300
    c.gnn.input_threshold = -1.0  # refined graph's filter cut; < 0: stage 1's learned one
    c.gnn.eval_edges_per_event = 65536
    c.gnn.sectors = (2, 4)
    return c
