"""A cheap first pass over module-map candidates, before the edge filter.

:class:`PairPrefilter` scores a hit pair from a few doublet quantities computed from the hits'
:func:`~cgnn_jax.features.pairs_jax.pair_columns` (:func:`prefilter_features`): the edge
filter's pair features, ``Δφ/Δr``, ``|z0|``, ``|Δφ|`` and the inner hit's ``r``, ``|z|``,
``|η|`` (where a doublet sits in the detector changes how wide its quantities may be). One hidden
layer of a few units, written as element-wise sums rather than a matrix product: XLA fuses the
whole pass (gathers, features, both layers) into one loop over the edges, ~15x cheaper per edge
than the 3 x 64 edge filter on one core. Its inputs are standardised by the training edges'
mean and spread, stored with its parameters (``norm``) and not trained.

With ``windows`` (:func:`window_table` of the module map, one row per module pair), each pair
also gets where its doublet quantities (:data:`cgnn_jax.graph.module_map.QUANTITIES`) sit inside
its module pair's training windows (0 at the low end, 1 at the high end; 0.5 for a window of
zero or unbounded width) and the log of the pair's training doublets (:data:`WINDOW_FEATURE_NAMES`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cgnn_jax.features.pairs_jax import pair_features_jnp
from cgnn_jax.graph.module_map import QUANTITIES, ModuleMap

PREFILTER_FEATURE_NAMES = (
    *(f"pair_{k}" for k in range(9)),
    "phi_slope",
    "abs_z0",
    "abs_dphi",
    "r_inner",
    "abs_z_inner",
    "abs_eta_inner",
)
N_PREFILTER_FEATURES = len(PREFILTER_FEATURE_NAMES)
WINDOW_FEATURE_NAMES = ("log_count", *(f"in_window_{q}" for q in QUANTITIES))
N_WINDOW_FEATURES = len(WINDOW_FEATURE_NAMES)
_PHI_SLOPE_CLIP = 20.0
_WINDOW_CLIP = (-3.0, 4.0)  # a position in a (widened) window, far outside it: clipped
_MIN_DR, _CLIP = 1e-3, 1e6  # as cgnn_jax.graph.module_map's doublet quantities


def n_features(windows: bool) -> int:
    """The first pass's input width, with or without the window features."""
    return N_PREFILTER_FEATURES + (N_WINDOW_FEATURES if windows else 0)


def window_table(module_map: ModuleMap) -> np.ndarray:
    """``[P, 1 + 2Q]`` float32 per module pair: ``log1p(count) / 5``, then for each quantity
    ``1 / width`` and ``low / width`` (``0`` and ``-0.5`` for a zero or unbounded width), so that
    a value ``v`` sits at ``v * a - b`` in its window."""
    lo, hi = module_map.lo.astype(np.float64), module_map.hi.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        w = hi - lo
        ok = np.isfinite(w) & (w > 0)
        inv = np.where(ok, 1.0 / np.where(ok, w, 1.0), 0.0)
        off = np.where(ok, np.where(ok, lo, 0.0) * inv, -0.5)
    cols = [np.log1p(module_map.count.astype(np.float64))[:, None] / 5.0]
    for q in range(len(QUANTITIES)):
        cols += [inv[:, q : q + 1], off[:, q : q + 1]]
    return np.concatenate(cols, 1).astype(np.float32)


