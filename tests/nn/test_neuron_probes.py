"""Neuron probes: an equivariant model sees what each neuron of its input net computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwscli.data.zoo import Zoo
from dwscli.errors import DwsError
from dwscli.image_edits import edit_images
from dwscli.nn.equivariance import equivariance_error
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet
from dwscli.train.probes import init_probes
from dwscli.weights.functional import activate, mlp_forward
from dwscli.weights.inr import InrConventions
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


def _editor(spec: MLPSpec, op: str, **options: object) -> EquivariantDWSNet:
    """An editor whose neuron probes read ``op``, on the 28 x 28 grid over [-1, 1], its probes
    on random pixel centres."""
    config = DWSNetConfig(
        **{
            "hidden_channels": 4,
            "num_layers": 2,
            "probes": 40,
            "probe_grid": True,
            "probe_edit": op,
            "output_init_scale": 1.0,
            **options,
        }
    )
    model = EquivariantDWSNet(spec, config)
    centres = InrConventions().coordinates()
    with torch.no_grad():
        picks = torch.randperm(len(centres))[:40]
        model.probes.inputs.copy_(centres[picks] + 0.01 * torch.randn(40, 2))
        model.probes.set_grid(
            torch.full((2,), -1.0), torch.full((2,), 1.0), torch.tensor([28.0, 28.0])
        )
    return model


@pytest.mark.parametrize("op", ["dilate", "erode"])
def test_the_edit_residual_is_the_edited_rendering_minus_the_rendering(op: str) -> None:
    spec = MLPSpec.parse("2-16-16-1:sine;w0=30")
    model = _editor(spec, op).double()
    space = WeightSpace.random(spec, 3, dtype=torch.float64)
    conventions = InrConventions()
    image = mlp_forward(space, conventions.coordinates(torch.float64))[..., 0].reshape(3, 28, 28)
    edited = edit_images(image, op, size=3)  # the task's own edit, on the whole rendering
    points = model.probes.coordinates().detach()
    pixel = torch.cdist(points, conventions.coordinates(torch.float64)).argmin(1)
    expected = (edited - image).reshape(3, -1)[:, pixel]
    output = model.probes.outputs(space)[-1]
    assert torch.allclose(model.probes.edit_residual(space, output), expected, atol=1e-9)
    assert (expected >= 0).all() if op == "dilate" else (expected <= 0).all()


@pytest.mark.parametrize("text", ["2-7-5-1:sine", "2-6-5-4-1:sine"])
def test_edit_aware_neuron_probes_keep_the_editor_equivariant(text: str) -> None:
    spec = MLPSpec.parse(text)
    model = _editor(spec, "dilate").eval()
    assert equivariance_error(model, spec, as_space=True) <= TOL


def test_edit_probe_options_are_checked() -> None:
    with pytest.raises(DwsError, match=r"model\.probe_edit: 'blur' is not one of dilate, erode"):
        DWSNetConfig(probes=4, probe_grid=True, probe_edit="blur")
    with pytest.raises(DwsError, match=r"model\.probe_edit .* needs model\.probe_grid"):
        DWSNetConfig(probes=4, probe_edit="dilate")
    with pytest.raises(DwsError, match=r"model\.probe_edit_size must be an odd positive"):
        DWSNetConfig(probes=4, probe_grid=True, probe_edit="erode", probe_edit_size=4)


@pytest.mark.parametrize("text", ["2-7-5-1:sine", "3-4-9-6-2"])
def test_a_change_in_the_nets_own_scale_is_the_zoo_scaled_change_rescaled(text: str) -> None:
    spec = MLPSpec.parse(text)
    config = DWSNetConfig(hidden_channels=4, num_layers=2, output_init_scale=1.0)
    zoo_scaled = EquivariantDWSNet(spec, config).double().eval()
    net_scaled = EquivariantDWSNet(spec, DWSNetConfig(**{**config.to_dict(), "delta_scale": "net"}))
    net_scaled = net_scaled.double().eval()
    with torch.no_grad():
        zoo_scaled.normalizer.std.uniform_(0.5, 2.0)
    net_scaled.load_state_dict(zoo_scaled.state_dict())
    space = WeightSpace.random(spec, 3, dtype=torch.float64)
    space = WeightSpace([w * (k + 1) for k, w in enumerate(space.weights)], space.biases, spec)
    with torch.no_grad():
        a, b = zoo_scaled(space), net_scaled(space)
    std = zoo_scaled.normalizer.std
    for layer, (w, bias) in enumerate(zip(space.weights, space.biases)):
        rms = torch.cat([w.flatten(1), bias.flatten(1)], dim=1).square().mean(1).sqrt()
        for k, (before, old, new) in enumerate(
            [(w, a.weights[layer], b.weights[layer]), (bias, a.biases[layer], b.biases[layer])]
        ):
            unit = rms / std[layer + k * spec.depth]
            unit = unit.reshape([-1] + [1] * (before.dim() - 1))
            assert torch.allclose(new - before, (old - before) * unit, atol=1e-10)
    assert equivariance_error(net_scaled, spec, as_space=True) <= TOL


def test_delta_scale_is_checked() -> None:
    with pytest.raises(DwsError, match=r"model\.delta_scale: 'layer' is not one of zoo, net"):
        DWSNetConfig(delta_scale="layer")


def test_a_net_scaled_editor_is_never_run_by_row_blocks() -> None:
    """The blocked forward scales each block's change by the zoo's spread; an editor whose unit
    is the whole layer's RMS in the net must run plainly, whatever the budget."""
    from dwscli.nn.streaming import blockable, forward_within_memory

    spec = MLPSpec.parse("3-9-8-2")
    config = DWSNetConfig(hidden_channels=4, num_layers=2, output_init_scale=1.0)
    net_scaled = EquivariantDWSNet(spec, DWSNetConfig(**{**config.to_dict(), "delta_scale": "net"}))
    assert blockable(EquivariantDWSNet(spec, config)) and not blockable(net_scaled)
    space = WeightSpace.random(spec, 1)
    with torch.no_grad():
        plain = net_scaled.eval()(space)
        tight = forward_within_memory(net_scaled, space, budget_bytes=1)
    assert all(torch.equal(a, b) for a, b in zip(plain.tensors(), tight.tensors()))


def test_delta_scale_net_needs_a_residual_model() -> None:
    with pytest.raises(DwsError, match=r"model\.delta_scale: net .* not residual"):
        DWSNetConfig(delta_scale="net", residual=False)


def test_a_cards_bad_model_options_name_the_card() -> None:
    from dwscli.schema import build_section

    with pytest.raises(DwsError, match=r"^cards/x\.yaml: model\.probe_grid .* has none"):
        build_section(DWSNetConfig, {"probe_grid": True}, prefix="model.", source="cards/x.yaml")
