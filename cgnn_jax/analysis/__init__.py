"""Analysis of a trained model: what each stage delivers, measured against the truth.

* :mod:`.diagnose`: every stage of the pipeline on events with truth, and where hits are lost;
* :mod:`.evaluation`: the pipeline against the baselines and other clusterers, per event;
* :mod:`.graph_quality`: edges, purity and recall of each graph (stage 1);
* :mod:`.gnn_quality`: the stage-1 and GNN spaces compared (stage 2);
* :mod:`.fidelity`: summary statistics of real and simulated events (``make fidelity``);
* :mod:`.sim_vs_real`: every model input, real against simulated, with its KS distance.

The top layer of the package: it imports the others, none of them imports it.
"""
