"""One tensor order (network order W_1, b_1, …) for weight spaces and their features."""

from __future__ import annotations

import torch

from dwscli.nn.features import WSFeatures
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def test_space_and_features_list_tensors_in_the_same_order() -> None:
    spec = MLPSpec.parse("3-5-4-2")
    space = WeightSpace.random(spec, 2, generator=torch.Generator().manual_seed(0))
    features = WSFeatures.from_space(space)
    assert [t.shape[:-1] for t in features.tensors()] == [t.shape for t in space.tensors()]
    for a, b in zip(features.tensors(), space.tensors(), strict=True):
        assert torch.equal(a[..., 0], b)
    again = WSFeatures.from_tensors(features.tensors())
    assert all(torch.equal(a, b) for a, b in zip(again.tensors(), features.tensors(), strict=True))
    assert torch.equal(again.to_space(spec).flatten(), space.flatten())
