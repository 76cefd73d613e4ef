"""Stage 2: the edge-weighted graph neural network (flax linen, jraph graphs).

Each layer learns its own edge weights from the two hits an edge joins and aggregates the
neighbours with them (no softmax over the neighbourhood: a hit may trust all or none of its
neighbours):

    a_ij = sigmoid(Φ([v_i, v_j]))              Φ: Dense(kernel_hidden) -> ReLU -> Dense(1)
    V'   = ReLU([A V, V] W + b)                 (A V)_i = Σ_{edges j -> i} a_ij v_j

Messages flow from an edge's sender ``j`` to its receiver ``i``; the aggregation is a
``jax.ops.segment_sum`` over the receivers, so the cost is linear in the number of edges and there
is no Python loop over nodes or edges. Padding edges get weight 0 (``edge_mask``) and so change
nothing; padding nodes are zeroed after every layer (``node_mask``).

``degree_norm=True`` (off by default: not the thesis's layer) divides ``A V`` by each node's number
of real incoming edges; with plain sums the initial outputs grow with the degree (a first loss
of ~10-20 at init that the optimiser brings down within ~10 steps).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from cgnn_jax.models.mlp import MLP, Gathered


class EdgeWeightedConv(nn.Module):
    """One edge-weighted graph convolution ``v [N, H_in] -> v' [N, features]``.

    Attributes:
      features: output width of the layer.
      kernel_hidden: hidden width of the edge-weight kernel Φ (a two-layer MLP with output 1).
    """

    features: int
    kernel_hidden: int = 16
    degree_norm: bool = False

    @nn.compact
    def __call__(
        self,
        v: jnp.ndarray,
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
        edge_mask: jnp.ndarray,
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Apply the layer.

        Args:
          v: ``[N, H]`` node states.
          senders: ``[E]`` int sender (source ``j``) of each edge.
          receivers: ``[E]`` int receiver (target ``i``) of each edge.
          edge_mask: ``[E]`` bool, False for padding edges.
        Returns:
          ``(v' [N, features], a [E])``: the new states and the edge weights ``a_ij`` (0 on
          padding edges).
        """
        vi, vj = v[receivers], v[senders]
        h = nn.relu(
            nn.Dense(self.kernel_hidden, name="kernel_hidden")(jnp.concatenate([vi, vj], -1))
        )
        a = jax.nn.sigmoid(nn.Dense(1, name="kernel_out")(h)[:, 0])
        a = jnp.where(edge_mask, a, 0.0)
        av = jax.ops.segment_sum(a[:, None] * vj, receivers, num_segments=v.shape[0])
        if self.degree_norm:
            deg = jax.ops.segment_sum(edge_mask.astype(v.dtype), receivers, num_segments=v.shape[0])
            av = av / jnp.maximum(deg, 1.0)[:, None]
        out = nn.relu(nn.Dense(self.features, name="update")(jnp.concatenate([av, v], -1)))
        return out, a


class EdgeWeightedGNN(nn.Module):
    """Hits of a graph -> learned cluster space ``R^{out_dim}``.

    Input projection (Dense to ``hidden``), ``num_layers`` :class:`EdgeWeightedConv` layers of
    width ``hidden``, and a linear output layer. The node features are the per-hit input
    ``concat[hit features, stage-1 embedding]``.

    Attributes:
      num_layers: number of graph convolutions ``K``.
      hidden: node-state width.
      kernel_hidden: hidden width of each layer's edge-weight kernel.
      out_dim: output dimension.
      degree_norm: divide the aggregated ``A V`` by each node's in-degree.
      skip_input: the output layer sees ``[v_K, input]`` (keeps the stage-1 embedding's
        separation for hits the input graph does not connect).
      residual_dim: if > 0, the output is the stage-1 embedding (the last ``residual_dim``
        input columns; needs ``out_dim == residual_dim``) plus a learned correction initialised
        to zero.
    """

    num_layers: int = 3
    hidden: int = 64
    kernel_hidden: int = 16
    out_dim: int = 8
    degree_norm: bool = False
    skip_input: bool = False
    residual_dim: int = 0

    @nn.compact
    def __call__(
        self,
        graph: jraph.GraphsTuple,
        edge_mask: jnp.ndarray,
        node_mask: jnp.ndarray,
        return_weights: bool = False,
    ) -> jnp.ndarray | tuple[jnp.ndarray, list[jnp.ndarray]]:
        """Embed the nodes of one (padded) graph.

        Args:
          graph: ``nodes [N, F]``, ``senders/receivers [E]`` (one event or sub-graph, padded).
          edge_mask: ``[E]`` bool, False for padding edges.
          node_mask: ``[N]`` bool, False for padding nodes.
          return_weights: also return the edge weights of every layer.
        Returns:
          ``[N, out_dim]`` (zeros on padding nodes); with ``return_weights``, also a list of
          ``num_layers`` arrays ``[E]`` of edge weights ``a_ij``.
        """
        keep = node_mask[:, None].astype(graph.nodes.dtype)
        v = nn.Dense(self.hidden, name="input")(graph.nodes) * keep
        weights = []
        for k in range(self.num_layers):
            v, a = EdgeWeightedConv(
                self.hidden, self.kernel_hidden, self.degree_norm, name=f"conv_{k}"
            )(v, graph.senders, graph.receivers, edge_mask)
            v = v * keep
            weights.append(a)
        if self.skip_input:  # output sees the last state and the input (stage-1 embedding)
            v = jnp.concatenate([v, graph.nodes], axis=-1)
        if self.residual_dim:
            # Residual on the stage-1 embedding (the last residual_dim input columns): the
            # correction starts at zero, so training starts from stage 1's space.
            base = graph.nodes[:, -self.residual_dim :]
            corr = nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros, name="output")(v)
            return ((base + corr) * keep, weights) if return_weights else (base + corr) * keep
        out = nn.Dense(self.out_dim, name="output")(v) * keep
        return (out, weights) if return_weights else out


