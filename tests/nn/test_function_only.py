"""``model.trunk: false``: an invariant model that reads only what each net computes at its
functional probes, so nets that compute the same function get the same features."""

from __future__ import annotations

import pytest
import torch

from dwscli.errors import DwsError
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.nn.streaming import blockable, forward_within_memory
from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

SPEC = MLPSpec.parse("1-12-10-1:sine;w0=30")
F64 = torch.float64


def _model(trunk: bool, seed: int = 0) -> InvariantDWSNet:
    torch.manual_seed(seed)
    config = DWSNetConfig(
        hidden_channels=4, num_layers=2, probes=16, probe_features=24, trunk=trunk,
        head_hidden=[8], out_features=3, head_norm="none",
    )  # fmt: skip
    return InvariantDWSNet(SPEC, config).double().eval()


def _flip_neurons(space: WeightSpace, layer: int, neurons: torch.Tensor) -> WeightSpace:
    """The same functions, other weights: sin is odd, so negating a hidden neuron's incoming
    weights and bias and its outgoing weights leaves every net's output unchanged."""
    weights = [w.clone() for w in space.weights]
    biases = [b.clone() for b in space.biases]
    weights[layer][:, neurons, :] *= -1
    biases[layer][:, neurons] *= -1
    weights[layer + 1][:, :, neurons] *= -1
    return WeightSpace(weights, biases, space.spec)


def test_without_a_trunk_the_model_is_its_probes_and_head() -> None:
    model = _model(trunk=False)
    assert model.pool is None and len(model.blocks) == 0
    expected = sum(p.numel() for p in [*model.probes.parameters(), *model.head.parameters()])
    assert sum(p.numel() for p in model.parameters()) == expected
    space = WeightSpace.random(SPEC, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        assert torch.equal(model.embed(space), model.probes(space))
        assert model(space).shape == (5, 3)


def test_nets_that_compute_the_same_function_embed_alike_only_without_a_trunk() -> None:
    g = torch.Generator().manual_seed(3)
    space = WeightSpace.random(SPEC, 6, generator=g, dtype=F64)
    flipped = _flip_neurons(space, 0, torch.randperm(12, generator=g)[:5])
    flipped = _flip_neurons(flipped, 1, torch.randperm(10, generator=g)[:4])
    moved = apply_permutation(flipped, random_permutation(flipped, g))
    points = torch.linspace(-1, 1, 50, dtype=F64).view(-1, 1)
    assert torch.allclose(mlp_forward(space, points), mlp_forward(moved, points), atol=1e-12)
    assert not torch.allclose(space.weights[0], moved.weights[0])
    with torch.no_grad():
        function_only, with_trunk = _model(trunk=False), _model(trunk=True)
        assert torch.allclose(function_only(space), function_only(moved), atol=1e-10)
        # the trunk reads the weights, which the flips changed (a permutation alone would not)
        assert not torch.allclose(with_trunk(space), with_trunk(moved), atol=1e-6)


def test_without_a_trunk_a_tight_memory_budget_runs_plainly() -> None:
    model = _model(trunk=False)
    assert not blockable(model) and blockable(_model(trunk=True))
    space = WeightSpace.random(SPEC, 9, generator=torch.Generator().manual_seed(4), dtype=F64)
    with torch.no_grad():
        plain = model(space)
        tight = forward_within_memory(model, space, budget_bytes=1, batch_budget_bytes=1)
    assert isinstance(tight, torch.Tensor) and torch.allclose(tight, plain, atol=1e-12)


def test_trunk_false_needs_probes_and_an_invariant_model() -> None:
    with pytest.raises(DwsError, match=r"model\.trunk: false .* the model has none"):
        DWSNetConfig(trunk=False)
    config = DWSNetConfig(hidden_channels=4, num_layers=1, probes=4, trunk=False)
    with pytest.raises(DwsError, match=r"model\.trunk: false is for invariant models"):
        EquivariantDWSNet(SPEC, config)
    with pytest.raises(DwsError, match=r"model\.input_templates feed the DWS trunk"):
        DWSNetConfig(probes=4, trunk=False, input_templates=8)
