"""``inr2vec``: an encoder in the style of inr2vec (De Luigi et al., ICLR 2023).

inr2vec reads an MLP's weights as a set of rows: every neuron's incoming weights and bias,
``[W_i[j, :] | b_i[j]]``, goes through a shared encoder and the results are max-pooled. Here each
layer i has its own row encoder (its rows have d_{i-1} + 1 entries), the pooled codes are
concatenated over layers and a head maps them to the outputs.

Pooling over rows makes the code blind to the order of layer i's neurons *as rows*, but a row
lists the previous layer's neurons in a fixed order, so the model is not invariant to hidden
permutations, as in the paper. Invariant tasks only (inr2vec is an encoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from dwscli.nn.baselines.common import BaselineModel, mlp
from dwscli.nn.heads import invariant_head
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class Inr2VecOptions:
    """Options of ``inr2vec`` (the ``model:`` section)."""

    hidden_features: int = 64  # width of the row encoders and of the code per layer
    row_layers: int = 2  # linear layers of each row encoder
    pooling: Literal["max", "mean"] = "max"  # over the rows of a layer (inr2vec: max)
    head_hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"


class Inr2Vec(BaselineModel):
    """Per-layer row encoders, pooled over rows, concatenated, then an MLP head."""

    arch_name = "inr2vec"
    kinds = ("invariant",)

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
        sizes = [hidden * spec.depth, *options.head_hidden, out_features]
        self.head = invariant_head(
            sizes, options.activation, options.dropout, norm=options.head_norm
        )

    def embed(self, space: WeightSpace) -> Tensor:
        """The concatenated per-layer codes ``[B, L * hidden_features]``."""
        weights, biases = self.normalized(space)
        codes = []
        for encoder, w, b in zip(self.encoders, weights, biases):
            rows = encoder(torch.cat([w, b[..., None]], dim=-1))  # [B, d_i, hidden]
            pooled = rows.amax(dim=1) if self.options.pooling == "max" else rows.mean(dim=1)
            codes.append(pooled)
        return torch.cat(codes, dim=-1)

    def forward(self, space: WeightSpace) -> Tensor:
        return self.head(self.embed(space))


def build_inr2vec(
    spec: MLPSpec, kind: str, options: Inr2VecOptions, out_features: int
) -> nn.Module:
    return Inr2Vec(spec, kind, options, out_features)


__all__ = ["Inr2Vec", "Inr2VecOptions", "build_inr2vec"]
