"""The held-out-recipe protocol: a recipe region kept out of train and val makes up the split
``test_heldout_recipe`` (source images still stay together), ``dws zoo split`` re-splits a
finished zoo, ``dws train`` scores the region beside test and writes both to the card, and
``dws compare`` tables gain its column. Zoos without a region split exactly as before."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.zoo import Zoo
from dwscli.data.zoo_format import HELDOUT_SPLIT, SPLITS
from dwscli.data.zoo_splits import hold_out_matcher, parse_hold_out, split_by_source
from dwscli.processors.card import ProcessorCard

TINY_DWS = {"hidden_channels": 8, "num_layers": 2, "head_hidden": [16]}


def dws(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _records() -> list[dict[str, Any]]:
    """60 nets of 20 source images (3 nets each, recipes varying within an image), 15 images
    from the official training set and 5 from the test set."""
    records = []
    for n in range(60):
        image = n // 3
        records.append(
            {
                "id": f"net-{n:03d}",
                "hparams": {
                    "optimizer": "sgd" if n % 4 == 0 else "adam",
                    "init": ("sitzmann", "dwsnets", "torch-linear")[n % 3],
                    "lr": 10 ** (-4 + 2 * (n % 7) / 6),
                },
                "labels": {"image_index": image, "image_split": "test" if image >= 15 else "train"},
            }
        )
    return records


@pytest.mark.parametrize(
    "region",
    ["optimizer=sgd", "optimizer=sgd,init=dwsnets", "lr=1e-3..1e-2", "init=dwsnets|sitzmann"],
)
def test_the_heldout_split_holds_exactly_the_region_and_images_stay_together(region: str) -> None:
    records = _records()
    hold_out = parse_hold_out(region)
    matches = hold_out_matcher(hold_out)
    splits = split_by_source(records, hold_out=hold_out)
    assert set(splits) == {*SPLITS, HELDOUT_SPLIT}
    expected = {r["id"] for r in records if matches(r)}
    assert 0 < len(expected) < len(records)
    assert set(splits[HELDOUT_SPLIT]) == expected  # the region, all of it, nothing else
    every = [net for ids in splits.values() for net in ids]
    assert sorted(every) == sorted(r["id"] for r in records)  # a partition
    image_of = {r["id"]: r["labels"]["image_index"] for r in records}
    trained = {net for name in ("train", "val") for net in splits[name]}
    assert not trained & expected
    evaluated = {image_of[n] for name in ("test", HELDOUT_SPLIT) for n in splits[name]}
    assert not {image_of[n] for n in trained} & evaluated  # no image in train/val and a test split
    # official test images never enter train/val
    assert all(image_of[n] < 15 for n in trained)


def test_a_region_on_a_value_range_and_a_zoo_without_one_split_as_before() -> None:
    records = _records()
    plain = split_by_source(records)
    assert set(plain) == set(SPLITS)  # no extra key without a region
    band = parse_hold_out("lr=1e-3..1e-2")
    assert band == {"lr": {"min": 1e-3, "max": 1e-2}}
    held = split_by_source(records, hold_out=band)[HELDOUT_SPLIT]
    lrs = {r["id"]: r["hparams"]["lr"] for r in records}
    assert held and all(1e-3 <= lrs[n] < 1e-2 for n in held)
    assert parse_hold_out("lr=..1e-3") == {"lr": {"max": 1e-3}}


def test_a_zoo_made_with_a_region_records_it_and_splits_on_it(diverse_inr_zoo: Path) -> None:
    meta = json.loads((diverse_inr_zoo / "zoo.json").read_text())
    assert meta["split"]["hold_out"] == {"optimizer": {"in": ["sgd"]}}
    zoo = Zoo.open(diverse_inr_zoo)
    held = zoo.ids(HELDOUT_SPLIT)
    assert held == [r["id"] for r in zoo.records() if r["hparams"]["optimizer"] == "sgd"]
    assert all(r["hparams"]["optimizer"] == "adam" for s in SPLITS for r in zoo.records(s))
    info = json.loads(dws("zoo", "info", str(diverse_inr_zoo), "--json").stdout)
    assert info["splits"][HELDOUT_SPLIT] == len(held)


def test_dws_zoo_split_resplits_a_finished_zoo_only_when_forced(
    diverse_inr_zoo: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(diverse_inr_zoo, copy)
    before = (copy / "splits.json").read_text()
    refused = dws("zoo", "split", str(copy), "--hold-out", "init=dwsnets|torch-linear")
    assert refused.exit_code != 0 and "--force" in refused.stderr
    assert (copy / "splits.json").read_text() == before
    done = dws("zoo", "split", str(copy), "--hold-out", "init=dwsnets|torch-linear", "--force")
    assert done.exit_code == 0, done.output
    zoo = Zoo.open(copy)
    inits = {r["id"]: r["hparams"]["init"] for r in zoo.records()}
    assert {inits[n] for n in zoo.ids(HELDOUT_SPLIT)} <= {"dwsnets", "torch-linear"}
    rest = [n for s in SPLITS for n in zoo.ids(s)]
    assert all(inits[n] not in ("dwsnets", "torch-linear") for n in rest)
    for region, fragment in (("optimiser=sgd", "no net records 'optimiser'"), ("lr=5..9", "none")):
        bad = dws("zoo", "split", str(copy), "--hold-out", region, "--force")
        assert bad.exit_code != 0 and bad.stderr.startswith(f"error: {copy}: ")
        assert fragment in bad.stderr.splitlines()[0]
    removed = dws("zoo", "split", str(copy), "--hold-out", "none", "--force")
    assert removed.exit_code == 0
    assert set(json.loads((copy / "splits.json").read_text())) == set(SPLITS)
    assert "hold_out" not in json.loads((copy / "zoo.json").read_text())["split"]


def _config(path: Path, zoo: Path, out: Path) -> Path:
    config = {
        "name": "tiny-heldout",
        "task": "inr-classify",
        "zoo": str(zoo),
        "output": str(out),
        "model": TINY_DWS,
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "device": "cpu"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_dws_train_scores_test_and_heldout_recipes_on_the_card(
    diverse_inr_zoo: Path, tmp_path: Path
) -> None:
    result = dws("train", str(_config(tmp_path / "c.yaml", diverse_inr_zoo, tmp_path)), "--json")
    assert result.exit_code == 0, result.output
    card = ProcessorCard.read(tmp_path / "tiny-heldout.yaml")
    assert set(card.metrics["test"]) == {"accuracy", "loss"}
    assert set(card.metrics[HELDOUT_SPLIT]) == {"accuracy", "loss"}
    zoo = Zoo.open(diverse_inr_zoo)
    assert card.training["zoo"]["splits"][HELDOUT_SPLIT] == len(zoo.ids(HELDOUT_SPLIT))
    # scored on the held-out nets themselves: accuracy is a multiple of 1 / their count
    count = len(zoo.ids(HELDOUT_SPLIT))
    accuracy = card.metrics[HELDOUT_SPLIT]["accuracy"]
    assert abs(accuracy * count - round(accuracy * count)) < 1e-3


def test_dws_train_on_a_zoo_without_a_region_writes_no_heldout_metric(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    result = dws("train", str(_config(tmp_path / "c.yaml", small_inr_zoo, tmp_path)))
    assert result.exit_code == 0, result.output
    card = ProcessorCard.read(tmp_path / "tiny-heldout.yaml")
    assert HELDOUT_SPLIT not in card.metrics and "test" in card.metrics


def test_dws_compare_tables_gain_the_heldout_column(diverse_inr_zoo: Path, tmp_path: Path) -> None:
    config = _config(tmp_path / "c.yaml", diverse_inr_zoo, tmp_path / "unused")
    out = tmp_path / "results"
    result = dws("compare", str(config), "--archs", "dws", "--seeds", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    markdown = (out / "results.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| arch"))
    assert "held-out recipes accuracy" in header
    card = ProcessorCard.read(out / "runs" / "dws-s0" / "tiny-heldout-dws-s0.yaml")
    row = next(line for line in markdown.splitlines() if line.startswith("| dws"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    column = [c.strip() for c in header.strip("|").split("|")].index("held-out recipes accuracy")
    assert float(cells[column].strip("*")) == pytest.approx(
        card.metrics[HELDOUT_SPLIT]["accuracy"], abs=1e-4
    )
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert float(rows[0][f"{HELDOUT_SPLIT}_accuracy"]) == pytest.approx(
        card.metrics[HELDOUT_SPLIT]["accuracy"], abs=1e-5
    )
