"""Stage 3: the Split and Stop modules of the clustering graph neural network (flax linen).

Both are :class:`ClusterStatsMLP` networks: an MLP whose every layer sees, for each point ``j`` of a
cluster ``C`` (thesis eq. 2.31-2.36),

    x_j' = ReLU(W [x_j, mean_{i in C} x_i, var_{i in C} x_i] + b)

so that a point's decision depends on where it lies relative to its own cluster. The cluster
statistics are ``jax.ops.segment_sum`` reductions over per-point segment ids (one segment per
cluster, ``num_segments`` static), with a point mask: padding points are excluded from every
statistic and their states are zeroed, so they change nothing for the real points.

* :class:`Split`: ``sigmoid`` of the per-point logit -> ``p_right [N]``, the probability that the
  point goes to the right child of its cluster.
* :class:`Stop`: per-point ``sigmoid`` votes aggregated per cluster by the masked mean (or max) ->
  ``stop [num_segments]``, the probability that the cluster is final.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def segment_mean_var(
    x: jnp.ndarray,
    seg: jnp.ndarray,
    mask: jnp.ndarray,
    num_segments: int,
    weight: jnp.ndarray | None = None,
    x_var: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Masked per-segment mean and (biased) variance of ``x``.

    Args:
      x: ``[N, D]`` per-point values.
      seg: ``[N]`` int segment id of each point, in ``[0, num_segments)``.
      mask: ``[N]`` bool, False for padding points (left out of every statistic).
      num_segments: static number of segments.
      weight: ``[N]`` optional: each row stands for ``weight`` points (an atom's row, with ``x``
        its points' mean; 0 on padding). Default: 1 per real point.
      x_var: ``[N, D]`` optional, with ``weight``: the variance of the points each row stands
        for (added to the spread of the rows, so the statistics are those of the points).
    Returns:
      ``(mean [S, D], var [S, D], count [S])`` (``count``: points); empty segments get mean and
      variance 0. The variance is computed in two passes (``E[(x - mean)^2]``), never negative.
    """
    w = mask.astype(x.dtype) if weight is None else jnp.where(mask, weight, 0).astype(x.dtype)
    cnt = jax.ops.segment_sum(w, seg, num_segments=num_segments)
    denom = jnp.maximum(cnt, 1.0)[:, None]
    mean = jax.ops.segment_sum(x * w[:, None], seg, num_segments=num_segments) / denom
    dev = (x - mean[seg]) ** 2
    if x_var is not None:
        dev = dev + x_var
    var = jax.ops.segment_sum(dev * w[:, None], seg, num_segments=num_segments) / denom
    return mean, var, cnt


