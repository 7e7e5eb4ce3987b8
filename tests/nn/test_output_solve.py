"""A closed-form output layer for INR editors (``model.output_solve``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwscli.data.zoo import Zoo
from dwscli.errors import DwsError
from dwscli.image_edits import edit_images
from dwscli.nn.equivariance import equivariance_error
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet
from dwscli.nn.streaming import blockable
from dwscli.train.tasks.inr_edit import InrEditOptions, InrEditTask, prepare_output_solve
from dwscli.weights.functional import layer_outputs, mlp_forward
from dwscli.weights.inr import InrConventions
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SPEC = MLPSpec.parse("2-12-10-1:sine;w0=3")
GRID = InrConventions(height=7, width=6, coord_min=-1.0, coord_max=1.0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(2468)


def editor(op: str = "dilate", scale: float = 1.0, **options) -> EquivariantDWSNet:
    config = DWSNetConfig(
        hidden_channels=4,
        num_layers=2,
        output_init_scale=scale,
        output_solve={"op": op},
        **options,
    )
    model = EquivariantDWSNet(SPEC, config).double()
    assert model.output_solve is not None
    model.output_solve.set_conventions(GRID)
    return model


def quiet_nets(count: int) -> WeightSpace:
    """Random SIRENs whose rendering spans most of [0, 1] but stays inside it, as fitted INRs'
    does, so that the input's own output layer is a candidate of the clamped comparison too."""
    space = WeightSpace.random(SPEC, count, dtype=torch.float64)
    peak = mlp_forward(space, GRID.coordinates(torch.float64)).abs().amax(dim=(1, 2))
    weights, biases = list(space.weights), list(space.biases)
    weights[-1] = weights[-1] * (0.9 / peak)[:, None, None]
    biases[-1] = biases[-1] * (0.9 / peak)[:, None]
    return WeightSpace(weights, biases, SPEC)


def images(space: WeightSpace) -> torch.Tensor:
    values = mlp_forward(space, GRID.coordinates(torch.float64))[..., 0]
    return GRID.to_image(values).reshape(-1, GRID.height, GRID.width)


def grid_error(space: WeightSpace, target: torch.Tensor) -> torch.Tensor:
    return (images(space).clamp(0, 1) - target).square().flatten(1).mean(1)


@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0])
def test_the_solved_editor_is_equivariant(scale: float) -> None:
    assert equivariance_error(editor(scale=scale), SPEC, as_space=True) <= 1e-9


def test_the_output_layer_is_the_least_squares_fit_of_the_edited_rendering() -> None:
    model = editor(scale=0.3)
    space = quiet_nets(6)
    with torch.no_grad():
        out = model(space)
        target = edit_images(images(space).clamp(0, 1), "dilate")
    coordinates = GRID.coordinates(torch.float64)
    hidden = layer_outputs(out, coordinates)[-2]
    for net in range(len(hidden)):  # an independent least-squares solve, net by net
        design = torch.cat([hidden[net], torch.ones(len(hidden[net]), 1, dtype=torch.float64)], 1)
        wanted = GRID.to_target(target[net].reshape(-1))
        # the ridge as extra rows: sqrt(penalty) times the identity, asking for zeros
        penalty = 1e-6 * design.square().sum(0).mean()
        design = torch.cat([design, penalty.sqrt() * torch.eye(design.shape[1])])
        wanted = torch.cat([wanted, torch.zeros(design.shape[1])])
        solution = torch.linalg.lstsq(design, wanted[:, None]).solution[:, 0]
        assert torch.allclose(out.weights[-1][net, 0], solution[:-1], atol=1e-8)
        assert torch.allclose(out.biases[-1][net], solution[-1:], atol=1e-8)
    # each net's hidden layers are the trunk's or (the guard) the input's; here some are the
    # trunk's
    trunk_hidden = sum(
        not torch.equal(out.weights[0][net], space.weights[0][net]) for net in range(len(hidden))
    )
    assert trunk_hidden > 0


