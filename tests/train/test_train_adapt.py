"""``task: adapt`` (zero-shot domain adaptation) through the trainer and ``dws adapt``, and the
committed training configs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.classifier_train import ClassifierZooConfig, HparamRanges, ImageData, preprocess
from dwscli.data.corruptions import corrupt
from dwscli.data.datasets import load_dataset
from dwscli.data.zoo import Zoo
from dwscli.data.zoo_make import make_classifier_zoo
from dwscli.errors import DwsError
from dwscli.train import TrainConfig, TrainResult, train
from dwscli.train.tasks import task_class
from dwscli.train.tasks.adapt import TEST_CORRUPTION_SEED, score_nets
from dwscli.weights.checkpoint import load_checkpoint, save_space
from dwscli.weights.space import WeightSpace

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def da_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 tiny Fashion-MNIST classifiers (4x4 pooled inputs), trained long enough to lose about
    ten points on low-contrast test images (``test_acc_contrast`` in the manifest)."""
    out = tmp_path_factory.mktemp("zoos") / "clf-da"
    config = ClassifierZooConfig(
        spec="16-8-8-10:relu",
        pool=7,
        chunk=48,
        eval_corruption="contrast",
        ranges=HparamRanges(
            lr=(1e-3, 1e-2),
            weight_decay=(1e-6, 1e-3),
            init_scale=(0.5, 2.0),
            steps=(200, 400),
            subset=(1000, 10000),
            label_noise=(0.0, 0.1),
            dropout=(0.0, 0.2),
        ),
    )
    make_classifier_zoo(out, "fashion-mnist", count=48, config=config, shard_size=16)
    return out


def adapt_config(zoo: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "tiny-adapt",
        "task": {"name": "adapt", "images_per_step": 256, "val_images": 2000},
        "zoo": str(zoo),
        "output": str(out),
        "model": {"hidden_channels": 8, "num_layers": 2, "fixed_mixing": "shared"},
        "train": {
            "epochs": 15,
            "batch_size": 4,
            "lr": 1e-2,
            "seed": 0,
            "device": "cpu",
            "permutation_augmentation": False,
        },
    }


