"""``dws evaluate``: a processor scored on a zoo split with its task's training metrics.

Processors are trained here on tiny zoos made here; on their own zoo ``dws evaluate`` must give
exactly what ``dws train`` wrote to the card, for every split (the held-out recipe split too).
"""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dwscli import api
from dwscli.cli.app import app
from dwscli.data.zoo import Zoo
from dwscli.data.zoo_format import HELDOUT_SPLIT
from dwscli.data.zoo_make import SineZooConfig, make_sine_zoo
from dwscli.processors.card import ProcessorCard
from dwscli.train import TrainConfig, train

TINY = {"hidden_channels": 8, "num_layers": 2, "head_hidden": [16]}


def dws(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _train(zoo: Path, out: Path, name: str, task: dict[str, Any], **model: Any) -> Path:
    config = {
        "name": name,
        "task": task,
        "zoo": str(zoo),
        "output": str(out),
        "model": {**TINY, **model},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "device": "cpu"},
    }
    return train(TrainConfig.from_dict(config)).processor


@pytest.fixture(scope="module")
def sines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-sines") / "zoo"
    config = SineZooConfig(spec="1-8-8-1:sine;w0=30", points=32, steps=60, chunk=60, compiled=False)
    make_sine_zoo(out, count=60, config=config, shard_size=60)
    return out