@pytest.mark.parametrize("op", ["dilate", "erode"])
def test_the_guard_keeps_per_net_the_better_solve_and_never_loses_to_no_edit(op: str) -> None:
    model = editor(op, scale=5.0)  # a wild, untrained trunk
    solve = model.output_solve
    assert solve is not None
    space = quiet_nets(16)
    with torch.no_grad():
        before = images(space).clamp(0, 1)
        target = edit_images(before, op)
        out = model(space)
        wanted = GRID.to_target(target.flatten(1))
        model.output_solve = None  # the trunk's hidden layers, unsolved
        changed = model(space)
        _, from_trunk = solve.solved(changed, GRID, wanted)
        _, from_input = solve.solved(space, GRID, wanted)
    no_edit = (before - target).square().flatten(1).mean(1)
    guarded = grid_error(out, target)
    best = torch.stack([from_trunk, from_input, no_edit]).amin(0)
    assert torch.allclose(guarded, best, rtol=1e-6, atol=1e-12)
    assert bool((guarded <= no_edit + 1e-9).all())
    assert bool((guarded < no_edit).any())


def test_a_net_drawing_outside_the_pixel_range_is_never_edited_farther_from_the_edit() -> None:
    """The fits minimise the error before clamping and a user sees clamped pixels, so for a
    net that draws outside [0, 1] the unchanged input can be the closest, and the guard then
    returns it exactly: here nets 1x to 100x too loud, and nets that draw white everywhere
    (their output far above 1: the edit changes nothing, and any fit with a ridge is off)."""
    model = editor("dilate", scale=5.0)
    space = quiet_nets(32)
    loud = torch.logspace(0, 2, 32, dtype=torch.float64)
    white = torch.arange(32) % 4 == 0
    weights, biases = list(space.weights), list(space.biases)
    weights[-1], biases[-1] = weights[-1] * loud[:, None, None], biases[-1] * loud[:, None]
    biases[-1] = torch.where(white[:, None], biases[-1].abs() + 300.0, biases[-1])
    space = WeightSpace(weights, biases, SPEC)
    with torch.no_grad():
        before = images(space).clamp(0, 1)
        target = edit_images(before, "dilate")
        out = model(space)
    assert bool((before[white] == 1).all())
    no_edit = (before - target).square().flatten(1).mean(1)
    assert bool((grid_error(out, target) <= no_edit + 1e-12).all())
    for net in torch.nonzero(white)[:, 0].tolist():
        assert torch.equal(out.flatten()[net], space.flatten()[net])
    assert bool((grid_error(out, target)[~white] < no_edit[~white]).any())


def test_a_non_finite_edit_falls_back_to_a_finite_candidate() -> None:
    model = editor("erode")
    solve = model.output_solve
    assert solve is not None
    space = quiet_nets(4)
    broken = space.map(lambda t: t.clone())
    broken.weights[1][1] = float("nan")  # net 1's edited hidden layer is not a number
    with torch.no_grad():
        out = solve(space, broken)
        target = edit_images(images(space).clamp(0, 1), "erode")
    assert bool(torch.isfinite(out.flatten()).all())
    no_edit = (images(space).clamp(0, 1) - target).square().flatten(1).mean(1)
    assert bool((grid_error(out, target) <= no_edit + 1e-12).all())
    assert torch.equal(out.weights[1][1], space.weights[1][1])  # the input's hidden layer


def test_the_solve_draws_the_edit_better_than_the_input() -> None:
    model = editor(scale=0.0)  # no change to the hidden layers
    space = quiet_nets(8)
    with torch.no_grad():
        before = images(space).clamp(0, 1)
        target = edit_images(before, "dilate")
        out = model(space)
    assert bool((grid_error(out, target) < (before - target).square().flatten(1).mean(1)).all())
    for a, b in zip(out.weights[:-1], space.weights[:-1]):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"output_solve": {"op": "blur"}}, "unknown edit op 'blur'"),
        ({"output_solve": {"op": "dilate", "size": 4}}, "size must be an odd"),
        ({"output_solve": "dilate"}, "must name an edit"),
        ({"output_solve": {"op": "dilate"}, "output_solve_ridge": 0}, "positive number"),
    ],
)
def test_bad_output_solve_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(DwsError, match=message):
        DWSNetConfig(**options)


