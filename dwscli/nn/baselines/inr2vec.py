"""``inr2vec``: an encoder in the style of inr2vec (De Luigi et al., ICLR 2023).

inr2vec reads an MLP's weights as a set of rows: every neuron's incoming weights and bias,
``[W_i[j, :] | b_i[j]]``, goes through a shared encoder and the results are max-pooled. Here each
layer i has its own row encoder (its rows have d_{i-1} + 1 entries) and the pooled codes are
concatenated over layers into the net's code.

* invariant tasks: a head maps the code to the outputs.
* equivariant tasks (weights -> weights): a decoder MLP maps the code to a change of the flat
  weight vector W_1, b_1, …, W_L, b_L, added to the input (residual), as ``mlp`` does. Its last
  layer starts scaled by ``output_init_scale``, so an untrained model is close to the identity.
  The whole net has to pass through the code, which is the point of this baseline: an encoder
  built for retrieval and classification, asked to edit weights. Each layer's rows are pooled on
  their own, so reordering one layer's rows alone (a different net) leaves the code unchanged:
  the decoder cannot tell which neuron an edit belongs to, and learns a per-neuron edit for its
  training nets only, not for unseen ones.

Pooling over rows makes the code blind to the order of layer i's neurons *as rows*, but a row
lists the previous layer's neurons in a fixed order, so the model is not invariant to hidden
permutations, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from dwscli.nn.baselines.common import BaselineModel, mlp, scale_parameters_, split_flat
from dwscli.nn.heads import invariant_head
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class Inr2VecOptions:
    """Options of ``inr2vec`` (the ``model:`` section)."""

    hidden_features: int = 64  # width of the row encoders and of the code per layer
    row_layers: int = 2  # linear layers of each row encoder
    pooling: Literal["max", "mean"] = "max"  # over the rows of a layer (inr2vec: max)
    # hidden widths of the MLP after the code: the head (invariant) or the decoder (equivariant)
    head_hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"
    output_init_scale: float = 1e-2  # equivariant tasks: start near the identity


class Inr2Vec(BaselineModel):
    """Per-layer row encoders, pooled over rows, concatenated, then an MLP head (invariant) or
    an MLP decoder to the flat weight change (equivariant)."""

    arch_name = "inr2vec"

    def __init__(
        self, spec: MLPSpec, kind: str, options: Inr2VecOptions, out_features: int
    ) -> None:
        super().__init__(spec, kind, out_features, options)
        hidden = options.hidden_features
        self.encoders = nn.ModuleList(
            mlp(
                [n_in + 1, *[hidden] * options.row_layers],
                options.activation,
                options.dropout,
                final_activation=True,
            )
            for _, n_in in spec.weight_shapes
        )
        outputs = out_features if self.invariant else spec.num_parameters
        sizes = [hidden * spec.depth, *options.head_hidden, outputs]
        if self.invariant:
            self.head = invariant_head(
                sizes, options.activation, options.dropout, norm=options.head_norm
            )
        else:
            self.decoder = mlp(sizes, options.activation, options.dropout)
            scale_parameters_(self.decoder[-1], options.output_init_scale)

    def embed(self, space: WeightSpace) -> Tensor:
        """The concatenated per-layer codes ``[B, L * hidden_features]``."""
        weights, biases = self.normalized(space)
        codes = []
        for encoder, w, b in zip(self.encoders, weights, biases):
            rows = encoder(torch.cat([w, b[..., None]], dim=-1))  # [B, d_i, hidden]
            pooled = rows.amax(dim=1) if self.options.pooling == "max" else rows.mean(dim=1)
            codes.append(pooled)
        return torch.cat(codes, dim=-1)

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        code = self.embed(space)
        if self.invariant:
            return self.head(code)
        return self.residual(space, *split_flat(self.decoder(code), space.spec))


def build_inr2vec(
    spec: MLPSpec, kind: str, options: Inr2VecOptions, out_features: int
) -> nn.Module:
    return Inr2Vec(spec, kind, options, out_features)


__all__ = ["Inr2Vec", "Inr2VecOptions", "build_inr2vec"]
