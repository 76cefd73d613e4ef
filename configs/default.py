"""The shipped model (``cgnn_jax/pretrained/default``), whole: every training step and the
inference settings of each variant, in one file.

``make train-default`` runs the four training steps, then the export (under 2 h on 2 CPU cores,
resumable); ``configs/default.py:<step>`` names a step (ml_collections passes ``<step>`` to
:func:`get_config`)::

    python launch/train.py --config=configs/default.py:stage12 --workdir=workdirs/default
    python launch/train.py --config=configs/default.py:mix --workdir=workdirs/default_mix \\
        --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default
    python launch/train.py --config=configs/default.py:dense --workdir=workdirs/default_dense \\
        --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default_mix
    python launch/train.py --config=configs/default.py:sparse --workdir=workdirs/default_sparse \\
        --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default_mix
    python launch/export_model.py --config=configs/default.py:export --workdir=workdirs/default_mix \\
        --gnn=workdirs/default_sparse --dense=workdirs/default_dense

The steps:

1. ``stage12``: stage 1 and stage 2. Stage 1: the hit embedding (6 full mu = 200 events, hard
   negatives re-mined in 4 rounds; the GNN reads it as an input), the module map learned from 300
   simulated full events (:mod:`cgnn_jax.graph.module_map`), the edge filter on the map's
   candidates (its cut keeps 12 edges per hit on full events) and the first pass before it
   (:mod:`cgnn_jax.models.prefilter`), then two context-filter rounds on the three quarters of
   the candidates the first pass keeps (:mod:`cgnn_jax.models.context_filter`; the last round's
   cut keeps 16 edges per hit on the training events: the GNN's graph at stage 1's learned
   cut). Stage 2: :class:`~cgnn_jax.models.gnn.InteractionGNN`
   (4 x 32) on stage 1's refined graph at filter cut 0.005, trained on 24 whole 10 %-track events.
   The message passing learns from the edge truth alone (binary cross-entropy of the last layer's
   ``a_ij``); the cluster space is an MLP head trained by the hinge loss without
   back-propagating into the layers (``gnn.detach_output``). Every training event, of every
   step, spreads its collisions along the beam by a sigma_z drawn from 5-60 mm (5-100 mm in the
   ``sparse`` step).
2. ``mix``: that GNN fine-tuned on its 10 %-track events mixed with the eta-phi sectors of 6 full
   events (their input graph at stage 1's learned cut), then stage 3: Split/Stop over the atoms the tree never separates (the layer-constrained
   merge of the edges with ``a_ij > 0.5``, :mod:`cgnn_jax.cluster.merge`), and Stop's cut chosen
   on 2 validation events. The model's stage 3 and configuration are this step's.
3. ``dense``: the mixed GNN fine-tuned on the 2 x 4 eta-phi sectors of 16 full events, at stage
   1's learned cut (the context filter's graph, ~15 edges per hit): the GNN of the dense
   variant, which reconstructs events of at least ``export.dense_min_hits`` hits.
4. ``sparse``: the mixed GNN fine-tuned on the 10 %-track events alone (sigma_z from 5-100 mm):
   the GNN of the model for the other events.
5. ``export`` (``launch/export_model.py``): the two fine-tuned GNNs on the mixed model's stage 1
   and Split/Stop, with the inference settings of :func:`export`, and the layer merge, the
   extension's free size and Stop's cut calibrated per variant on validation events.

``configs/default.py`` alone (:func:`base`) is the configuration the steps share, with every stage
listed: one ``launch/train.py`` run of it trains stages 1-3 in one workdir, without the fine-tunes.
:func:`knn_graph` turns any of them to the thesis's stage 1 (the embedding's kNN graph).
"""

import ml_collections

STEPS = ("stage12", "mix", "dense", "sparse")


