"""Neuron probes: an equivariant model sees what each neuron of its input net computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwscli.data.zoo import Zoo
from dwscli.nn.equivariance import equivariance_error
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet
from dwscli.train.probes import init_probes
from dwscli.weights.functional import activate
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

TOL = 1e-10


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(4321)


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("mode", ["full", "shared"])
@pytest.mark.parametrize("text", ["2-7-5-1:sine", "3-4-9-6-2", "4-6-2", "5-3"])
def test_neuron_probes_keep_the_editor_equivariant(text: str, mode: str, layers: int) -> None:
    spec = MLPSpec.parse(text)
    config = DWSNetConfig(
        hidden_channels=5, num_layers=layers, fixed_mixing=mode, output_init_scale=1.0, probes=6
    )
    model = EquivariantDWSNet(spec, config).eval()
    assert model.probes is not None
    assert equivariance_error(model, spec, as_space=True) <= TOL


def test_neuron_features_are_each_neurons_outputs_on_the_probes_mapped_to_channels() -> None:
    spec = MLPSpec.parse("2-8-6-1:sine;w0=30")
    config = DWSNetConfig(hidden_channels=3, num_layers=2, probes=10)
    model = EquivariantDWSNet(spec, config).double()
    space = WeightSpace.random(spec, 2, dtype=torch.float64)
    features = model.probes(space)
    for net in range(2):  # by hand, net by net and layer by layer
        out = model.probes.inputs.detach()
        for layer in range(spec.depth):
            out = out @ space.weights[layer][net].T + space.biases[layer][net]
            if layer < spec.depth - 1:
                out = activate(out, spec, layer)
            expected = (out / out.square().mean().sqrt()).T @ model.probes.maps[layer]
            assert torch.allclose(features[layer][net], expected, atol=1e-10)


def test_the_edit_depends_on_what_the_net_computes_and_the_points_learn() -> None:
    spec = MLPSpec.parse("2-8-6-1:sine;w0=30")
    config = DWSNetConfig(hidden_channels=4, num_layers=2, probes=12, output_init_scale=1.0)
    torch.manual_seed(0)
    with_probes = EquivariantDWSNet(spec, config)
    torch.manual_seed(0)
    without = EquivariantDWSNet(spec, DWSNetConfig(**{**config.to_dict(), "probes": 0}))
    space = WeightSpace.random(spec, 3)
    edited = with_probes(space)
    plain = without(space)
    assert any(not torch.allclose(a, b) for a, b in zip(edited.tensors(), plain.tensors()))
    sum(t.square().sum() for t in edited.tensors()).backward()
    assert with_probes.probes.inputs.grad is not None
    assert with_probes.probes.inputs.grad.abs().sum() > 0
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in with_probes.probes.maps)


def test_the_trainer_starts_neuron_probes_on_the_zoos_pixel_grid(small_inr_zoo: Path) -> None:
    zoo = Zoo.open(small_inr_zoo)
    config = DWSNetConfig(hidden_channels=4, num_layers=1, probes=16, probe_grid=True)
    model = EquivariantDWSNet(zoo.spec, config)
    assert init_probes(model, zoo, seed=0)
    points = model.probes.coordinates()
    assert points.abs().max() <= 1.0  # the zoo's coordinate range
    assert model.probes.grid_points.tolist() == [28.0, 28.0]
