"""Stage 2 at the thesis's size: 6 edge-weighted layers of 192, kernel MLP hidden 32, output R^8.

Too slow for a small CPU; meant for a GPU (data-parallel over all devices).
"""

import ml_collections

from configs.experiments import stage2


def get_config() -> ml_collections.ConfigDict:
    c = stage2.get_config()
    c.gnn.update(num_layers=6, hidden=192, kernel_hidden=32, out_dim=8)
    c.gnn.update(steps=20_000, learning_rate=1e-3, sectors=(4, 8))
    c.data.train_events = 100
    return c
