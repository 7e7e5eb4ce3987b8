"""``train.init_from``: a model starts from a trained processor's weights (fine-tuning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.zoo import Zoo
from dwscli.errors import DwsError
from dwscli.processors.loading import load_processor
from dwscli.train import distributed, train
from dwscli.train.config import TrainConfig
from dwscli.train.loop import Trainer


def _config(zoo: Path, out: Path, name: str, **train_options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "task": "inr-classify",
        "zoo": str(zoo),
        "output": str(out),
        "model": {"hidden_channels": 4, "num_layers": 1, "head_hidden": [8], "probes": 4},
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "lr": 3e-2,
            "seed": 0,
            "device": "cpu",
            **train_options,
        },
    }


@pytest.fixture(scope="module")
def trained(small_inr_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("init-from")
    return train(TrainConfig.from_dict(_config(small_inr_zoo, out, "first"))).processor


def _trainer(data: dict[str, Any]) -> Trainer:
    config = TrainConfig.from_dict(data, source="fine.yaml")
    return Trainer(config, distributed.env_from_torchrun(), torch.device("cpu"), None)


def test_the_model_starts_as_the_processor_normalisation_included(
    trained: Path, small_inr_zoo: Path, tmp_path: Path
) -> None:
    # another seed and sample size: a fresh model would differ in weights and normalisation
    data = _config(small_inr_zoo, tmp_path, "fine", seed=5, normalizer_nets=7)
    fresh = _trainer(data).model.eval()
    started = _trainer({**data, "train": {**data["train"], "init_from": str(trained)}})
    model = started.model.eval()
    processor = load_processor(str(trained))
    space = Zoo.open(small_inr_zoo).get(Zoo.open(small_inr_zoo).ids("test")[:6])
    with torch.no_grad():
        wanted = processor.model(space)
        assert torch.equal(model(space), wanted)
        assert not torch.allclose(fresh(space), wanted)
    # it then trains from there and writes a processor of its own
    result = started.run(resume=False)
    assert Path(result.processor).is_file() and result.processor != trained
    # its card says whose normalisation it carries
    card = yaml.safe_load(Path(result.processor).read_text())
    assert card["normalization"]["fitted_on"] == {"processor": str(trained)}
    assert card["training"]["config"]["train"]["init_from"] == str(trained)


def test_a_processor_of_another_shape_is_a_one_line_error(
    trained: Path, small_inr_zoo: Path, tmp_path: Path
) -> None:
    data = _config(small_inr_zoo, tmp_path, "fine", init_from=str(trained))
    wider = {**data, "model": {**data["model"], "hidden_channels": 6}}
    with pytest.raises(DwsError, match=r"fine.yaml: train.init_from: .* in processor first"):
        _trainer(wider)
    other_arch = {**data, "model": {"arch": "mlp", "hidden_features": 8}}
    with pytest.raises(DwsError, match="processor first is a dws model, this config builds mlp"):
        _trainer(other_arch)
    # from the CLI: one line naming the config, no traceback
    config = tmp_path / "fine.yaml"
    config.write_text(yaml.safe_dump({**data, "train": {**data["train"], "init_from": "nope"}}))
    done = CliRunner().invoke(app, ["train", str(config)])
    assert done.exit_code != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[0].startswith("error: "), done.stderr
    assert f"{config}: train.init_from: no processor named 'nope'" in done.stderr
    # an option that changes no tensor's shape but what the weights mean
    gelu = {**data, "model": {**data["model"], "activation": "gelu"}}
    with pytest.raises(DwsError, match=r"model\.activation is 'relu' in processor first"):
        _trainer(gelu)


def test_buffers_the_processor_lacks_keep_the_zoos_values(
    trained: Path, small_inr_zoo: Path, tmp_path: Path
) -> None:
    """A model with grid-snapped probes starts from a processor without them: the learned
    tensors come from the processor, the pixel grid from the zoo."""
    data = _config(small_inr_zoo, tmp_path, "fine", init_from=str(trained))
    data["model"] = {**data["model"], "probe_grid": True}
    model = _trainer(data).model
    processor = load_processor(str(trained))
    assert torch.equal(model.probes.inputs, processor.model.probes.inputs)
    assert model.probes.grid_points.tolist() == [28.0, 28.0]
    assert model.probes.grid_low.tolist() == [-1.0, -1.0]


def test_an_editor_goes_on_from_a_predicted_to_a_solved_output_layer(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    """How the shipped editors were made: a processor that predicts its output layer, then
    fine-tuned with ``model.output_solve``. The trunk comes from the processor, the solve's
    pixel grid from the zoo, and the output is the guard's choice over that trunk's edit."""
    editor = {"hidden_channels": 4, "num_layers": 1, "residual": True}
    first = {
        **_config(small_inr_zoo, tmp_path / "first", "editor"),
        "task": {"name": "inr-edit", "op": "dilate", "refit_nets": 0},
        "model": editor,
    }
    trained_editor = train(TrainConfig.from_dict(first)).processor
    solved = {**first, "output": str(tmp_path / "fine")}
    solved["model"] = {**editor, "output_solve": {"op": "dilate"}}
    solved["train"] = {**first["train"], "init_from": str(trained_editor)}
    model = _trainer(solved).model.eval()
    assert model.output_solve.grid.tolist() == [28, 28, -1.0, 1.0, 0.5, 0.5]
    processor = load_processor(str(trained_editor))
    space = Zoo.open(small_inr_zoo).get(Zoo.open(small_inr_zoo).ids("test")[:4])
    with torch.no_grad():
        wanted = model.output_solve(space, processor.model(space))
        assert torch.equal(model(space).flatten(), wanted.flatten())