def test_the_ridge_is_checked_without_a_solve_and_an_invariant_model_refuses_one() -> None:
    with pytest.raises(DwsError, match="positive number"):
        DWSNetConfig(output_solve_ridge=-5)
    from dwscli.nn.models import InvariantDWSNet

    config = DWSNetConfig(hidden_channels=3, num_layers=1, output_solve={"op": "dilate"})
    with pytest.raises(DwsError, match="needs an equivariant model"):
        InvariantDWSNet(SPEC, config)


def test_a_damaged_grid_is_a_one_line_error() -> None:
    model = editor()
    solve = model.output_solve
    assert solve is not None
    for damaged in ([float("nan"), 6, -1, 1, 0.5, 0.5], [7.5, 6, -1, 1, 0.5, 0.5]):
        solve.grid.copy_(torch.tensor(damaged, dtype=torch.float64))
        with pytest.raises(DwsError, match="no valid pixel grid"):
            solve.conventions()
    assert solve.bytes_per_net(SPEC) == 0


def test_the_memory_estimate_counts_the_solve() -> None:
    from dwscli.nn.streaming import memory_needed_bytes

    with_solve = editor()
    config = {**with_solve.config.to_dict(), "output_solve": None}
    without = EquivariantDWSNet(SPEC, DWSNetConfig(**config)).double()
    solve = with_solve.output_solve
    assert solve is not None and solve.bytes_per_net(SPEC) > 0
    assert memory_needed_bytes(with_solve, SPEC) >= memory_needed_bytes(without, SPEC) + (
        solve.bytes_per_net(SPEC)
    )


def test_output_solve_refuses_nets_that_are_not_image_inrs_and_a_frozen_output_layer() -> None:
    config = DWSNetConfig(hidden_channels=3, num_layers=1, output_solve={"op": "dilate"})
    with pytest.raises(DwsError, match="edits image INRs"):
        EquivariantDWSNet(MLPSpec.parse("3-5-2"), config)
    with pytest.raises(DwsError, match="edits image INRs"):
        EquivariantDWSNet(MLPSpec.parse("2-1"), config)
    frozen = DWSNetConfig(**{**config.to_dict(), "edit_layers": [1]})
    with pytest.raises(DwsError, match="edit_layers leaves out"):
        EquivariantDWSNet(SPEC, frozen)


def test_an_editor_without_a_grid_says_so() -> None:
    config = DWSNetConfig(hidden_channels=3, num_layers=1, output_solve={"op": "dilate"})
    model = EquivariantDWSNet(SPEC, config)
    with pytest.raises(DwsError, match="no pixel grid"):
        model(WeightSpace.random(SPEC, 2))


def test_the_solved_editor_runs_whole_nets() -> None:
    assert not blockable(editor())


def test_the_trainer_gives_the_solve_the_zoos_grid_and_checks_the_edit(
    small_inr_zoo: Path,
) -> None:
    zoo = Zoo.open(small_inr_zoo)
    config = DWSNetConfig(hidden_channels=3, num_layers=1, output_solve={"op": "dilate"})
    model = EquivariantDWSNet(zoo.spec, config)
    task = InrEditTask(InrEditOptions(op="dilate"), zoo)
    prepare_output_solve(model, task, "cfg.yaml")
    assert model.output_solve is not None
    assert model.output_solve.conventions() == task.conventions
    with pytest.raises(DwsError, match=r"cfg.yaml: model.output_solve is .*'erode'"):
        prepare_output_solve(model, InrEditTask(InrEditOptions(op="erode"), zoo), "cfg.yaml")
    wider = InrEditTask(InrEditOptions(op="dilate", size=5), zoo)
    with pytest.raises(DwsError, match="the task's edit is"):
        prepare_output_solve(model, wider, "cfg.yaml")
