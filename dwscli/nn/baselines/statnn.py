"""StatNN: hand-crafted weight statistics (after Unterthiner et al., 2020), two ways.

:func:`weight_statistics` gives, for every weight and bias tensor, its mean, variance and
quantiles (0, 25, 50, 75, 100 %). Statistics of a tensor do not depend on the order of its
entries, so both models below are permutation invariant by construction:

* :class:`StatNN`: the statistics fed to gradient-boosted trees, the strong simple baseline for
  predicting a classifier's accuracy from its weights (the ``accuracy`` task fits it beside the
  processor);
* ``statnn`` (:class:`StatNNRegressor`): the statistics, standardised with values fitted on the
  training sample, into a small MLP, an architecture the trainer can train like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dwscli.nn.baselines.common import BaselineModel
from dwscli.nn.heads import invariant_head
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def weight_statistics(space: WeightSpace) -> Tensor:
    """``[B, 7 * 2L]``: mean, variance and 5 quantiles of every W_i and b_i of each net."""
    features = []
    q = torch.tensor(QUANTILES, dtype=torch.float32)
    for t in space.tensors():
        flat = t.reshape(space.batch_size, -1).float()
        features += [
            flat.mean(dim=1, keepdim=True),
            flat.var(dim=1, keepdim=True, unbiased=False),
            torch.quantile(flat, q, dim=1).T,
        ]
    return torch.cat(features, dim=1)


def _regressor(samples: int):
    """The gradient-boosted trees. Leaves hold at least 20 nets (sklearn's default) once there
    are 200 or more; fewer nets get smaller leaves, else trees could not split at all (under 40
    nets) and every prediction would be the same."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_iter=500,
        learning_rate=0.05,
        min_samples_leaf=min(20, max(2, samples // 10)),
        random_state=0,
    )


@dataclass
class StatNN:
    """A fitted StatNN regressor."""

    model: object

    @classmethod
    def fit(cls, space: WeightSpace, targets: Tensor) -> StatNN:
        return cls.fit_features(weight_statistics(space), targets)

    @classmethod
    def fit_features(cls, features: Tensor, targets: Tensor) -> StatNN:
        """Fit on precomputed :func:`weight_statistics` (a big zoo's, computed in chunks)."""
        model = _regressor(len(features))
        model.fit(features.numpy(), targets.numpy())
        return cls(model)

    def predict(self, space: WeightSpace) -> Tensor:
        return self.predict_features(weight_statistics(space))

    def predict_features(self, features: Tensor) -> Tensor:
        values = self.model.predict(features.numpy())  # type: ignore[attr-defined]
        return torch.from_numpy(np.asarray(values, dtype=np.float32))


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


__all__ = [
    "QUANTILES",
    "StatNN",
    "StatNNOptions",
    "StatNNRegressor",
    "build_statnn",
    "weight_statistics",
]
