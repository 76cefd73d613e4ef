"""A plain multilayer perceptron, the building block of every learned module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class Gathered(NamedTuple):
    """An MLP input given by parts, ``concat([sum_k sign_k * arrays[i][index_k] ...], -1)``,
    whose first layer is computed part by part, before the gather: ``x[idx] @ W == (x @ W)[idx]``.

    On a graph, ``[v_i, v_j, x_i - x_j]`` of every edge is ``Gathered(((v, ((s, 1),)),
    (v, ((r, 1),)), (x, ((s, 1), (r, -1)))))``: the first Dense then costs ``[n, F] x [F, H]``
    per node block instead of ``[E, F] x [F, H]`` per edge (E ≈ 10-40 n), with the same
    parameters as the concatenated input. ``index None``: the array is already per edge.

    Attributes:
      parts: ``(array [m, F_k], ((index [E] | None, sign), ...))`` in the concatenation's order.
    """

    parts: tuple


class _GatheredDense(nn.Module):
    """``nn.Dense`` (same parameters, same initialisation) applied to a :class:`Gathered` input."""

    features: int

    @nn.compact
    def __call__(self, x: Gathered) -> jnp.ndarray:
        widths = [a.shape[-1] for a, _ in x.parts]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (sum(widths), self.features), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        out, row = None, 0
        for (a, terms), w in zip(x.parts, widths, strict=True):
            proj = jnp.dot(a, kernel[row : row + w], precision=jax.lax.Precision.DEFAULT)
            row += w
            for idx, sign in terms:
                t = proj if idx is None else proj[idx]
                t = t if sign == 1 else sign * t
                out = t if out is None else out + t
        return out + bias


class MLP(nn.Module):
    """``x [..., F] -> [..., out]``: Dense -> (LayerNorm) -> activation, for each hidden size.

    ``x`` may be a :class:`Gathered` input (edges of a graph from per-node parts): the first
    Dense is then split by parts and computed before the gather, with the same parameters.

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
    def __call__(self, x: jnp.ndarray | Gathered) -> jnp.ndarray:
        act = {"relu": nn.relu, "tanh": jnp.tanh}[self.activation]
        widths = [*self.hidden, self.out]
        for i, width in enumerate(widths):
            if i == 0 and isinstance(x, Gathered):
                x = _GatheredDense(width, name="Dense_0")(x)
            else:
                x = nn.Dense(width, name=f"Dense_{i}")(x)
            if i < len(self.hidden):
                if self.layer_norm:
                    x = nn.LayerNorm(name=f"LayerNorm_{i}")(x)
                x = act(x)
        return x
