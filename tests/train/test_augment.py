"""Weight-space augmentations (``train.augment``): the first-layer input transforms draw the
transformed image, noise/dropout have the stated size, draws are seeded and rank-sliced like the
permutation augmentation, the trainer uses them, and config mistakes are one-line errors."""

from __future__ import annotations

import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.zoo_make import InrZooConfig, make_inr_zoo
from dwscli.errors import DwsError
from dwscli.train import TrainConfig, train
from dwscli.train.augment import (
    AugmentSettings,
    affine,
    augment_batch,
    check_zoo,
    input_range,
    transform_inputs,
)
from dwscli.weights.checkpoint import load_checkpoint
from dwscli.weights.functional import mlp_forward
from dwscli.weights.inr import InrConventions, render
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

F64 = torch.float64


@pytest.fixture(scope="module")
def digit() -> tuple[WeightSpace, InrConventions]:
    """A real SIREN of an MNIST digit (the packaged example), in float64."""
    checkpoint = load_checkpoint(Path(str(files("dwscli.examples") / "mnist-inr.safetensors")))
    conventions = InrConventions.from_metadata(checkpoint.metadata)
    return checkpoint.space.to(F64), conventions


def _transform(space: WeightSpace, degrees: float, scale: float, shift: list[float]) -> Any:
    angles = torch.tensor([math.radians(degrees)], dtype=F64)
    matrix, offset = affine(
        angles, torch.tensor([scale], dtype=F64), torch.tensor([shift], dtype=F64), 0.0
    )
    return transform_inputs(space, matrix, offset), matrix[0], offset[0]


def test_rotated_scaled_translated_inr_draws_the_resampled_image(digit: Any) -> None:
    """f'(x) = f(A x + t): exactly as a function, and as an image the bilinear resampling of a
    finely rendered original at A x + t (interior pixels; the INR is smooth at that scale)."""
    space, conventions = digit
    fine = InrConventions(height=28 * 8 - 7, width=28 * 8 - 7)  # pixel centres on a 1/8 grid
    fine_image = render(space, fine)
    coords = conventions.coordinates(F64)
    g = torch.Generator().manual_seed(3)
    interior = (slice(4, 24), slice(4, 24))
    for _ in range(3):
        degrees = float(torch.empty(1).uniform_(-40, 40, generator=g))
        scale = float(torch.empty(1).uniform_(0.85, 1.15, generator=g))
        shift = torch.empty(2).uniform_(-0.15, 0.15, generator=g).tolist()
        moved, matrix, offset = _transform(space, degrees, scale, shift)
        points = coords @ matrix.T + offset
        # as functions: the moved INR at x is the original at A x + t
        exact = mlp_forward(space, points)[0, :, 0]
        assert (mlp_forward(moved, coords)[0, :, 0] - exact).abs().max() < 1e-9
        # as images
        image = render(moved, conventions)[0]
        grid = points.reshape(1, 28, 28, 2)
        expected = F.grid_sample(fine_image[None], grid, align_corners=True)[0, 0]
        error = (image - expected)[interior].abs()
        assert error.mean() < 0.01 and error.max() < 0.15, (degrees, float(error.mean()))
        # and the picture really moved (the comparison could fail)
        assert (image - render(space, conventions)[0])[interior].abs().mean() > 5 * error.mean()


def test_whole_pixel_translation_is_a_roll(digit: Any) -> None:
    space, conventions = digit
    step = (conventions.coord_max - conventions.coord_min) / (conventions.width - 1)
    g = torch.Generator().manual_seed(5)
    original = render(space, conventions)[0]
    for _ in range(3):
        dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
        if dx == dy == 0:
            dx = 2
        moved, _, _ = _transform(space, 0.0, 1.0, [dx * step, dy * step])
        image = render(moved, conventions)[0]
        # new pixel (r, c) shows old pixel (r + dy, c + dx)
        rolled = torch.roll(original, shifts=(-dy, -dx), dims=(0, 1))
        inner = (slice(5, 23), slice(5, 23))
        assert torch.allclose(image[inner], rolled[inner], atol=1e-9), (dx, dy)


def test_the_centre_of_the_input_range_stays_fixed() -> None:
    """Rotation and scale act about the range's centre, here 2.5 of [0, 5]."""
    angles = torch.tensor([0.7], dtype=F64)
    matrix, offset = affine(
        angles, torch.tensor([1.3], dtype=F64), torch.zeros(1, 2, dtype=F64), 2.5
    )
    centre = torch.tensor([2.5, 2.5], dtype=F64)
    assert torch.allclose(matrix[0] @ centre + offset[0], centre)
    assert input_range({"coord_range": [-3.14, 3.14], "net_input_range": [-1, 1]}) == (-1.0, 1.0)
    assert input_range({"coord_range": [0, 2]}) == (0.0, 2.0)


def test_noise_and_dropout_have_the_stated_size() -> None:
    spec = MLPSpec.parse("2-32-32-1:sine")
    space = WeightSpace.random(spec, 64, generator=torch.Generator().manual_seed(0), dtype=F64)
    settings = AugmentSettings(noise=0.1)
    noisy = augment_batch(space, settings, global_size=64, seed=0, epoch=1, step=0)
    for before, after in zip(space.weights, noisy.weights):
        rms = before.pow(2).flatten(1).mean(1).sqrt()
        relative = (after - before).flatten(1) / rms[:, None]
        assert abs(float(relative.std()) - 0.1) < 0.01
    dropped = augment_batch(
        space, AugmentSettings(dropout=0.3), global_size=64, seed=0, epoch=1, step=0
    )
    zeros = torch.cat([(t == 0).flatten() for t in dropped.tensors()]).double().mean()
    assert abs(float(zeros) - 0.3) < 0.02
    kept = torch.cat(
        [(d - s)[d != 0].flatten() for d, s in zip(dropped.tensors(), space.tensors())]
    )
    assert kept.abs().max() == 0  # survivors unchanged (no rescaling)
    off = AugmentSettings()
    assert not off.active
    assert augment_batch(space, off, global_size=64, seed=0, epoch=1, step=0) is space


