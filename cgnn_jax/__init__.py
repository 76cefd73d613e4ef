from cgnn_jax.estimator import ClusteringGNN  # noqa: F401  (public re-export)