@pytest.fixture(scope="module")
def classify_card(diverse_inr_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-classify")
    return _train(diverse_inr_zoo, out, "tiny-classify", {"name": "inr-classify"})


@pytest.fixture(scope="module")
def accuracy_card(da_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-accuracy")
    return _train(da_zoo, out, "tiny-accuracy", {"name": "accuracy", "baselines": []})


@pytest.fixture(scope="module")
def embed_card(sines: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-embed")
    task = {"name": "embed", "dim": 4, "baselines": []}
    return _train(sines, out, "tiny-embed", task, fixed_mixing="full", pooling="mean+max")


def _assert_same(measured: dict[str, float], card: dict[str, float]) -> None:
    assert set(measured) == set(card)
    for key, value in card.items():
        assert math.isclose(measured[key], value, rel_tol=1e-4, abs_tol=1e-6), (key, measured)


@pytest.mark.parametrize("split", ["test", "val", HELDOUT_SPLIT])
def test_the_metrics_equal_what_dws_train_wrote_to_the_card(
    classify_card: Path, diverse_inr_zoo: Path, split: str
) -> None:
    card = ProcessorCard.read(classify_card)
    result = api.evaluate(str(classify_card), diverse_inr_zoo, split=split, device="cpu")
    assert result.nets == len(Zoo.open(diverse_inr_zoo).ids(split))
    _assert_same(result.metrics, card.metrics[split])
    assert result.card_metrics == card.metrics[split]


def test_an_accuracy_predictor_scores_as_in_training(accuracy_card: Path, da_zoo: Path) -> None:
    card = ProcessorCard.read(accuracy_card)
    for split in ("test", "val"):
        result = api.evaluate(str(accuracy_card), da_zoo, split=split, device="cpu")
        assert set(result.metrics) == {"kendall_tau", "r2", "mae", "loss"}
        _assert_same(result.metrics, card.metrics[split])


def test_an_embedding_refits_its_probe_as_in_training(embed_card: Path, sines: Path) -> None:
    card = ProcessorCard.read(embed_card)
    result = api.evaluate(str(embed_card), sines, split="test", device="cpu")
    assert "probe_mse" in result.metrics
    _assert_same(result.metrics, card.metrics["test"])


def test_json_shape_all_splits_breakdown_and_outcome(
    classify_card: Path, diverse_inr_zoo: Path
) -> None:
    done = dws("evaluate", str(classify_card), str(diverse_inr_zoo), "--split", "all", "--by",
               "optimizer", "--json", "--device", "cpu")  # fmt: skip
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert set(data) == {
        "processor", "task", "zoo", "split", "nets", "metrics", "card_metrics", "ood", "by",
        "outcome", "where", "card_where",
    }  # fmt: skip
    zoo = Zoo.open(diverse_inr_zoo)
    assert data["split"] == "all" and data["nets"] == len(zoo) and data["card_metrics"] is None
    assert data["where"] is None and data["card_where"] is None
    assert data["task"] == "inr-classify" and set(data["metrics"]) == {"accuracy", "loss"}
    assert set(data["ood"]) == {"flagged_fraction", "flagged", "threshold"}
    assert data["ood"]["flagged"] == round(data["ood"]["flagged_fraction"] * len(zoo))
    groups = data["by"]["optimizer"]
    optimizers = [r["hparams"]["optimizer"] for r in zoo.records()]
    assert {k: v["nets"] for k, v in groups.items()} == {
        name: optimizers.count(name) for name in set(optimizers)
    }
    # the SGD nets are the held-out split: their group's accuracy is that split's
    sgd = api.evaluate(str(classify_card), diverse_inr_zoo, split=HELDOUT_SPLIT, device="cpu")
    assert groups["sgd"]["metrics"]["accuracy"] == pytest.approx(sgd.metrics["accuracy"])
    outcome = data["outcome"]
    right = round(data["metrics"]["accuracy"] * len(zoo))
    assert (outcome["right"]["nets"], outcome["wrong"]["nets"]) == (right, len(zoo) - right)
    limited = api.evaluate(
        str(classify_card), diverse_inr_zoo, split="all", max_nets=7, device="cpu"
    )
    assert limited.nets == 7


def test_where_scores_only_the_nets_that_meet_it(
    classify_card: Path, diverse_inr_zoo: Path
) -> None:
    zoo = Zoo.open(diverse_inr_zoo)
    records = zoo.records()
    psnrs = sorted(r["metrics"]["psnr"] for r in records)
    cut = psnrs[len(psnrs) // 2]
    card = str(classify_card)
    fitted = api.evaluate(card, diverse_inr_zoo, split="all", where=f"psnr={cut}..", device="cpu")
    assert fitted.where == f"psnr={cut}.."
    assert fitted.nets == sum(r["metrics"]["psnr"] >= cut for r in records) < len(records)
    # a recipe condition picks the same nets as the split it defines (SGD nets are held out)
    sgd = api.evaluate(card, diverse_inr_zoo, split="all", where="optimizer=sgd", device="cpu")
    heldout = api.evaluate(card, diverse_inr_zoo, split=HELDOUT_SPLIT, device="cpu")
    assert sgd.nets == heldout.nets == len(zoo.ids(HELDOUT_SPLIT))
    assert sgd.metrics == heldout.metrics
    # conditions on recipe, fit metric and label together, from the CLI
    chosen = next(
        r for r in records if r["hparams"]["optimizer"] == "adam" and r["metrics"]["psnr"] >= cut
    )
    where = f"optimizer=adam,psnr={cut}..,label={chosen['labels']['label']}"
    done = dws("evaluate", card, str(diverse_inr_zoo), "--split", "all", "--where", where,
               "--json", "--device", "cpu")  # fmt: skip
    assert done.exit_code == 0, done.output
    wanted = [
        r for r in records
        if r["hparams"]["optimizer"] == "adam" and r["metrics"]["psnr"] >= cut
        and r["labels"]["label"] == chosen["labels"]["label"]
    ]  # fmt: skip
    assert json.loads(done.stdout)["nets"] == len(wanted) >= 1


def test_the_cards_condition_is_shown_beside_its_figures(
    diverse_inr_zoo: Path, tmp_path: Path
) -> None:
    zoo = Zoo.open(diverse_inr_zoo)
    cut = min(zoo.record(net)["metrics"]["psnr"] for net in zoo.ids("val") + zoo.ids("test"))
    config = {
        "name": "tiny-where",
        "task": {"name": "inr-classify"},
        "zoo": str(diverse_inr_zoo),
        "output": str(tmp_path),
        "model": TINY,
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "where": f"psnr={cut}.."},
    }
    card = str(train(TrainConfig.from_dict(config)).processor)
    result = api.evaluate(card, diverse_inr_zoo, split="test", device="cpu")
    assert result.card_where == f"psnr={cut}.." and result.where is None
    from rich.console import Console

    from dwscli.cli.commands.evaluate import render

    console = Console(width=400, record=True, file=io.StringIO())
    console.print(render(result))
    assert f"test (card: training zoo, nets with psnr={cut}..)" in console.export_text()
    done = dws("evaluate", card, str(diverse_inr_zoo), "--json", "--device", "cpu")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["card_where"] == f"psnr={cut}.."


def test_bad_where_conditions_are_one_line_errors(
    classify_card: Path, diverse_inr_zoo: Path
) -> None:
    card, zoo = str(classify_card), str(diverse_inr_zoo)
    _one_line_error(dws("evaluate", card, zoo, "--where", "psnr"), "--where", "KEY=VALUE")
    _one_line_error(dws("evaluate", card, zoo, "--where", "colour=red"), "no net records 'colour'")
    _one_line_error(dws("evaluate", card, zoo, "--where", "psnr=1000.."), "no net of the split")
    _one_line_error(dws("evaluate", card, zoo, "--where", "psnr=abc.."), "'abc' is not a number")


def _one_line_error(result: Any, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _copy(zoo: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
    return copy


def test_a_zoo_the_processor_cannot_read_is_a_one_line_error(
    classify_card: Path, accuracy_card: Path, diverse_inr_zoo: Path, da_zoo: Path, tmp_path: Path
) -> None:
    card = str(classify_card)
    # kind: an INR classifier on a classifier zoo
    _one_line_error(dws("evaluate", card, str(da_zoo)), f"{da_zoo}: a classifier zoo", "inr")
    # spec: the shipped 2-32-32-32-1 processor on 2-8-8-1 nets
    _one_line_error(
        dws("evaluate", "mnist-inr-classify", str(diverse_inr_zoo)),
        "2-8-8-1",
        "2-*-*-*-1:sine",
    )
    # conventions: nets read with another output scale
    copy = _copy(diverse_inr_zoo, tmp_path)
    meta = json.loads((copy / "zoo.json").read_text())
    meta["conventions"]["output_scale"] = 0.25
    (copy / "zoo.json").write_text(json.dumps(meta))
    _one_line_error(dws("evaluate", card, str(copy)), "output_scale is 0.25", "expects 1.0")
    # a missing target: the accuracy predictor on nets that record no test accuracy
    clf = tmp_path / "clf"
    shutil.copytree(da_zoo, clf)
    manifest = clf / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    del records[3]["metrics"]["test_acc"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    _one_line_error(
        dws("evaluate", str(accuracy_card), str(clf)), f"{clf}: net", "no metrics.test_acc"
    )


def test_bad_splits_and_unfinished_zoos_are_one_line_errors(
    classify_card: Path, accuracy_card: Path, diverse_inr_zoo: Path, da_zoo: Path, tmp_path: Path
) -> None:
    card = str(classify_card)
    _one_line_error(
        dws("evaluate", card, str(diverse_inr_zoo), "--split", "tset"),
        "unknown split 'tset'",
        "test_heldout_recipe",
    )
    # a zoo made without a held-out region has no such split
    _one_line_error(
        dws("evaluate", str(accuracy_card), str(da_zoo), "--split", HELDOUT_SPLIT),
        f"{da_zoo}: the zoo has no {HELDOUT_SPLIT} split",
    )
    copy = _copy(diverse_inr_zoo, tmp_path)
    (copy / "manifest.jsonl").unlink()
    _one_line_error(dws("evaluate", card, str(copy)), f"{copy}: zoo is not finished")
    _one_line_error(
        dws("evaluate", card, str(diverse_inr_zoo), "--split", "all", "--by", "lr"),
        "--by lr",
        "distinct values",
    )
