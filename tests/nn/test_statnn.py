"""StatNN baseline: invariant features, and it learns what the statistics carry."""

from __future__ import annotations

import torch

from dwscli.nn.baselines.statnn import StatNN, weight_statistics
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation


def test_statistics_are_permutation_invariant() -> None:
    space = WeightSpace.random(MLPSpec.parse("6-8-7-3"), 5)
    permuted = apply_permutation(space, random_permutation(space))
    assert torch.allclose(weight_statistics(space), weight_statistics(permuted))
    assert weight_statistics(space).shape == (5, 7 * 2 * 3)


def test_statnn_predicts_a_target_the_statistics_determine() -> None:
    spec = MLPSpec.parse("4-8-3")
    generator = torch.Generator().manual_seed(0)
    scales = torch.rand(300, generator=generator) * 2 + 0.1
    space = WeightSpace.random(spec, 300, generator=generator)
    space = WeightSpace([w * scales[:, None, None] for w in space.weights], space.biases, spec)
    model = StatNN.fit(space[:200], scales[:200])
    predicted = model.predict(space[200:])
    error = (predicted - scales[200:]).abs().mean()
    baseline = (scales[200:] - scales[:200].mean()).abs().mean()
    assert error < 0.25 * baseline
