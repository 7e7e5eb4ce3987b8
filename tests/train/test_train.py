"""The trainer (``dws train``): config errors, learning, the processor it writes, determinism,
resuming, and DDP under torchrun matching one process."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.classifier_train import ClassifierZooConfig, HparamRanges
from dwscli.data.zoo import Zoo
from dwscli.data.zoo_make import make_classifier_zoo
from dwscli.errors import DwsError
from dwscli.processors.loading import load_processor
from dwscli.processors.registry import default_processor, load_card
from dwscli.train import Reporter, TrainResult, train

TINY_MODEL = {"hidden_channels": 8, "num_layers": 2, "head_hidden": [16]}


@pytest.fixture(scope="module")
def clf_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 tiny Fashion-MNIST classifiers (4x4 pooled inputs) with spread test accuracies."""
    out = tmp_path_factory.mktemp("zoos") / "clf"
    config = ClassifierZooConfig(
        spec="16-8-8-10:relu",
        pool=7,
        chunk=48,
        ranges=HparamRanges(steps=(5, 100), subset=(100, 1000)),
    )
    make_classifier_zoo(out, "fashion-mnist", count=48, config=config, shard_size=16)
    return out


def write_config(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


def accuracy_config(zoo: Path, out: Path, **train: Any) -> dict[str, Any]:
    settings = {"epochs": 6, "batch_size": 8, "lr": "3e-3", "seed": 0, "device": "cpu"}
    return {
        "name": "tiny-accuracy",
        "task": {"name": "accuracy", "loss": "mse"},
        "zoo": str(zoo),
        "output": str(out),
        # dropout on: determinism and resume must also restore the dropout RNG
        "model": {**TINY_MODEL, "fixed_mixing": "shared", "dropout": 0.1},
        "train": {**settings, **train},
    }


@pytest.fixture(scope="module")
def accuracy_run(clf_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("acc")
    config = write_config(root / "acc.yaml", **accuracy_config(clf_zoo, root / "out"))
    return train(config)


def weights_of(result: TrainResult) -> dict[str, torch.Tensor]:
    return load_file(str(result.weights))


def assert_same_weights(a: TrainResult, b: TrainResult, atol: float = 0.0) -> None:
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=atol, rtol=0), key


# ------------------------------------------------------------------------------------------------
# configuration errors: one line, exit 1, through the CLI


def _one_line_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"train": {"lrr": 0.1}}, ["train.lrr: unknown key", "valid keys: epochs, batch_size"]),
        ({"train": {"epochs": "ten"}}, ["train.epochs: expected an integer, got 'ten' (str)"]),
        ({"train": {"schedule": "linear"}}, ["train.schedule: expected one of cosine, constant"]),
        ({"model": {"hidden_channels": 2.5}}, ["model.hidden_channels: expected an integer"]),
        ({"model": {"out_features": 3}}, ["model.out_features: set by the task"]),
        (
            {"task": "predict"},
            ["unknown task 'predict'", "accuracy, adapt, embed, inr-classify, inr-edit"],
        ),
        ({"task": {"name": "accuracy", "loss": "huber"}}, ["task.loss: expected one of mse, l1"]),
        ({"zoo": "/nonexistent/zoo"}, ["zoo: /nonexistent/zoo does not exist"]),
        ({"zoo": None}, ["zoo: missing required key"]),
        ({"epochs": 3}, ["epochs: unknown key", "valid keys: name, version"]),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "bad-choice",
        "model-type",
        "reserved",
        "task",
        "task-option",
        "missing-zoo",
        "no-zoo",
        "top-level",
    ],
)
def test_config_mistakes_are_one_line_errors(
    small_inr_zoo: Path, tmp_path: Path, change: dict[str, Any], fragments: list[str]
) -> None:
    config = {
        "name": "x",
        "task": "inr-classify",
        "zoo": str(small_inr_zoo),
        "output": str(tmp_path),
        "model": {},
        "train": {},
    }
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}  # type: ignore[dict-item]
        else:
            config[key] = value
    path = write_config(tmp_path / "bad.yaml", **config)
    result = CliRunner().invoke(app, ["train", str(path)])
    _one_line_error(result, str(path), *fragments)
    assert not list(tmp_path.glob("*.safetensors"))


def test_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "dws train" in result.stdout
    assert "torchrun" in result.stdout