def _quantities(a: jnp.ndarray, b: jnp.ndarray, dphi: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """The doublet quantities of :mod:`cgnn_jax.graph.module_map` (mm, rad) from the pair
    columns of the two hits and their ``Δφ``."""
    x1, y1, z1, r1, e1 = (a[:, k] for k in range(5))
    x2, y2, z2, r2, e2 = (b[:, k] for k in range(5))
    dr = r2 - r1
    dr = jnp.where(jnp.abs(dr) < _MIN_DR, jnp.where(dr < 0, -_MIN_DR, _MIN_DR), dr)
    den = jnp.maximum(r1 * r2 * jnp.sqrt(jnp.square(x2 - x1) + jnp.square(y2 - y1)), 1e-6)
    return {
        "z0": jnp.clip(z1 - r1 * (z2 - z1) / dr, -_CLIP, _CLIP),
        "phi_slope": jnp.clip(dphi / dr, -_CLIP, _CLIP),
        "deta": e2 - e1,
        "curvature": jnp.clip(2.0 * (x1 * y2 - x2 * y1) / den, -_CLIP, _CLIP),
        "dphi": dphi,
    }


def window_features(
    cols: jnp.ndarray, s: jnp.ndarray, t: jnp.ndarray, win: jnp.ndarray, dphi: jnp.ndarray
) -> jnp.ndarray:
    """``[E, N_WINDOW_FEATURES]``: the pairs' module pairs' ``win [E, 1 + 2Q]`` rows of
    :func:`window_table` applied to their doublet quantities."""
    v = _quantities(cols[s], cols[t], dphi)
    out = [win[:, 0]]
    for q, name in enumerate(QUANTITIES):
        u = v[name] * win[:, 1 + 2 * q] - win[:, 2 + 2 * q]
        out.append(jnp.clip(u, *_WINDOW_CLIP) - 0.5)
    return jnp.stack(out, -1)


def prefilter_features(
    cols: jnp.ndarray,
    s: jnp.ndarray,
    t: jnp.ndarray,
    win: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """``[E, n_features(win is not None)]`` of the pairs ``s -> t`` from the hits' ``cols [n,
    8]`` (:func:`~cgnn_jax.features.pairs_jax.pair_columns`), float32; ``win [E, 1 + 2Q]``: the
    pairs' :func:`window_table` rows, for the window features."""
    z = pair_features_jnp(cols, s, t)
    dr, dphi = z[:, 0], z[:, 1]
    safe = jnp.where(jnp.abs(dr) > 1e-3, dr, jnp.where(dr < 0, -1e-3, 1e-3))
    slope = jnp.clip(dphi / safe, -_PHI_SLOPE_CLIP, _PHI_SLOPE_CLIP)
    a = cols[s]
    extra = [
        slope,
        jnp.abs(z[:, 5]),
        jnp.abs(dphi),
        a[:, 3] / 1000.0,
        jnp.abs(a[:, 2]) / 1000.0,
        jnp.abs(a[:, 4]),
    ]
    parts = [z, jnp.stack(extra, -1)]
    if win is not None:
        parts.append(window_features(cols, s, t, win, dphi))
    return jnp.concatenate(parts, -1)


class PairPrefilter(nn.Module):
    """Logits ``[E]`` of a one-hidden-layer network on :func:`prefilter_features` ``f [E, F]``.

    Attributes:
      hidden: hidden units.
    """

    hidden: int = 16

    @nn.compact
    def __call__(self, f: jnp.ndarray) -> jnp.ndarray:
        n_in = f.shape[-1]
        mean = self.param("norm_mean", nn.initializers.zeros, (n_in,))
        scale = self.param("norm_scale", nn.initializers.ones, (n_in,))
        w1 = self.param("w1", nn.initializers.lecun_normal(), (n_in, self.hidden))
        b1 = self.param("b1", nn.initializers.zeros, (self.hidden,))
        w2 = self.param("w2", nn.initializers.lecun_normal(), (self.hidden, 1))
        b2 = self.param("b2", nn.initializers.zeros, (1,))
        mean, scale = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(scale)
        # element-wise sums: one fused loop over the edges (a [E, F] x [F, H] product is ~3x
        # slower here for these widths)
        cols = [(f[:, i] - mean[i]) * scale[i] for i in range(n_in)]
        out = b2[0]
        for k in range(self.hidden):
            h = b1[k]
            for i in range(n_in):
                h = h + cols[i] * w1[i, k]
            out = out + nn.relu(h) * w2[k, 0]
        return out
