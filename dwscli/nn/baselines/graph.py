"""``graph``: the network as a graph, processed by message passing (neural graphs: Kofinas et al.,
ICLR 2024; Lim et al., ICLR 2024).

Nodes are the neurons of all layers 0..L, edges the weights: W_k[r, c] is an edge from neuron c
of layer k-1 to neuron r of layer k. Node features: the neuron's bias (none for inputs), plus a
learned embedding of its layer, plus a learned embedding of its index for the fixed input and
output neurons (hidden neurons have no identity, so the model stays permutation equivariant).
Edge features: the weight.

A message-passing layer (parameters shared by all edges and nodes) updates every edge from itself
and its two end nodes, sends a message along every edge in both directions (forwards to the next
layer, backwards to the previous one), averages what each node receives from each side, and
updates the node. The graph of an MLP is a chain of complete bipartite graphs, so the scatter of
messages to their target nodes is a mean over one axis of the edge tensor ``[B, d_k, d_{k-1}, C]``
(no index lists, no torch-geometric).

Invariant models pool all nodes (mean and max) into an MLP head. Equivariant ones read the final
edges as changes of the weights and the final nodes of layers 1..L as changes of the biases
(residual).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from dwscli.nn.baselines.common import BaselineModel, mlp, scale_parameters_
from dwscli.nn.heads import invariant_head
from dwscli.nn.layers import activation_module
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class GraphOptions:
    """Options of ``graph`` (the ``model:`` section)."""

    hidden_channels: int = 32
    num_layers: int = 3  # message-passing layers
    pooling: Literal["mean", "max", "mean+max"] = "mean+max"
    head_hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"
    output_init_scale: float = 1e-2  # equivariant tasks: start near the identity


class MessagePassing(nn.Module):
    """Edge update, messages in both directions (mean-aggregated), node update; residual."""

    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        c = channels
        # first linear maps of the edge/message MLPs, split by input so that node terms are
        # computed once per node and broadcast over edges
        self.edge_e, self.edge_dst, self.edge_src = (nn.Linear(c, c) for _ in range(3))
        self.edge_out = nn.Linear(c, c)
        self.fwd_e, self.fwd_src = nn.Linear(c, c), nn.Linear(c, c, bias=False)
        self.bwd_e, self.bwd_dst = nn.Linear(c, c), nn.Linear(c, c, bias=False)
        self.node = mlp([3 * c, c, c], activation)
        self.act = activation_module(activation)

    def forward(
        self, nodes: list[Tensor], edges: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        new_edges = []
        forwards = [torch.zeros_like(nodes[0])]  # layer 0 receives nothing from before
        backwards = []
        for k, e in enumerate(edges, start=1):  # e: [B, d_k, d_{k-1}, C]
            dst, src = nodes[k], nodes[k - 1]
            update = self.edge_e(e) + self.edge_dst(dst)[:, :, None] + self.edge_src(src)[:, None]
            e = e + self.edge_out(self.act(update))
            new_edges.append(e)
            forwards.append(self.act(self.fwd_e(e) + self.fwd_src(src)[:, None]).mean(dim=2))
            backwards.append(self.act(self.bwd_e(e) + self.bwd_dst(dst)[:, :, None]).mean(dim=1))
        backwards.append(torch.zeros_like(nodes[-1]))  # layer L receives nothing from after
        new_nodes = [
            h + self.node(torch.cat([h, f, b], dim=-1))
            for h, f, b in zip(nodes, forwards, backwards)
        ]
        return new_nodes, new_edges


class NeuralGraph(BaselineModel):
    """Message passing over the neurons (nodes) and weights (edges) of the input nets."""

    arch_name = "graph"
    any_hidden_widths = True

    def __init__(self, spec: MLPSpec, kind: str, options: GraphOptions, out_features: int) -> None:
        super().__init__(spec, kind, out_features, options)
        c = options.hidden_channels
        self.node_in = nn.Linear(1, c)
        self.edge_in = nn.Linear(1, c)
        self.layer_embedding = nn.Parameter(torch.randn(spec.depth + 1, c) * 0.1)
        self.input_position = nn.Parameter(torch.randn(spec.input_dim, c) * 0.1)
        self.output_position = nn.Parameter(torch.randn(spec.output_dim, c) * 0.1)
        self.layers = nn.ModuleList(
            MessagePassing(c, options.activation) for _ in range(options.num_layers)
        )
        self.drop = nn.Dropout(options.dropout) if options.dropout > 0 else None
        if self.invariant:
            pooled = c * (2 if options.pooling == "mean+max" else 1)
            self.head = invariant_head(
                [pooled, *options.head_hidden, out_features],
                options.activation,
                norm=options.head_norm,
            )
        else:
            self.edge_out = nn.Linear(c, 1)
            self.node_out = nn.Linear(c, 1)
            scale_parameters_(self.edge_out, options.output_init_scale)
            scale_parameters_(self.node_out, options.output_init_scale)

    def graph(self, space: WeightSpace) -> tuple[list[Tensor], list[Tensor]]:
        """Node features per layer ``[B, d_k, C]`` and edge features ``[B, d_k, d_{k-1}, C]``."""
        weights, biases = self.normalized(space)
        batch = space.batch_size
        zero = weights[0].new_zeros(batch, space.spec.input_dim, 1)
        node_values = [zero, *(b[..., None] for b in biases)]
        nodes = [self.node_in(v) + self.layer_embedding[k] for k, v in enumerate(node_values)]
        nodes[0] = nodes[0] + self.input_position
        nodes[-1] = nodes[-1] + self.output_position
        edges = [self.edge_in(w[..., None]) for w in weights]
        for layer in self.layers:
            nodes, edges = layer(nodes, edges)
            if self.drop is not None:
                nodes = [self.drop(h) for h in nodes]
                edges = [self.drop(e) for e in edges]
        return nodes, edges

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        nodes, edges = self.graph(space)
        if self.invariant:
            every = torch.cat(nodes, dim=1)  # [B, all neurons, C]
            pooled = []
            if self.options.pooling in ("mean", "mean+max"):
                pooled.append(every.mean(dim=1))
            if self.options.pooling in ("max", "mean+max"):
                pooled.append(every.amax(dim=1))
            return self.head(torch.cat(pooled, dim=-1))
        delta_w = [self.edge_out(e)[..., 0] for e in edges]
        delta_b = [self.node_out(h)[..., 0] for h in nodes[1:]]
        return self.residual(space, delta_w, delta_b)


def build_graph(spec: MLPSpec, kind: str, options: GraphOptions, out_features: int) -> nn.Module:
    return NeuralGraph(spec, kind, options, out_features)


__all__ = ["GraphOptions", "MessagePassing", "NeuralGraph", "build_graph"]
