"""MLPSpec and WeightSpace: the data model."""

from __future__ import annotations

import pytest
import torch

from dwscli.errors import DwsError
from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def test_spec_string_round_trip() -> None:
    spec = MLPSpec.parse("2-32-32-1:sine;w0=30")
    assert spec.widths == (2, 32, 32, 1)
    assert spec.activation == "sine"
    assert spec.float_option("w0", 0.0) == 30.0
    assert str(spec) == "2-32-32-1:sine;w0=30"
    assert MLPSpec.parse(str(spec)) == spec
    assert str(MLPSpec.parse("784-64-10")) == "784-64-10:relu"
    assert spec.num_parameters == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    assert spec.hidden_widths == (32, 32)


@pytest.mark.parametrize("bad", ["", "32", "2-x-1", "2-3-1:swish", "2-0-1"])
def test_bad_spec_strings(bad: str) -> None:
    with pytest.raises(DwsError):
        MLPSpec.parse(bad)


def test_stack_unbind_flatten_round_trip() -> None:
    spec = MLPSpec.parse("3-5-4-2")
    singles = [WeightSpace.random(spec, 1) for _ in range(4)]
    batch = WeightSpace.stack(singles)
    assert batch.batch_size == 4
    for single, back in zip(singles, batch.unbind()):
        assert torch.equal(single.flatten(), back.flatten())
    assert torch.equal(WeightSpace.unflatten(batch.flatten(), spec).flatten(), batch.flatten())
    assert batch.flatten().shape == (4, spec.num_parameters)
    assert "3-5-4-2:relu | batch=4" in repr(batch)


def test_stack_refuses_different_specs() -> None:
    with pytest.raises(DwsError, match="cannot stack"):
        WeightSpace.stack(
            [
                WeightSpace.random(MLPSpec.parse("2-3-1"), 1),
                WeightSpace.random(MLPSpec.parse("2-4-1"), 1),
            ]
        )


def test_shape_mismatch_is_refused() -> None:
    spec = MLPSpec.parse("2-3-1")
    with pytest.raises(DwsError, match="do not match"):
        WeightSpace(
            [torch.zeros(1, 3, 3), torch.zeros(1, 1, 3)],
            [torch.zeros(1, 3), torch.zeros(1, 1)],
            spec,
        )


def test_functional_forward_matches_torch_modules() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    spec = MLPSpec.parse("4-6-3:tanh")
    space = WeightSpace(
        [model[0].weight.detach()[None], model[2].weight.detach()[None]],
        [model[0].bias.detach()[None], model[2].bias.detach()[None]],
        spec,
    )
    x = torch.randn(10, 4)
    expected = model(x)
    assert torch.allclose(mlp_forward(space, x)[0], expected, atol=1e-6)
    assert torch.allclose(mlp_forward(space, x[None])[0], expected, atol=1e-6)


def test_sine_forward_uses_w0() -> None:
    spec = MLPSpec.parse("1-1-1:sine;w0=2")
    space = WeightSpace(
        [torch.ones(1, 1, 1), torch.ones(1, 1, 1)], [torch.zeros(1, 1), torch.zeros(1, 1)], spec
    )
    x = torch.tensor([[0.3]])
    assert torch.allclose(mlp_forward(space, x)[0, 0, 0], torch.sin(torch.tensor(0.6)))