@pytest.fixture(scope="module")
def adapt_run(da_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("adapt")
    return train(TrainConfig.from_dict(adapt_config(da_zoo, root / "out")))


def corrupted_test_images(zoo: Zoo) -> ImageData:
    """The target-domain test images, preprocessed here from the zoo's conventions."""
    images = load_dataset("fashion-mnist", "test")
    conventions = zoo.conventions
    corrupted = corrupt(images.float_images(), "contrast", TEST_CORRUPTION_SEED)
    inputs = preprocess(corrupted, conventions["pool"], conventions["mean"], conventions["std"])
    return ImageData(inputs, images.labels)


def test_adapt_training_raises_target_domain_accuracy(adapt_run: TrainResult, da_zoo: Path) -> None:
    test = adapt_run.metrics["test"]
    assert set(test) == {
        "adapted_acc",
        "unadapted_acc",
        "gain_points",
        "improved_fraction",
        "clean_adapted_acc",
        "clean_unadapted_acc",
        "clean_drop_points",
        "loss",
    }
    # the unadapted nets on all 10k corrupted test images: exactly the zoo's own measurement
    zoo = Zoo.open(da_zoo)
    recorded = [r["metrics"]["test_acc_contrast"] for r in zoo.records("test")]
    assert math.isclose(test["unadapted_acc"], sum(recorded) / len(recorded), abs_tol=1e-6)
    # and on the clean test images, the zoo's own clean test accuracy
    clean = [r["metrics"]["test_acc"] for r in zoo.records("test")]
    assert math.isclose(test["clean_unadapted_acc"], sum(clean) / len(clean), abs_tol=1e-6)
    assert math.isclose(
        test["clean_drop_points"],
        100 * (test["clean_unadapted_acc"] - test["clean_adapted_acc"]),
        abs_tol=1e-6,
    )
    # contrast is an invertible linear map of the pixels, so the ideal adaptation is linear in
    # the first layer's weights; these settings recover 6-9 of the ~8-10 points lost
    assert test["adapted_acc"] > test["unadapted_acc"] + 0.03, test
    assert math.isclose(
        test["gain_points"], 100 * (test["adapted_acc"] - test["unadapted_acc"]), abs_tol=1e-6
    )
    assert test["improved_fraction"] >= 0.8
    # training lowered the target-domain loss of the training nets on held-out images
    assert adapt_run.train_sample["loss"] < adapt_run.initial["train_sample"]["loss"]
    assert adapt_run.baselines == {}

    card = yaml.safe_load(adapt_run.processor.read_text())
    assert card["task"] == "adapt" and card["target_domain"] == "contrast"
    assert card["model"]["kind"] == "equivariant" and card["model"]["config"]["residual"]
    assert card["input"]["preprocessing"]["pool"] == 7
    assert card["input"]["preprocessing"]["image_size"] == [4, 4]
    assert card["output"]["images"]["test"]["count"] == 10000
    assert card["output"]["images"]["val"]["count"] == 2000
    assert card["training"]["selected_on"] == "val adapted_acc"
    assert card["metrics"]["test"]["adapted_acc"] == pytest.approx(test["adapted_acc"], rel=1e-5)


def test_dws_adapt_gives_the_trainers_adapted_nets(
    adapt_run: TrainResult, da_zoo: Path, tmp_path: Path
) -> None:
    """Export the test nets, adapt them with the trained processor through the CLI, and score
    the outputs here: the same accuracies the trainer measured (so the same adapted weights)."""
    zoo = Zoo.open(da_zoo)
    batch = zoo.load("test")
    nets = tmp_path / "nets"
    nets.mkdir()
    for k, net in enumerate(batch.ids):
        save_space(nets / f"{k:02d}-{net}.safetensors", batch.space[k : k + 1])
    out = tmp_path / "adapted"
    args = ["adapt", str(nets), "-p", str(adapt_run.processor), "--out-dir", str(out)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == len(batch.ids)
    rows.sort(key=lambda row: row["input"])  # the files' names keep the split's order
    adapted = [load_checkpoint(Path(row["output"])) for row in rows]
    assert all(c.metadata["dws.target_domain"] == "contrast" for c in adapted)
    space = WeightSpace.stack([c.space for c in adapted]).to(torch.float32)
    assert not torch.allclose(space.flatten(), batch.space.flatten())
    accuracy, _ = score_nets(space, corrupted_test_images(zoo))
    assert math.isclose(
        float(accuracy.double().mean()), adapt_run.metrics["test"]["adapted_acc"], abs_tol=1e-6
    )


def test_adapt_task_refuses_what_it_cannot_do(da_zoo: Path, tmp_path: Path) -> None:
    zoo = Zoo.open(da_zoo)
    adapt = task_class("adapt")
    with pytest.raises(DwsError, match="unknown corruption 'fog'"):
        adapt(adapt.Options(corruption="fog"), zoo)
    with pytest.raises(DwsError, match="images_per_step: must be at least 1"):
        adapt(adapt.Options(images_per_step=0), zoo)
    with pytest.raises(DwsError, match="clean_weight: must be a number >= 0"):
        adapt(adapt.Options(clean_weight=-1.0), zoo)
    assert adapt(adapt.Options(), zoo).corruption == "contrast"  # the zoo's eval_corruption


# ------------------------------------------------------------------------------------------------
# the committed configs


SHIPPED_CONFIGS = sorted(CONFIGS.glob("*.yaml"))
CLASSIFIER_TASKS = {"accuracy", "adapt"}


def test_every_shipped_processor_has_its_config() -> None:
    shipped = {p.stem for p in (CONFIGS.parent / "dwscli" / "processors").glob("*.yaml")}
    assert shipped <= {p.stem for p in SHIPPED_CONFIGS}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_committed_configs_validate(da_zoo: Path, path: Path) -> None:
    """Every committed processor config, with ``zoo`` pointed at the tiny fixture zoo (the real
    zoos are made by documented commands, not in tests): the schema accepts every key and value,
    it writes the processor it is named after into the package, and tasks on classifier zoos
    accept their options for a classifier zoo."""
    data = yaml.safe_load(path.read_text())
    assert data["name"] == path.stem and data["output"] == "dwscli/processors"
    assert str(data["zoo"]).startswith("zoos/")
    config = TrainConfig.from_dict({**data, "zoo": str(da_zoo)}, source=str(path))
    if config.task.name in CLASSIFIER_TASKS:
        task_class(config.task.name)(config.task.options, Zoo.open(da_zoo))
    if config.task.name == "adapt":
        from dwscli.data.corruptions import parse_corruption

        assert parse_corruption(config.task.options.corruption)  # a known target domain
        assert config.model.options.residual


def test_clean_weight_adds_the_clean_images_cross_entropy(da_zoo: Path) -> None:
    """The loss of a step is the target-domain cross-entropy plus ``clean_weight`` times the
    cross-entropy on the same images uncorrupted, per net."""
    zoo = Zoo.open(da_zoo)
    batch = zoo.load("train")
    adapt = task_class("adapt")
    plain = adapt(adapt.Options(images_per_step=64, val_images=2000), zoo)
    mixed = adapt(adapt.Options(images_per_step=64, val_images=2000, clean_weight=0.5), zoo)
    for task in (plain, mixed):
        task.start_step(seed=3, epoch=1, step=2)
    space = batch.space.to(torch.float32)
    target_loss, clean_loss = plain.loss(space, batch), mixed.loss(space, batch)
    assert target_loss.shape == (len(batch.ids),)

    images = load_dataset("fashion-mnist", "train")
    conventions = zoo.conventions
    rows = plain._rows
    assert rows is not None and torch.equal(rows, mixed._rows)
    clean = preprocess(
        images.float_images()[rows], conventions["pool"], conventions["mean"], conventions["std"]
    )
    logits = torch.stack(
        [
            torch.nn.functional.relu(torch.nn.functional.relu(clean @ w1.T + b1) @ w2.T + b2) @ w3.T
            + b3
            for w1, b1, w2, b2, w3, b3 in zip(
                space.weights[0],
                space.biases[0],
                space.weights[1],
                space.biases[1],
                space.weights[2],
                space.biases[2],
            )
        ]
    )
    labels = images.labels[rows]
    by_hand = torch.stack([torch.nn.functional.cross_entropy(lg, labels) for lg in logits])
    assert torch.allclose(clean_loss - target_loss, 0.5 * by_hand, atol=1e-5)
    assert not torch.allclose(target_loss, by_hand, atol=1e-3)  # the corruption mattered