def test_draws_are_seeded_and_ranks_take_their_rows() -> None:
    """Each rank's slice gets exactly its rows of the single-process augmentation; the same
    (seed, epoch, step) draws the same; another step draws differently."""
    spec = MLPSpec.parse("2-8-8-1:sine")
    space = WeightSpace.random(spec, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    settings = AugmentSettings(rotate=30, translate=0.1, scale=0.2, noise=0.05, dropout=0.1)
    common = {"global_size": 6, "seed": 4, "epoch": 2, "step": 3}
    single = augment_batch(space, settings, **common)
    again = augment_batch(space, settings, **common)
    assert torch.equal(single.flatten(), again.flatten())
    other = augment_batch(space, settings, **{**common, "step": 4})
    assert not torch.allclose(single.flatten(), other.flatten())
    for rank in range(2):
        part = augment_batch(space[rank::2], settings, rank=rank, world_size=2, **common)
        assert torch.allclose(part.flatten(), single[rank::2].flatten(), atol=1e-12)


def test_input_transforms_need_inr_inputs() -> None:
    with pytest.raises(DwsError, match="this is a classifier zoo"):
        check_zoo(AugmentSettings(translate=0.1), "classifier", 196, "zoo")
    with pytest.raises(DwsError, match="rotate needs 2-D inputs; this zoo's nets take 1"):
        check_zoo(AugmentSettings(rotate=10), "sine", 1, "zoo")
    check_zoo(AugmentSettings(translate=0.1, scale=0.1), "sine", 1, "zoo")  # 1-D: fine
    check_zoo(AugmentSettings(noise=0.1, dropout=0.1), "classifier", 196, "zoo")


# ------------------------------------------------------------------------------------------------
# through the config and the trainer


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zoos") / "inr"
    config = InrZooConfig(
        spec="2-8-8-1:sine;w0=30", steps=20, psnr_target=25.0, chunk=32, compiled=False
    )
    make_inr_zoo(out, "mnist", count=32, config=config, shard_size=16)
    return out


def _config(zoo: Path, out: Path, augment: dict[str, Any] | None) -> dict[str, Any]:
    train_section: dict[str, Any] = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "device": "cpu"}
    if augment is not None:
        train_section["augment"] = augment
    return {
        "name": "aug",
        "task": "inr-classify",
        "zoo": str(zoo),
        "output": str(out),
        "model": {"hidden_channels": 4, "num_layers": 1, "head_hidden": [8]},
        "train": train_section,
    }


def test_trainer_applies_augmentations_deterministically(inr_zoo: Path, tmp_path: Path) -> None:
    augment = {"rotate": 20, "translate": 0.05, "scale": 0.1, "noise": 0.05, "dropout": 0.05}
    runs = []
    for name, section in (("a", augment), ("b", augment), ("plain", None)):
        config = TrainConfig.from_dict(_config(inr_zoo, tmp_path / name, section))
        runs.append(load_file(str(train(config).weights)))
    first, second, plain = runs
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], plain[k]) for k in first)
    card = yaml.safe_load((tmp_path / "a" / "aug.yaml").read_text())
    assert card["training"]["config"]["train"]["augment"]["rotate"] == 20


def test_augmentations_refused_for_a_zoo_they_do_not_fit(tmp_path: Path) -> None:
    """Rotations of a 1-D sine zoo: refused when training starts, naming the key."""
    from dwscli.data.zoo_make import SineZooConfig, make_sine_zoo

    zoo = tmp_path / "sines"
    config = SineZooConfig(spec="1-4-1:sine", points=16, steps=2, chunk=8, compiled=False)
    make_sine_zoo(zoo, count=8, config=config, shard_size=8)
    data = _config(zoo, tmp_path / "out", {"rotate": 10})
    data["task"] = {"name": "embed", "baselines": []}
    with pytest.raises(DwsError, match=r"train\.augment\.rotate needs 2-D inputs"):
        train(TrainConfig.from_dict(data))


@pytest.mark.parametrize(
    ("augment", "fragment"),
    [
        ({"rotation": 10}, "train.augment.rotation: unknown key"),
        ({"rotate": "a lot"}, "train.augment.rotate: expected a number, got 'a lot' (str)"),
        ({"dropout": 1.5}, "train.augment.dropout: must be at least 0 and below 1, got 1.5"),
        ({"rotate": -5}, "train.augment.rotate: must be between 0 and 180"),
        (3, "train.augment: must be a mapping"),
    ],
    ids=["unknown-key", "wrong-type", "dropout-range", "negative", "not-a-mapping"],
)
def test_config_mistakes_are_one_line_errors(
    inr_zoo: Path, tmp_path: Path, augment: Any, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_config(inr_zoo, tmp_path / "out", augment)))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and str(path) in lines[0], result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_augment_section_round_trips(inr_zoo: Path, tmp_path: Path) -> None:
    config = TrainConfig.from_dict(_config(inr_zoo, tmp_path, {"rotate": 15, "noise": 1e-2}))
    assert config.train.augment == AugmentSettings(rotate=15.0, noise=0.01)
    data = config.to_dict()
    assert data["train"]["augment"]["rotate"] == 15.0
    assert json.loads(json.dumps(data))  # plain data (the card and resume compare it)
    assert TrainConfig.from_dict(_config(inr_zoo, tmp_path, None)).train.augment is None