class InteractionGNN(nn.Module):
    """Hits of a graph -> cluster space ``R^{out_dim}`` and a truth score per edge.

    The thesis's edge-weighted convolution with edge states (an interaction network): every edge
    carries a state ``e_ij [H]``, and each of the ``num_layers`` layers updates edges, then nodes,
    with residual connections and LayerNorm:

        e_ij <- LN(e_ij + Φ_k([e_ij, v_i, v_j]))         a_ij = sigmoid(w_k · e_ij + b_k)
        v_i  <- LN(v_i + Ψ_k([v_i, Σ_{j->i} a_ij e_ij, Σ_{i->j} a_ij e_ij]))

    so each layer's adjacency ``A = (a_ij)`` comes from its own MLP kernel on node pairs, as in
    :class:`EdgeWeightedConv`, and is *supervised*: training adds a binary cross-entropy between
    every layer's ``a_ij`` and the edge's truth (same particle), which gives the thesis's adjacency
    a meaning and makes the last layer's ``a_ij`` an edge classifier. Messages flow both ways
    along every edge (the stage-1 graph is directed). Encoders: ``v = Φ_v(x)``,
    ``e = Φ_e([v_i, v_j, x_i - x_j])``. The output is ``Dense(out_dim)([v_K, x])`` (or a small
    MLP, ``output_hidden``).

    Padding edges get ``a = 0`` and padding nodes are zeroed after every layer, so padding changes
    no real output.

    Attributes:
      num_layers: message-passing steps ``K``.
      hidden: width ``H`` of node and edge states.
      out_dim: output dimension (the cluster space).
      distance_dims: if > 0, the edge encoder also sees ``log(1 + |z_i - z_j|^2)`` of the last
        ``distance_dims`` input columns (the stage-1 embedding: a distance that already tells
        true edges from false).
      output_hidden: if > 0, the output head is an MLP with one hidden layer of this width
        instead of one ``Dense``.
      detach_output: if True, no gradient flows from the output into the message passing: the
        loss on the cluster space trains the head alone, and the layers learn from the edge
        truth only (the two losses do not compete).
    """

    num_layers: int = 4
    hidden: int = 48
    out_dim: int = 12
    distance_dims: int = 0
    output_hidden: int = 0
    detach_output: bool = False

    @nn.compact
    def __call__(
        self,
        graph: jraph.GraphsTuple,
        edge_mask: jnp.ndarray,
        node_mask: jnp.ndarray,
        return_weights: bool = False,
        return_logits: bool = False,
    ):
        """Embed the nodes of one (padded) graph.

        Args:
          graph: ``nodes [N, F]``, ``senders/receivers [E]``.
          edge_mask: ``[E]`` bool, False for padding edges.
          node_mask: ``[N]`` bool, False for padding nodes.
          return_weights: also return the ``num_layers`` arrays ``a_ij [E]`` (0 on padding).
          return_logits: also return the ``num_layers`` arrays of logits ``[E]`` (for the loss).
        Returns:
          ``out [N, out_dim]``; with ``return_weights`` or ``return_logits``, ``(out, list)``.
        """
        h = self.hidden
        x = graph.nodes
        s, r = graph.senders, graph.receivers
        n = x.shape[0]
        keep = node_mask[:, None].astype(x.dtype)
        emask = edge_mask[:, None].astype(x.dtype)
        v = MLP((h,), h, name="node_encoder")(x) * keep
        # [v_i, v_j, x_i - x_j] per edge, its first Dense computed per node before the gather
        pair = [(v, ((s, 1),)), (v, ((r, 1),)), (x, ((s, 1), (r, -1)))]
        if self.distance_dims:  # log(1 + |z_i - z_j|^2) in the last distance_dims input columns
            dz = x[s, -self.distance_dims :] - x[r, -self.distance_dims :]
            pair.append((jnp.log1p(jnp.sum(dz * dz, -1, keepdims=True)), ((None, 1),)))
        e = MLP((h,), h, name="edge_encoder")(Gathered(tuple(pair)))
        e = e * emask
        logits, weights = [], []
        for k in range(self.num_layers):
            de = MLP((h,), h, name=f"edge_{k}")(
                Gathered(((e, ((None, 1),)), (v, ((s, 1),)), (v, ((r, 1),))))
            )
            e = nn.LayerNorm(name=f"edge_norm_{k}")(e + de) * emask
            lg = nn.Dense(1, name=f"kernel_{k}")(e)[:, 0]
            a = jnp.where(edge_mask, jax.nn.sigmoid(lg), 0.0)
            msg = a[:, None] * e
            m_in = jax.ops.segment_sum(msg, r, num_segments=n)
            m_out = jax.ops.segment_sum(msg, s, num_segments=n)
            dv = MLP((h,), h, name=f"node_{k}")(jnp.concatenate([v, m_in, m_out], -1))
            v = nn.LayerNorm(name=f"node_norm_{k}")(v + dv) * keep
            logits.append(lg)
            weights.append(a)
        head_in = jnp.concatenate([v, x], -1)
        if self.detach_output:
            head_in = jax.lax.stop_gradient(head_in)
        if self.output_hidden:
            out = MLP((self.output_hidden,), self.out_dim, name="output")(head_in)
        else:
            out = nn.Dense(self.out_dim, name="output")(head_in)
        out = out * keep
        if return_logits:
            return out, logits
        if return_weights:
            return out, weights
        return out
