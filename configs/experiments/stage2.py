"""Stage 2 (the edge-weighted GNN) on top of stage 1, sized for a 2-core CPU.

python launch/train.py --config=configs/experiments/stage2.py --workdir=workdirs/stage2 \
    --config.stage1_checkpoint=workdirs/stage1

With ``stage1_checkpoint = None`` stage 1 is trained first (into the same workdir). The GNN trains
on η–φ sector sub-graphs of ``data.train_events`` events; a few hundred steps take < 10 min on
2 cores at μ = 200 with 2-4 events.
"""

import ml_collections

from configs.experiments import stage1


def get_config() -> ml_collections.ConfigDict:
    c = stage1.get_config()
    c.stages = ("stage1", "stage2")

    c.gnn = ml_collections.ConfigDict()
    c.gnn.num_layers = 3
    c.gnn.hidden = 64
    c.gnn.kernel_hidden = 16
    c.gnn.out_dim = 8
    c.gnn.learning_rate = 1e-3
    c.gnn.clip_norm = 1.0
    c.gnn.steps = 300
    # a stage-2 or pipeline checkpoint whose GNN parameters start the training (fine-tuning,
    # e.g. on full-event sectors after 10 %-track events); "": random initialisation
    c.gnn.init_checkpoint = ""
    c.gnn.graphs_per_device = 1  # batch = devices x graphs_per_device sub-graphs
    c.gnn.input_graph = "refined"  # or "embedding": the stage-1 graph the GNN passes messages on
    c.gnn.input_threshold = -1.0  # refined graph's filter cut; < 0: stage 1's learned one
    c.gnn.margin = 1.0  # hinge margin on squared distances
    c.gnn.radius = 1.0  # radius of the knn_radius graph in the GNN space (quality report)
    # Evaluation edges: stage-1 embedding graph (hard negatives) + true_pairs_per_hit * n random
    # same-particle pairs + random_pairs_per_hit * n random pairs (easy negatives), resampled
    # balanced (half true) every step; eval_edges_per_event / sectors per sub-graph.
    c.gnn.eval_edges_per_event = 65536
    c.gnn.true_pairs_per_hit = 1.0
    c.gnn.random_pairs_per_hit = 1.0
    c.gnn.degree_norm = False  # True: divide A V by the in-degree (not in the thesis's layer)
    c.gnn.skip_input = False  # True: the output layer also sees the input (stage-1 embedding)
    c.gnn.residual = False  # True: output = stage-1 embedding + learned correction (out_dim = d)
    # η–φ sector sub-graphs for training: (n_eta, n_phi), overlap margins in η and φ (rad).
    c.gnn.sectors = (2, 4)
    c.gnn.mix_sectors = (2, 4)  # the sectors of the data.gnn_mix_events events
    c.gnn.sector_margin_eta = 0.1
    c.gnn.sector_margin_phi = 0.1
    return c
