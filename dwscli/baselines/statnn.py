"""StatNN: hand-crafted weight statistics + gradient boosting (Unterthiner et al., 2020).

The strong simple baseline for predicting a classifier's accuracy from its weights: for every
weight and bias tensor, its mean, variance and quantiles (0, 25, 50, 75, 100 %), fed to a
gradient-boosted regressor. Permutation invariant by construction (statistics of a tensor do not
depend on the order of its entries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dwscli.weights.space import WeightSpace

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