def stage1(c: ml_collections.ConfigDict) -> None:
    """Stage 1: ``seed``, ``loop``, ``data``, ``embedding``, ``graph`` and ``filter``."""
    c.seed = 0
    c.stage1_checkpoint = ml_collections.config_dict.placeholder(str)  # set: restore, not train

    c.loop = ml_collections.ConfigDict()  # cgnn_jax.train.loop.fit, every stage
    c.loop.log_every = 50  # steps between metric reads (metrics.csv, progress bar)
    c.loop.checkpoint_every = 100  # steps between periodic checkpoints (also at every epoch end)

    # the simulated training events: stage 1 on full mu = 200 events; stages 2 and 3 on their own
    # events, whole events with 10 % of the tracks, and stage 2 also on gnn_mix_events events at
    # another density (0: none; sectors: gnn.mix_sectors)
    # every training event's collisions spread along the beam by a sigma_z drawn per event from
    # vertex_sigma_z (mm): one model for luminous regions of 6 mm and ~50 mm
    c.data = ml_collections.ConfigDict(
        {"seed": 1, "train_events": 6, "mu": 200.0, "track_fraction": 1.0}
        | {"vertex_sigma_z": (5.0, 60.0)}
        | {"gnn_train_events": 24, "gnn_track_fraction": 0.1}
        | {"gnn_mix_events": 0, "gnn_mix_fraction": 1.0}
    )

    c.embedding = ml_collections.ConfigDict()
    c.embedding.hidden = (128, 128, 128)
    c.embedding.dim = 12
    c.embedding.margin = 1.0
    # share of the positive pairs between neighbours along a track (else any two of its hits)
    c.embedding.consecutive_fraction = 0.0
    c.embedding.learning_rate = 3e-3
    c.embedding.batch_pairs = 8192
    c.embedding.steps = 3000
    c.embedding.hard_steps = 3000
    c.embedding.hard_fraction = 0.25
    c.embedding.hard_rounds = 4  # hard_steps in rounds, each re-mining from the current embedding
    c.embedding.hard_k = 16
    c.embedding.hard_pool = 2_000_000

    c.graph = ml_collections.ConfigDict()
    # the candidate pairs: "module_map" (cgnn_jax.graph.module_map: the module pairs consecutive
    # hits of simulated particles join, learned from map_events full events, each pair's doublet
    # windows widened by window_margin of their width and window_floor x the default floor) or
    # "knn" (the embedding's kd-tree graph below, with the zone map)
    c.graph.builder = "module_map"
    c.graph.map_events = 300
    c.graph.window_margin = 0.1
    c.graph.window_floor = 1.0
    # the "knn" builder: the embedding's graph
    c.graph.mode = "knn_radius"
    c.graph.k = 32
    c.graph.radius = 1.0
    # approximate kd-tree query: (1 + approx) x the k-th distance (training; the shipped model
    # queries at export.graph_approx)
    c.graph.approx = 0.5
    # zone map (cgnn_jax.graph.zones): learned after the filter, which zone pairs (this many
    # slices per layer) consecutive training hits join; the kNN graph keeps the zone_k nearest of
    # its `candidates` nearest in allowed zones
    c.graph.zone_bins = 8
    c.graph.zone_k = 40
    c.graph.candidates = 64

    # the edge filter on the candidates: trained on true consecutive pairs against negative_rate
    # of the false candidates (module_map), or on the embedding graph (knn); its cut keeps
    # edges_per_hit distinct edges per hit on the training events (module_map), or reaches
    # target_purity (knn; 0: the fixed threshold)
    c.filter = ml_collections.ConfigDict()
    c.filter.hidden = (64, 64, 64)
    c.filter.learning_rate = 3e-3
    c.filter.batch_edges = 16384
    c.filter.steps = 3000
    c.filter.pos_weight = 1.0  # 0: learned, (1 - f) / f for a fraction f of true training edges
    c.filter.negative_rate = 0.05
    c.filter.edges_per_hit = 12.0
    c.filter.threshold = 0.5
    c.filter.target_purity = 0.0
    # a first pass before the filter (cgnn_jax.models.prefilter; 0 hidden units: none), reading
    # where each pair sits in its module pair's windows: it keeps ~0.22 of the candidates and
    # prefilter_recall of the true edges the filter keeps
    c.filter.prefilter_hidden = 32
    c.filter.prefilter_windows = True
    c.filter.prefilter_recall = 0.995
    c.filter.prefilter_steps = 6000
    # context-filter rounds after the edge filter (cgnn_jax.models.context_filter; (): none): each
    # reads the edge filter's inputs and the previous round's scores around the edge (rivals,
    # best continuation); the first pass keeps context_keep_fraction of the candidates for them,
    # the last round's cut context_edges_per_hit edges per hit (the GNN's graph at stage 1's
    # learned cut; an explicit input cut takes the edge filter's scores); between rounds, a cut
    # keeping context_prune_edges_per_hit edges per hit (0: none) lightens the next round
    c.filter.context_hidden = (64, 64, 64)
    c.filter.context_rounds = 2
    c.filter.context_prune_edges_per_hit = 60.0
    c.filter.context_keep_fraction = 0.75
    c.filter.context_edges_per_hit = 16.0
    c.filter.context_steps = 3000


