"""``transformer``: a Transformer over weight tokens, no permutation symmetry built in.

One token per neuron of layers 1..L: its incoming weights and bias ``[W_i[j, :] | b_i[j]]``,
projected to ``d_model`` by a linear map of its layer, plus a learned embedding of the layer and
a learned embedding of the neuron's *position* within the layer. The position embedding is what
the DWSNets paper's Transformer baseline has and what makes it order-dependent: permuting hidden
neurons changes the tokens' positions, and the row contents list the previous layer's neurons in
order. A pre-norm ``nn.TransformerEncoder`` mixes the tokens.

* invariant tasks: the tokens are mean-pooled and a head maps the result to the outputs.
* equivariant tasks (weights -> weights): each output token is decoded, by a linear map of its
  layer, back to its neuron's incoming weights and bias ``[ΔW_i[j, :] | Δb_i[j]]``; the change is
  added to the input (residual), so the output has the input's shapes. The decoders start scaled
  by ``output_init_scale``, so an untrained model is close to the identity. The positional
  embeddings still make the map order-dependent: a permuted input does not give a permuted
  output, which is what this baseline is meant to show against DWSNets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from dwscli.nn.baselines.common import BaselineModel, scale_parameters_
from dwscli.nn.heads import invariant_head
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class TransformerOptions:
    """Options of ``transformer`` (the ``model:`` section)."""

    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    dim_feedforward: int = 128
    activation: Literal["relu", "gelu"] = "gelu"
    dropout: float = 0.0
    head_hidden: list[int] = field(default_factory=lambda: [64])  # invariant tasks
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"
    output_init_scale: float = 1e-2  # equivariant tasks: start near the identity


class WeightTransformer(BaselineModel):
    """Neuron tokens (+ layer and position embeddings) -> TransformerEncoder, then mean -> head
    (invariant) or a per-layer decoder of each token to its neuron's weight change
    (equivariant)."""

    arch_name = "transformer"

    def __init__(
        self, spec: MLPSpec, kind: str, options: TransformerOptions, out_features: int
    ) -> None:
        super().__init__(spec, kind, out_features, options)
        d = options.d_model
        self.project = nn.ModuleList(nn.Linear(n_in + 1, d) for _, n_in in spec.weight_shapes)
        self.layer_embedding = nn.Parameter(torch.randn(spec.depth, d) * 0.02)
        self.position_embedding = nn.ParameterList(
            nn.Parameter(torch.randn(n_out, d) * 0.02) for n_out, _ in spec.weight_shapes
        )
        layer = nn.TransformerEncoderLayer(
            d,
            options.num_heads,
            options.dim_feedforward,
            options.dropout,
            activation=options.activation,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, options.num_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )
        if self.invariant:
            self.head = invariant_head(
                [d, *options.head_hidden, out_features],
                "relu",
                options.dropout,
                norm=options.head_norm,
            )
        else:
            self.decode = nn.ModuleList(nn.Linear(d, n_in + 1) for _, n_in in spec.weight_shapes)
            scale_parameters_(self.decode, options.output_init_scale)

    def tokens(self, space: WeightSpace) -> Tensor:
        """``[B, d_1 + … + d_L, d_model]``: one token per neuron of layers 1..L."""
        weights, biases = self.normalized(space)
        parts = []
        for i, (w, b) in enumerate(zip(weights, biases)):
            token = self.project[i](torch.cat([w, b[..., None]], dim=-1))
            parts.append(token + self.layer_embedding[i] + self.position_embedding[i])
        return torch.cat(parts, dim=1)

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        encoded = self.encoder(self.tokens(space))
        if self.invariant:
            return self.head(encoded.mean(dim=1))
        return self.residual(space, *self.changes(encoded))

    def changes(self, encoded: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Per layer ``(ΔW_i [B, d_i, d_{i-1}], Δb_i [B, d_i])`` from the encoded tokens, in
        normalised units: the tokens are in layer order, ``d_i`` of them for layer i."""
        neurons = [n_out for n_out, _ in self.spec.weight_shapes]
        delta_w, delta_b = [], []
        for decode, tokens in zip(self.decode, encoded.split(neurons, dim=1)):
            rows = decode(tokens)  # [B, d_i, d_{i-1} + 1]
            delta_w.append(rows[..., :-1])
            delta_b.append(rows[..., -1])
        return delta_w, delta_b


def build_transformer(
    spec: MLPSpec, kind: str, options: TransformerOptions, out_features: int
) -> nn.Module:
    return WeightTransformer(spec, kind, options, out_features)


__all__ = ["TransformerOptions", "WeightTransformer", "build_transformer"]
