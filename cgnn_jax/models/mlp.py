"""A plain multilayer perceptron, the building block of every learned module."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    """``x [..., F] -> [..., out]``: Dense -> (LayerNorm) -> activation, for each hidden size.

    Attributes:
      hidden: hidden layer widths.
      out: output width (no activation on the output layer).
      layer_norm: LayerNorm after each hidden Dense.
      activation: ``"relu"`` or ``"tanh"``.
    """

    hidden: Sequence[int]
    out: int
    layer_norm: bool = True
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = {"relu": nn.relu, "tanh": jnp.tanh}[self.activation]
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.out)(x)