def knn_graph(c: ml_collections.ConfigDict, gnn: bool = True) -> ml_collections.ConfigDict:
    """Stage 1 on the thesis's graph instead of the module map (in place): candidates from the
    embedding's kd-tree graph with the zone map, on 4 training events, the 3 x 32 edge filter's cut
    learned for an edge purity of 0.5, no first pass; with ``gnn`` and a ``gnn`` block, the GNN's
    input graph at filter cut 0.02 (~10 edges per hit at 10 % of the tracks)."""
    with c.unlocked():
        c.data.train_events = 4
        c.graph.builder = "knn"
        c.filter.hidden = (32, 32, 32)
        c.filter.target_purity = 0.5
        c.filter.prefilter_hidden = 0
        if gnn and "gnn" in c:
            c.gnn.input_threshold = 0.02
    return c


def stage2(c: ml_collections.ConfigDict) -> None:
    """Stage 2: the ``gnn`` block (the interaction GNN and its training)."""
    c.gnn = g = ml_collections.ConfigDict()
    g.arch = "interaction"  # cgnn_jax.models.gnn.InteractionGNN ("edge_weighted": the thesis's)
    g.num_layers = 4
    g.hidden = 32
    g.kernel_hidden = 16  # the edge-weighted GNN's kernel MLP (unused by the interaction GNN)
    g.out_dim = 12
    g.output_hidden = 64  # > 0: an MLP output head of this width
    g.distance_dims = 0  # > 0: the edge encoder also sees the stage-1 embedding distance
    g.degree_norm = False  # edge-weighted GNN: divide A V by the in-degree
    g.skip_input = False  # edge-weighted GNN: the output layer also sees the input
    g.residual = False  # edge-weighted GNN: output = stage-1 embedding + learned correction
    # the stage-1 graph the GNN passes messages on: the refined graph at this filter cut (< 0:
    # stage 1's learned one, ~15 edges per hit on full events); 0.005 gives ~8.5 edges per hit at
    # 10 % of the tracks
    g.input_graph = "refined"
    g.input_threshold = 0.005
    # the cut of the data.gnn_mix_events events' input graph (unset: input_threshold)
    g.mix_input_threshold = ml_collections.config_dict.placeholder(float)
    # a stage-2 or pipeline checkpoint whose GNN parameters start the training (the fine-tunes)
    g.init_checkpoint = ""
    g.steps = 2000
    g.learning_rate = 3e-3
    g.clip_norm = 1.0
    g.graphs_per_device = 1  # batch = devices x graphs_per_device sub-graphs
    # losses: the BCE of the last layer's a_ij against the edge truth (edge_weight), of the
    # earlier layers' (aux_weight), and the hinge on the output space (hinge_weight), which with
    # detach_output trains the output head only
    g.edge_weight = 1.0
    g.aux_weight = 0.0
    g.pos_weight = 2.0
    g.hinge_weight = 1.0
    g.detach_output = True
    g.margin = 1.0  # hinge margin on squared distances
    g.radius = 1.0  # radius of the knn_radius graph in the GNN space (quality report)
    # evaluation edges: the stage-1 embedding graph (hard negatives) + true_pairs_per_hit * n
    # random same-particle pairs + random_pairs_per_hit * n random pairs, resampled balanced
    # (half true) every step; eval_edges_per_event / sectors per sub-graph
    g.eval_edges_per_event = 32768
    g.true_pairs_per_hit = 1.0
    g.random_pairs_per_hit = 1.0
    # eta-phi sector sub-graphs for training: (n_eta, n_phi), overlap margins in eta and phi (rad)
    g.sectors = (1, 1)  # whole 10 %-track events: ~11k hits
    g.mix_sectors = (2, 4)  # the sectors of the data.gnn_mix_events events
    g.sector_margin_eta = 0.1
    g.sector_margin_phi = 0.1


