"""``probe_grid``: functional probes that read an INR only at its pixel centres."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_make import SineZooConfig, make_sine_zoo
from dwscli.errors import DwsError
from dwscli.nn.models import DWSNetConfig, InvariantDWSNet
from dwscli.train.probes import init_probes, set_probe_grid
from dwscli.weights.inr import InrConventions
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SPEC = MLPSpec.parse("2-8-8-1:sine;w0=30")


def _model(grid: bool) -> InvariantDWSNet:
    config = DWSNetConfig(hidden_channels=4, num_layers=1, probes=32, probe_grid=grid)
    return InvariantDWSNet(SPEC, config)


def test_probes_are_snapped_to_the_nearest_pixel_centre_and_still_learn(
    small_inr_zoo: Path,
) -> None:
    model = _model(True)
    assert init_probes(model, Zoo.open(small_inr_zoo), seed=0)
    probes = model.probes
    conventions = InrConventions()  # the zoo's: 28 x 28 on [-1, 1]
    assert probes.grid_points.tolist() == [conventions.width, conventions.height]
    centres = conventions.coordinates().double()
    where = probes.coordinates().detach().double()
    # every probe sits on a pixel centre, the one nearest its learned point
    nearest = torch.cdist(probes.inputs.detach().double(), centres).argmin(1)
    assert torch.allclose(where, centres[nearest], atol=1e-6)
    assert not torch.allclose(where, probes.inputs.detach().double())
    # the net is read there: the same features as probes placed on those centres by hand
    plain = _model(False)
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("probes.grid")}
    )
    with torch.no_grad():
        plain.probes.inputs.copy_(where.float())
    space = WeightSpace.random(SPEC, 3)
    with torch.no_grad():
        assert torch.allclose(model.probes(space), plain.probes(space))
    # a straight-through gradient reaches the learned points
    model.probes(space).sum().backward()
    assert probes.inputs.grad is not None and probes.inputs.grad.abs().sum() > 0


def test_a_model_without_a_grid_yet_reads_at_the_learned_points() -> None:
    model = _model(True)  # built, not yet given a zoo's grid (grid_points 0)
    assert torch.equal(model.probes.coordinates(), model.probes.inputs)


def test_a_sine_zoo_snaps_the_probes_to_its_fitted_points(tmp_path: Path) -> None:
    out = tmp_path / "sines"
    config = SineZooConfig(spec="1-8-8-1:sine;w0=30", points=16, steps=5, chunk=8, compiled=False)
    make_sine_zoo(out, count=8, config=config, shard_size=8)
    spec = MLPSpec.parse("1-8-8-1:sine;w0=30")
    model = InvariantDWSNet(
        spec, DWSNetConfig(hidden_channels=4, num_layers=1, probes=6, probe_grid=True)
    )
    assert init_probes(model, Zoo.open(out), seed=0)
    points = torch.linspace(-1.0, 1.0, 16).double()  # where the zoo's nets were fitted
    where = model.probes.coordinates().detach().double()[:, 0]
    nearest = (model.probes.inputs.detach().double() - points).abs().argmin(1)
    assert torch.allclose(where, points[nearest], atol=1e-6)
    assert not torch.allclose(where, model.probes.inputs.detach().double()[:, 0])


def test_a_zoo_without_a_grid_is_a_one_line_error(da_zoo: Path) -> None:
    zoo = Zoo.open(da_zoo)  # classifiers: their inputs are images, not a grid of coordinates
    model = InvariantDWSNet(
        zoo.spec, DWSNetConfig(hidden_channels=4, num_layers=1, probes=4, probe_grid=True)
    )
    model.probes.grid = True
    with pytest.raises(DwsError, match=r"model\.probe_grid needs an INR zoo .* or a sine zoo"):
        set_probe_grid(model.probes, zoo)


def test_probe_grid_without_probes_is_a_one_line_config_error(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    from dwscli.train.config import TrainConfig

    data = {
        "name": "grid",
        "task": "inr-classify",
        "zoo": str(small_inr_zoo),
        "output": str(tmp_path),
        "model": {"arch": "dws", "probe_grid": True},
    }
    with pytest.raises(DwsError, match=r"^grid\.yaml: model\.probe_grid .* the model has none"):
        TrainConfig.from_dict(data, source="grid.yaml")
    data["model"] = {"arch": "dws", "probe_grid": True, "probes": 8}
    assert TrainConfig.from_dict(data, source="grid.yaml").model.options.probe_grid