class ClusterStatsMLP(nn.Module):
    """``h [N, D] -> logits [N]`` (or ``[N, out]``), each layer seeing its cluster's mean and variance.

    Attributes:
      hidden: widths of the ``T`` hidden layers; layer ``t`` maps
        ``[x_j, mean_C x, var_C x] (3 * width_{t-1}) -> width_t`` with ReLU.
      out: output width; ``out == 1`` returns ``[N]``.
      output_scale: scale of the output layer's initial weights. The split loss has a saddle at
        ``p = 0.5`` everywhere (the binary entropy's slope is 0 there), so Split starts with a
        larger scale: its first decisions are already spread, and points close in the input
        (one particle's) share them, which gives the loss a slope from the first step.
    """

    hidden: Sequence[int]
    out: int = 1
    output_scale: float = 1.0

    @nn.compact
    def __call__(
        self,
        h: jnp.ndarray,
        seg: jnp.ndarray,
        mask: jnp.ndarray,
        num_segments: int,
        weight: jnp.ndarray | None = None,
        h_var: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """Apply the network.

        Args:
          h: ``[N, D]`` point features (e.g. the stage-2 cluster-space coordinates).
          seg: ``[N]`` int32 cluster (segment) id of each point.
          mask: ``[N]`` bool, False for padding points.
          num_segments: static (Python int) number of segments, ``> seg.max()``.
          weight: ``[N]`` optional points per row, when a row stands for an atom (``h``: its
            points' mean, ``h_var [N, D]``: their variance); the cluster statistics are then
            weighted (:func:`segment_mean_var`; ``h_var`` enters the first layer's).
        Returns:
          ``[N]`` logits (``[N, out]`` if ``out > 1``); 0 on padding points.
        """
        m = mask[:, None]
        x = jnp.where(m, h, 0.0)
        for i, width in enumerate(self.hidden):
            xv = h_var if i == 0 else None
            mean, var, _ = segment_mean_var(x, seg, mask, num_segments, weight, xv)
            x = nn.relu(nn.Dense(width)(jnp.concatenate([x, mean[seg], var[seg]], -1)))
            x = jnp.where(m, x, 0.0)
        init = nn.initializers.variance_scaling(self.output_scale**2, "fan_in", "truncated_normal")
        y = jnp.where(m, nn.Dense(self.out, kernel_init=init)(x), 0.0)
        return y[:, 0] if self.out == 1 else y


def principal_projection(
    x: jnp.ndarray,
    seg: jnp.ndarray,
    mask: jnp.ndarray,
    num_segments: int,
    iters: int = 6,
    weight: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """``[N]``: each point's coordinate along its cluster's first principal axis, in units of
    the cluster's standard deviation along it (0 on padding).

    The axis comes from ``iters`` steps of power iteration on every cluster's covariance at
    once (``segment_sum`` only: ``O(N D)`` per step, no per-cluster loop). Splitting at the sign
    of this projection is principal-direction divisive partitioning, the classic top-down
    clustering; :class:`Split` starts from it and learns corrections.
    """
    m = mask.astype(x.dtype)[:, None]
    w = m if weight is None else jnp.where(mask, weight, 0).astype(x.dtype)[:, None]
    mean, _, cnt = segment_mean_var(x, seg, mask, num_segments, weight)
    xc = (x - mean[seg]) * m
    d = x.shape[-1]
    v = jnp.broadcast_to(jnp.linspace(1.0, 0.5, d) / jnp.sqrt(d), (num_segments, d))
    # a fixed, non-symmetric start direction (orthogonal to an axis only by accident)
    for _ in range(iters):
        proj = jnp.sum(xc * v[seg], -1, keepdims=True)
        v = jax.ops.segment_sum(xc * proj * w, seg, num_segments=num_segments)
        v = v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    # the axis and the scale are treated as constants for the gradient (it flows through the
    # centred points only): differentiating the normalisations of power iteration is unstable
    # for tiny clusters (0 / 0)
    v = jax.lax.stop_gradient(v)
    proj = jnp.sum(xc * v[seg], -1)
    var = jax.ops.segment_sum(proj**2 * w[:, 0], seg, num_segments=num_segments)
    std = jax.lax.stop_gradient(jnp.sqrt(var / jnp.maximum(cnt, 1.0)))
    return jnp.where(mask, proj / jnp.maximum(std[seg], 1e-6), 0.0)


class Split(nn.Module):
    """``p_right [N]``: per-point probability of going to the right child of its cluster.

    ``logit = MLP([h, mean_C h, var_C h]) + g * z``, where ``z`` is the point's standardised
    coordinate along its cluster's principal axis in the first ``prior_dims`` features of ``h``
    (the GNN's cluster space; :func:`principal_projection`) and ``g`` a learned gain (initial
    ``prior_gain``). With ``prior_dims = 0`` the prior is off and the Split is the thesis's MLP.

    Attributes:
      hidden: hidden widths of the :class:`ClusterStatsMLP`.
      output_scale: initial scale of the output layer (see :class:`ClusterStatsMLP`).
      prior_dims: leading features of ``h`` the principal-axis prior uses (0: none).
      prior_columns: or the explicit columns of ``h`` it uses (overrides ``prior_dims``).
      prior_gain: initial gain of the prior.
    """

    hidden: Sequence[int]
    output_scale: float = 1.0
    prior_dims: int = 0
    prior_gain: float = 4.0
    prior_columns: tuple[int, ...] = ()

    @nn.compact
    def __call__(
        self,
        h: jnp.ndarray,
        seg: jnp.ndarray,
        mask: jnp.ndarray,
        num_segments: int,
        weight: jnp.ndarray | None = None,
        h_var: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """``h [N, D], seg [N], mask [N] -> p_right [N]`` (0 on padding points); ``weight``,
        ``h_var``: rows that stand for atoms (:class:`ClusterStatsMLP`)."""
        logits = ClusterStatsMLP(self.hidden, 1, self.output_scale, name="mlp")(
            h, seg, mask, num_segments, weight, h_var
        )
        if self.prior_dims or self.prior_columns:
            cols = jnp.asarray(self.prior_columns or tuple(range(self.prior_dims)))
            z = principal_projection(h[:, cols], seg, mask, num_segments, weight=weight)
            gain = self.param("prior_gain", lambda _: jnp.asarray(self.prior_gain, jnp.float32))
            logits = logits + gain * z
        return jnp.where(mask, jax.nn.sigmoid(logits), 0.0)


class Stop(nn.Module):
    """``stop [num_segments]``: per-cluster probability that the cluster is final.

    Every point votes ``sigmoid(logit_j)``; the votes of a cluster's real points are aggregated
    by their mean (``aggregate="mean"``) or max (``"max"``). Empty segments get 0.

    With ``size_input`` every point also sees ``log(1 + n_C)``, its cluster's number of points
    (a column constant over the cluster: its mean is the log size, its variance 0). Without
    atoms, a one-particle cluster is told apart from a mixed one mostly by its size (a track
    has ~5-15 hits) until the cluster space is compact.

    Attributes:
      hidden: hidden widths of the :class:`ClusterStatsMLP`.
      aggregate: ``"mean"`` or ``"max"``.
      size_input: also feed each cluster's log size.
    """

    hidden: Sequence[int]
    aggregate: str = "mean"
    size_input: bool = False

    @nn.compact
    def __call__(
        self,
        h: jnp.ndarray,
        seg: jnp.ndarray,
        mask: jnp.ndarray,
        num_segments: int,
        weight: jnp.ndarray | None = None,
        h_var: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """``h [N, D], seg [N], mask [N] -> stop [num_segments]``; ``weight``, ``h_var``: rows
        that stand for atoms (:class:`ClusterStatsMLP`; a row's vote counts ``weight`` times)."""
        if self.size_input:
            # the points per cluster, as the cluster statistics count them (atom rows weighted)
            cnt = segment_mean_var(h[:, :1], seg, mask, num_segments, weight)[2]
            h = jnp.concatenate([h, jnp.log1p(cnt)[seg][:, None]], -1)
            if h_var is not None:
                h_var = jnp.concatenate([h_var, jnp.zeros_like(h_var[:, :1])], -1)
        logits = ClusterStatsMLP(self.hidden, 1, name="mlp")(
            h, seg, mask, num_segments, weight, h_var
        )
        return aggregate_votes(
            jax.nn.sigmoid(logits), seg, mask, num_segments, self.aggregate, weight
        )


def aggregate_votes(
    votes: jnp.ndarray,
    seg: jnp.ndarray,
    mask: jnp.ndarray,
    num_segments: int,
    aggregate: str = "mean",
    weight: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Masked per-segment mean or max of per-point votes ``[N]`` in ``[0, 1]`` -> ``[num_segments]``
    (``weight [N]``: optional votes per row, for the mean)."""
    v = jnp.where(mask, votes, 0.0)
    if aggregate == "mean":
        w = mask.astype(votes.dtype) if weight is None else jnp.where(mask, weight, 0)
        w = w.astype(votes.dtype)
        cnt = jax.ops.segment_sum(w, seg, num_segments=num_segments)
        return jax.ops.segment_sum(v * w, seg, num_segments=num_segments) / jnp.maximum(cnt, 1.0)
    if aggregate == "max":
        out = jax.ops.segment_max(v, seg, num_segments=num_segments)
        return jnp.maximum(out, 0.0)  # empty segments: -inf -> 0
    raise ValueError(f"unknown aggregate {aggregate!r}; use 'mean' or 'max'")