def test_missing_config_file_and_bad_device(small_inr_zoo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    _one_line_error(runner.invoke(app, ["train", str(tmp_path / "nope.yaml")]), "nope.yaml")
    path = write_config(tmp_path / "c.yaml", name="x", task="inr-classify", zoo=str(small_inr_zoo))
    _one_line_error(runner.invoke(app, ["train", str(path), "--device", "gpu"]), "'gpu'")


# ------------------------------------------------------------------------------------------------
# learning, the card, the processor


def test_accuracy_training_improves_and_writes_a_card(accuracy_run: TrainResult) -> None:
    result = accuracy_run
    assert result.epochs_run == 6 and not result.stopped_early
    assert result.train_sample["loss"] < 0.75 * result.initial["train_sample"]["loss"]
    losses = [h["train_loss"] for h in result.history[1:]]
    assert losses[-1] < losses[0]

    card = yaml.safe_load(result.processor.read_text())
    assert card["task"] == "accuracy" and card["name"] == "tiny-accuracy"
    assert card["model"]["kind"] == "invariant" and card["model"]["arch"] == "dws"
    assert card["input"]["spec"] == "16-8-8-10:relu"
    assert card["input"]["preprocessing"]["pool"] == 7
    assert card["training"]["zoo"]["splits"] == {"train": 38, "val": 5, "test": 5}
    assert card["training"]["best_epoch"] == result.best_epoch
    best = result.history[result.best_epoch]
    assert best["val"] == result.metrics["val"]  # best-on-validation checkpoint
    assert all(best["val"]["kendall_tau"] >= h["val"]["kendall_tau"] for h in result.history[1:])
    for split in ("val", "test"):
        assert set(card["metrics"][split]) == {"kendall_tau", "r2", "mae", "loss"}
        for key, value in result.metrics[split].items():
            assert math.isclose(card["metrics"][split][key], value, rel_tol=1e-5), key
    assert load_card(result.processor).metrics["test"] == card["metrics"]["test"]


def test_the_card_records_the_training_nets_for_the_ood_check(accuracy_run: TrainResult) -> None:
    card = yaml.safe_load(accuracy_run.processor.read_text())
    section = card["ood"]
    assert section["fitted_on"]["split"] == "train" and section["fitted_on"]["nets"] == 38
    assert section["calibrated_on"] == {"split": "val", "nets": 5, "flagged": 0.0}
    assert section["checked_on"]["split"] == "test" and section["checked_on"]["nets"] == 5
    assert len(section["centre"]) == len(section["scale"]) == 3 * 2 * 5  # 3 layers, W and b
    processor = load_processor(str(accuracy_run.processor))
    assert processor.ood is not None
    zoo = Zoo.open(card["training"]["zoo"]["path"])
    val = zoo.get(zoo.ids("val"))
    assert all(r.in_distribution for r in processor.ood.assess(val))  # calibrated on them
    val.weights[0] = val.weights[0] * 10
    assert not any(r.in_distribution for r in processor.ood.assess(val))


def test_the_processor_reproduces_the_trained_model(accuracy_run: TrainResult) -> None:
    processor = load_processor(str(accuracy_run.processor))
    test = Zoo.open(yaml.safe_load(accuracy_run.processor.read_text())["training"]["zoo"]["path"])
    batch = test.load("test")
    with torch.no_grad():
        pred = processor.model(batch.space).reshape(-1).double()
    target = batch.targets["test_acc"].double()
    metrics = accuracy_run.metrics["test"]
    assert math.isclose(float(((pred - target) ** 2).mean()), metrics["loss"], rel_tol=1e-6)
    assert math.isclose(float((pred - target).abs().mean()), metrics["mae"], rel_tol=1e-6)


def test_statnn_is_measured_side_by_side(accuracy_run: TrainResult, clf_zoo: Path) -> None:
    """StatNN is fitted on the training nets and measured on exactly the test nets the DWS model
    is: refitting it here on the zoo's train split and scoring the test split gives its numbers."""
    from rich.console import Console

    from dwscli.cli.commands.train import _render
    from dwscli.nn.baselines.statnn import StatNN
    from dwscli.train.tasks import kendall_tau, r2_score

    statnn = accuracy_run.baselines["statnn"]["test"]
    assert set(statnn) == {"kendall_tau", "r2", "mae", "loss"}
    assert all(math.isfinite(v) for v in statnn.values())
    zoo = Zoo.open(clf_zoo)
    train_batch, test_batch = zoo.load("train"), zoo.load("test")
    model = StatNN.fit(train_batch.space, train_batch.targets["test_acc"].float())
    pred = model.predict(test_batch.space).double()
    target = test_batch.targets["test_acc"].double()
    assert math.isclose(statnn["kendall_tau"], kendall_tau(pred, target), abs_tol=1e-9)
    assert math.isclose(statnn["r2"], r2_score(pred, target), abs_tol=1e-9)
    assert math.isclose(statnn["mae"], float((pred - target).abs().mean()), abs_tol=1e-9)

    card = yaml.safe_load(accuracy_run.processor.read_text())
    assert set(card["metrics"]) == {"train", "val", "test", "baselines"}
    recorded = card["metrics"]["baselines"]["statnn"]["test"]
    for key, value in statnn.items():
        assert math.isclose(recorded[key], value, rel_tol=1e-5), key
    data = accuracy_run.to_dict()  # what --json prints
    assert data["baselines"]["statnn"]["test"] == statnn
    console = Console(width=200, record=True)
    console.print(_render(data))
    assert "test, statnn" in console.export_text()


def test_inr_classification_training_improves(small_inr_zoo: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "inr.yaml",
        name="tiny-inr",
        default_for={"task": "inr-classify", "dataset": "mnist"},
        task="inr-classify",
        zoo=str(small_inr_zoo),
        output=str(tmp_path / "out"),
        model=TINY_MODEL,
        train={"epochs": 12, "batch_size": 8, "lr": 1e-2, "device": "cpu", "patience": 50},
    )
    result = train(config)
    # 4 val nets cannot pick a model; the training loss shows the learning
    losses = [h["train_loss"] for h in result.history[1:]]
    assert losses[-1] < 0.8 * result.initial["train_sample"]["loss"]
    assert losses[-1] < 0.8 * losses[0]
    card = yaml.safe_load(result.processor.read_text())
    assert card["output"] == {"type": "logits", "classes": 10, "target": "labels.label"}
    assert card["input"]["conventions"]["grid"] == [28, 28]
    assert set(card["metrics"]["test"]) == {"accuracy", "loss"}
    # the config's default_for is copied into the card, where the commands look for defaults
    assert card["default_for"] == {"task": "inr-classify", "dataset": "mnist"}
    found = default_processor("inr-classify", dataset="mnist", directory=tmp_path / "out")
    assert found.name == "tiny-inr"


# ------------------------------------------------------------------------------------------------
# determinism and resuming


def test_training_is_deterministic(
    accuracy_run: TrainResult, clf_zoo: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "again.yaml", **accuracy_config(clf_zoo, tmp_path / "out"))
    again = train(config)
    assert again.metrics == accuracy_run.metrics
    assert_same_weights(again, accuracy_run)


class _Interrupt(Reporter):
    def epoch(self, record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_to_the_same_result(
    accuracy_run: TrainResult, clf_zoo: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "resume.yaml", **accuracy_config(clf_zoo, tmp_path / "out"))
    with pytest.raises(KeyboardInterrupt):
        train(config, reporter=_Interrupt())
    assert (tmp_path / "out" / "tiny-accuracy.last.pt").is_file()
    assert not (tmp_path / "out" / "tiny-accuracy.yaml").exists()
    resumed = train(config)
    assert resumed.resumed_from == 2
    assert resumed.metrics == accuracy_run.metrics
    assert_same_weights(resumed, accuracy_run)
    # a changed config is not resumed silently
    changed = accuracy_config(clf_zoo, tmp_path / "out", lr=1e-2)
    with pytest.raises(DwsError, match=r"differs in train\.lr"):
        train(write_config(tmp_path / "changed.yaml", **changed))


def test_a_state_saved_before_an_option_existed_resumes_only_at_the_value_its_absence_meant() -> (
    None
):
    """A training state written before ``train.recalibrate_norms`` existed was trained with a
    trailing average: it resumes under ``false`` and is refused under today's default."""
    from dwscli.train.state import config_differences

    saved = {"train": {"lr": 1e-3, "epochs": 4}, "model": {"arch": "dws"}}
    current = {
        "train": {"lr": 1e-3, "epochs": 8, "recalibrate_norms": False},
        "model": {"arch": "dws"},
    }
    assert config_differences(saved, current) == []  # more epochs is a resumable change
    current["train"]["recalibrate_norms"] = True
    assert config_differences(saved, current) == ["train.recalibrate_norms"]
    # model options added later: absent meant off, and init_from / where absent meant none
    current["train"] = {"lr": 1e-3, "epochs": 8, "recalibrate_norms": False, "init_from": None}
    current["train"]["where"] = None
    current["model"] = {"arch": "dws", "probe_grid": False, "input_squash": False}
    assert config_differences(saved, current) == []
    current["model"]["probe_grid"] = True
    assert config_differences(saved, current) == ["model.probe_grid"]


# ------------------------------------------------------------------------------------------------
# distributed: torchrun with 2 CPU processes (gloo) equals one process with the same global batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_with_two_processes_matches_one(small_inr_zoo: Path, tmp_path: Path) -> None:
    """Same global batch (8 = 2 x 4), same data order and the same augmentation permutations on
    every rank (they are drawn per global batch from the seed), no dropout (its masks come from
    each process's own RNG): the results agree up to float summation order."""
    common = {
        "name": "ddp",
        "task": "inr-classify",
        "zoo": str(small_inr_zoo),
        "model": TINY_MODEL,
        "train": {"epochs": 2, "batch_size": 8, "eval_batch_size": 3, "lr": 3e-3, "seed": 1},
    }
    single = train(write_config(tmp_path / "one.yaml", output=str(tmp_path / "one"), **common))
    config = write_config(tmp_path / "two.yaml", output=str(tmp_path / "two"), **common)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "dwscli",
        "train",
        str(config),
        "--json",
        "--threads",
        "1",
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(run.stdout)  # rank 0 alone prints
    assert data["world_size"] == 2
    for split in ("val", "test"):
        for key, value in single.metrics[split].items():
            assert math.isclose(data["metrics"][split][key], value, rel_tol=1e-4, abs_tol=1e-5)
    # The two processors compute the same function of every net and hold the same weights,
    # up to float noise: Adam turns the noise in a near-zero gradient (a unit that rarely
    # fires, or a shift the head's batch norm cancels) into full-size steps, so a few entries
    # drift apart by up to a few learning-rate steps.
    nets = Zoo.open(small_inr_zoo).get(Zoo.open(small_inr_zoo).ids())
    one, two = (load_processor(str(tmp_path / d / "ddp.yaml")).model for d in ("one", "two"))
    with torch.no_grad():
        assert torch.allclose(one(nets), two(nets), atol=1e-3, rtol=1e-3)
    distributed = load_file(str(tmp_path / "two" / "ddp.safetensors"))
    close = total = 0
    for key, tensor in weights_of(single).items():
        assert torch.allclose(distributed[key], tensor, atol=1e-3 * 3, rtol=1e-3), key
        close += int(torch.isclose(distributed[key], tensor, atol=1e-5, rtol=1e-4).sum())
        total += tensor.numel()
    assert close >= 0.98 * total  # all but a few entries agree to float precision
    assert run.stderr.count("epoch 2/2") == 1  # only rank 0 reports


# ------------------------------------------------------------------------------------------------
# functional probes (model.probes): started from the zoo's inputs, stored in the processor


def test_labelled_probes_start_from_training_images(clf_zoo: Path, tmp_path: Path) -> None:
    from dwscli.data.classifier_train import preprocess
    from dwscli.data.datasets import load_dataset
    from dwscli.train.probes import probe_inputs

    zoo = Zoo.open(clf_zoo)
    inputs, labels = probe_inputs(zoo, 12, seed=0)
    images = load_dataset("fashion-mnist", "train")
    c = zoo.conventions
    pixels = preprocess(images.float_images(), int(c["pool"]), c["mean"], c["std"])
    # every probe is one training image, preprocessed as the zoo's nets expect, with its label
    for x, y in zip(inputs, labels):
        match = (pixels - x).abs().amax(dim=1).argmin()
        assert torch.allclose(pixels[match], x) and int(images.labels[match]) == int(y)

    model = {**TINY_MODEL, "fixed_mixing": "shared", "probes": 12, "probe_labels": True}
    settings = accuracy_config(clf_zoo, tmp_path / "out", epochs=2)
    result = train(write_config(tmp_path / "p.yaml", **{**settings, "model": model}))
    stored = weights_of(result)
    assert torch.equal(stored["probes.inputs"], inputs)  # labelled probes stay put
    assert torch.equal(stored["probes.labels"], labels)
    card = yaml.safe_load(result.processor.read_text())
    assert card["model"]["config"]["probes"] == 12 and card["model"]["config"]["probe_labels"]
    processor = load_processor(str(result.processor), device="cpu")
    assert torch.equal(processor.model.probes.inputs.detach(), inputs)


def test_inr_probes_are_coordinates_and_labels_need_a_classifier_zoo(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    from dwscli.train.probes import probe_inputs

    inputs, labels = probe_inputs(Zoo.open(small_inr_zoo), 50, seed=0)
    assert labels is None and inputs.shape == (50, 2)
    assert inputs.min() >= -1.0 and inputs.max() <= 1.0 and inputs.std() > 0.4
    config = write_config(
        tmp_path / "inr.yaml",
        name="tiny-inr-probes",
        task="inr-classify",
        zoo=str(small_inr_zoo),
        output=str(tmp_path / "out"),
        model={**TINY_MODEL, "probes": 8, "probe_labels": True},
        train={"epochs": 1, "batch_size": 8, "device": "cpu"},
    )
    with pytest.raises(DwsError, match="labelled probes need classifier nets"):
        train(config)