def stage3(c: ml_collections.ConfigDict) -> None:
    """Stage 3: the ``cluster`` block (Split/Stop, their atoms, the tree, the extension)."""
    c.cluster = k = ml_collections.ConfigDict()
    k.split_hidden = (32, 32)
    k.stop_hidden = (32, 32)
    k.split_init_scale = 1.0  # initial scale of the Split MLP's output layer
    k.prior_dims = 0  # > 0: Split adds a learned gain x the principal-axis projection of h[:, :k]
    k.prior_gain = 4.0
    k.prior_columns = ()  # or explicit columns of h for the prior (overrides prior_dims)
    k.stop_aggregate = "mean"  # or "max"
    k.inputs = "gnn"  # what Split/Stop see: the GNN output ("gnn+features": and the hit features)
    k.max_depth = 40  # levels at inference (full events; O(log n) are used)
    k.train_depth = 18  # levels of the training trees
    k.sectors = (1, 2)  # eta-phi sectors of the training sub-graphs (~6k hits)
    k.min_size = 3
    # atoms, which the tree never separates: "layers" = the layer-constrained merge
    # (cluster/merge.py) of the edges with a_ij > merge_threshold, most confident first, pieces
    # sharing <= merge_max_shared layers; "components" = connected components of a_ij >
    # component_cut. export_model.py calibrates the merge per variant (export.<variant>.cluster)
    k.merge = "layers"
    k.component_cut = 0.95
    k.merge_threshold = 0.5
    k.merge_max_shared = 1
    k.tree_rows = "atoms"  # the inference tree on one weighted row per atom (training: per hit)
    k.stop_threshold = 0.5
    # after training, choose Stop's cut on the validation events (best TrackML score over
    # train.stage3.STOP_GRID); kept in the checkpoint as learned["stop_threshold"]
    k.calibrate_stop = True
    k.stop_weight = 1.0
    k.hinge_weight = 1.0  # GNN hinge loss beside the clustering losses (end to end)
    k.learning_rate = 3e-3
    k.e2e_learning_rate = 3e-4
    k.clip_norm = 1.0
    k.graphs_per_device = 1
    k.epochs = 5  # stage 3 (Split/Stop only); one epoch = the 48 sub-graphs of the 24 events
    k.e2e_epochs = 0  # end to end (input embedding, GNN, Split, Stop): not trained
    k.patience = 10  # epochs without validation gain before the learning rate is cut x0.1
    k.val_events = 2  # also the events Stop's cut is calibrated on
    k.val_loss = True  # also log the losses on the validation sub-graphs (one more compilation)
    k.iterative_rounds = 0  # > 0: reconstruct() re-clusters low-confidence clusters (iterative)
    k.iterative_cutoff = 0.5
    # track extension (cluster/extend.py; not learned): after the clustering, hits in tracks of <=
    # extend_free_max hits join the track whose helix road (half widths extend_tol_rphi across,
    # extend_tol_z along the layer, mm) crosses them; tracks of >= extend_min_size are extended
    k.extend_iterations = 2
    k.extend_tol_rphi = 12.0
    k.extend_tol_z = 15.0
    k.extend_free_max = 2
    k.extend_min_size = 3


def base() -> ml_collections.ConfigDict:
    """What every training step shares; every stage listed (stage 1, 2, 3, end to end)."""
    c = ml_collections.ConfigDict()
    c.stages = ("stage1", "stage2", "stage3", "e2e")
    stage1(c)
    stage2(c)
    stage3(c)
    return c


def stage12() -> ml_collections.ConfigDict:
    """Step 1: stage 1, then the GNN on the 24 10 %-track events (2000 steps)."""
    c = base()
    c.stages = ("stage1", "stage2")
    return c


def mix() -> ml_collections.ConfigDict:
    """Step 2: step 1's GNN fine-tuned 400 steps on its 10 %-track events mixed with the 2 x 4
    eta-phi sectors of 6 full events (their input graph at stage 1's learned cut), drawn at
    random; then Split/Stop (stage 3) and Stop's cut.
    Flags: ``--config.stage1_checkpoint`` and ``--config.gnn.init_checkpoint`` (step 1)."""
    c = base()
    c.data.gnn_mix_events = 6
    c.gnn.mix_input_threshold = -1.0
    c.gnn.steps = 400
    c.gnn.learning_rate = 1e-3
    return c


