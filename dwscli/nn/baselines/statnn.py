"""``statnn``: per-layer weight statistics into a small MLP (after Unterthiner et al., 2020).

The features are those of the gradient-boosting StatNN baseline
(:func:`dwscli.baselines.statnn.weight_statistics`: mean, variance and five quantiles of every
W_i and b_i), standardised with statistics fitted on the training sample, then an MLP. Invariant
by construction (statistics of a tensor ignore the order of its entries); invariant tasks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dwscli.baselines.statnn import QUANTILES, weight_statistics
from dwscli.nn.baselines.common import BaselineModel
from dwscli.nn.heads import invariant_head
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class StatNNOptions:
    """Options of ``statnn`` (the ``model:`` section)."""

    hidden_features: int = 64
    num_layers: int = 2  # hidden layers of the MLP
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"


class StatNNRegressor(BaselineModel):
    """Standardised weight statistics -> MLP."""

    arch_name = "statnn"
    kinds = ("invariant",)
    normalizes_weights = False

    def __init__(self, spec: MLPSpec, kind: str, options: StatNNOptions, out_features: int) -> None:
        super().__init__(spec, kind, out_features, options)
        count = (2 + len(QUANTILES)) * 2 * spec.depth
        self.register_buffer("feature_mean", torch.zeros(count))
        self.register_buffer("feature_std", torch.ones(count))
        sizes = [count, *[options.hidden_features] * options.num_layers, out_features]
        self.net = invariant_head(
            sizes, options.activation, options.dropout, norm=options.head_norm
        )

    def features(self, space: WeightSpace) -> Tensor:
        self.check_input(space)
        # the statistics are computed on the CPU (torch.quantile wants its q there too)
        return weight_statistics(space.detach().to("cpu")).to(space.device, space.dtype)

    @torch.no_grad()
    def fit(self, space: WeightSpace) -> None:
        super().fit(space)
        features = self.features(space).float()
        self.feature_mean.copy_(features.mean(dim=0))
        std = features.std(dim=0) if len(features) > 1 else torch.ones_like(features[0])
        self.feature_std.copy_(std.nan_to_num(1.0).clamp_min(1e-6))

    def forward(self, space: WeightSpace) -> Tensor:
        x = (self.features(space) - self.feature_mean) / self.feature_std
        return self.net(x)


def build_statnn(spec: MLPSpec, kind: str, options: StatNNOptions, out_features: int) -> nn.Module:
    return StatNNRegressor(spec, kind, options, out_features)


__all__ = ["StatNNOptions", "StatNNRegressor", "build_statnn"]