def dense() -> ml_collections.ConfigDict:
    """Step 3: step 2's GNN fine-tuned 1000 steps on the 2 x 4 eta-phi sectors (~15k hits each)
    of 16 full events, input graph at stage 1's learned cut (~15 edges per hit): the dense
    variant's GNN (stage 3 is step 2's). Flags:
    ``--config.stage1_checkpoint`` (step 1), ``--config.gnn.init_checkpoint`` (step 2)."""
    c = base()
    c.stages = ("stage1", "stage2")
    c.data.gnn_train_events = 16
    c.data.gnn_track_fraction = 1.0
    c.gnn.sectors = (2, 4)
    c.gnn.eval_edges_per_event = 131072  # 16k evaluation edges per sector
    c.gnn.input_threshold = -1.0
    c.gnn.steps = 1000
    c.gnn.learning_rate = 1e-3
    c.cluster.sectors = (2, 4)  # (stage 3 is not trained in this step)
    return c


def sparse() -> ml_collections.ConfigDict:
    """Step 4: step 2's GNN fine-tuned 1000 steps on the 10 %-track events alone (GNN input cut
    0.005, ~8.5 edges per hit), their collisions spread by a sigma_z drawn from 5-100 mm (tracks
    from vertices far from the origin lose the most on long luminous regions): the GNN for events
    below ``export.dense_min_hits`` hits.
    Flags: ``--config.stage1_checkpoint`` (step 1), ``--config.gnn.init_checkpoint`` (step 2)."""
    c = base()
    c.stages = ("stage1", "stage2")
    c.data.vertex_sigma_z = (5.0, 100.0)
    c.gnn.input_threshold = 0.005
    c.gnn.steps = 1000
    c.gnn.learning_rate = 1e-3
    return c


# the cluster settings of stage 3 (:func:`stage3`) that a variant's calibration starts from: the
# tree, the extension, the layer merge (merge_* and extend_free_max are chosen again by the
# calibration, export.calibrate_merge_events > 0)
VARIANT_CLUSTER = (
    "tree_rows",
    "extend_iterations",
    "extend_tol_rphi",
    "extend_tol_z",
    "merge_threshold",
    "merge_max_shared",
    "extend_free_max",
    "extend_min_size",
)


def variant(input_threshold: float) -> ml_collections.ConfigDict:
    """The inference settings of one variant: its GNN input graph's filter cut, and the cluster
    settings it starts its calibration from (:data:`VARIANT_CLUSTER`, as in :func:`stage3`)."""
    trained = ml_collections.ConfigDict()
    stage3(trained)
    v = ml_collections.ConfigDict()
    v.input_threshold = input_threshold  # gnn.input_threshold
    v.cluster = ml_collections.ConfigDict({key: trained.cluster[key] for key in VARIANT_CLUSTER})
    return v


def export() -> ml_collections.ConfigDict:
    """Step 5, ``launch/export_model.py --config=configs/default.py:export``: the inference
    settings of the model (``sparse``, events below ``dense_min_hits`` hits) and of its dense
    variant (``dense``) on their shared stage 1, and the calibration that ends the export."""
    c = ml_collections.ConfigDict()
    # the "knn" builder's kd-tree query: neighbours within 3x the true k-th distance
    c.graph_approx = 2.0
    c.dense_min_hits = 25000
    # each variant's GNN input graph at the cut it trained at: 0.005 on events of 10 % of the
    # tracks, stage 1's learned cut (< 0) on full events
    c.sparse = variant(input_threshold=0.005)
    c.dense = variant(input_threshold=-1.0)
    # per variant, on validation events of the mixed model's config (the sparse one at its GNN
    # events' track fraction, the dense one on full events): Stop's cut, then the layer merge and
    # the extension's free size (train.stage3.calibrate_merge), then Stop's cut again
    c.calibrate_merge_events = 2
    c.calibrate_stop_events = 2
    return c


def get_config(step: str = "") -> ml_collections.ConfigDict:
    """``configs/default.py``: :func:`base`; ``configs/default.py:<step>``: a training step of
    :data:`STEPS`, or ``export`` (the inference settings, for ``launch/export_model.py``)."""
    steps = {"": base, "stage12": stage12, "mix": mix, "dense": dense, "sparse": sparse}
    steps["export"] = export
    if step not in steps:
        raise ValueError(
            f"configs/default.py:{step}: no such step; valid: {', '.join(s for s in steps if s)}"
        )
    return steps[step]()
