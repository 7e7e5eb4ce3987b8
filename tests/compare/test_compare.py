"""``dws compare``: the table, CSV and plot it writes, reusing finished runs, and the errors it
reports before any training (unknown arch, an arch that cannot do the task, config mistakes)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.compare.plan import load_compare_config, plan_runs
from dwscli.errors import DwsError
from dwscli.nn.archs import ARCHS

TINY_DWS = {"hidden_channels": 8, "num_layers": 2, "head_hidden": [16]}
SEEDS = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dws(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _second_arch() -> str | None:
    """A registered arch besides dws that builds invariant models, if the registry has one."""
    for name in ("mlp", "statnn", "nfn-np", *sorted(ARCHS)):
        if name != "dws" and name in ARCHS and "invariant" in ARCHS[name].kinds:
            return name
    return None


ARCH_NAMES = ["dws", *filter(None, [_second_arch()])]


def write_config(path: Path, zoo: Path, **extra: Any) -> Path:
    config = {
        "name": "tiny",
        "task": "inr-classify",
        "zoo": str(zoo),
        "model": TINY_DWS,
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "device": "cpu"},
        **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def compared(
    small_inr_zoo: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Any]:
    """``dws compare`` with the archs of ARCH_NAMES, 2 seeds each: (config, output, result)."""
    root = tmp_path_factory.mktemp("compare")
    config = write_config(root / "c.yaml", small_inr_zoo)
    out = root / "results"
    archs = ",".join(ARCH_NAMES)
    result = dws("compare", str(config), "--archs", archs, "--seeds", str(SEEDS), "-o", str(out))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return config, out, result


def _card(out: Path, arch: str, seed: int) -> dict[str, Any]:
    return yaml.safe_load(
        (out / "runs" / f"{arch}-s{seed}" / f"tiny-{arch}-s{seed}.yaml").read_text()
    )


def _table(markdown: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert all(re.fullmatch(r"-+:?", c) for c in cells[1]), lines[1]
    assert all(len(row) == len(cells[0]) for row in cells), lines
    return cells[0], cells[2:]


def _mean_std(text: str) -> tuple[float, float | None]:
    parts = text.replace("*", "").split("±")
    return float(parts[0]), (float(parts[1]) if len(parts) > 1 else None)


# ------------------------------------------------------------------------------------------------
# the outputs


def test_markdown_table_has_one_row_per_arch_with_numbers(compared: tuple[Path, Path, Any]) -> None:
    _, out, _ = compared
    header, rows = _table((out / "results.md").read_text())
    assert header == ["arch", "accuracy", "train accuracy", "parameters", "train time (s)", "runs"]
    assert [row[0] for row in rows] == ARCH_NAMES
    for arch, accuracy, train_accuracy, parameters, seconds, runs in rows:
        cards = [_card(out, arch, s) for s in range(SEEDS)]
        values = [c["metrics"]["test"]["accuracy"] for c in cards]
        mean, std = _mean_std(accuracy)
        assert mean == pytest.approx(statistics.fmean(values), abs=1e-4)
        assert std == pytest.approx(statistics.stdev(values), abs=1e-4)
        # the training metric sits beside the test metric: the cards' training-sample accuracy
        train_values = [c["metrics"]["train"]["accuracy"] for c in cards]
        train_mean, train_std = _mean_std(train_accuracy)
        assert train_mean == pytest.approx(statistics.fmean(train_values), abs=1e-4)
        assert train_std == pytest.approx(statistics.stdev(train_values), abs=1e-4)
        assert int(parameters) == cards[0]["model"]["parameters"] > 0
        assert _mean_std(seconds)[0] > 0
        assert runs == f"{SEEDS}/{SEEDS}"
    best = max(_mean_std(row[1])[0] for row in rows)
    assert [row[0] for row in rows if "**" in row[1]] == [
        row[0] for row in rows if _mean_std(row[1])[0] == best
    ]  # the best arch (every one of a tie) is marked


def test_csv_has_a_row_per_run_then_mean_and_std(compared: tuple[Path, Path, Any]) -> None:
    _, out, _ = compared
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    runs = [(r["arch"], r["seed"]) for r in rows if r["seed"].isdigit()]
    assert runs == [(a, str(s)) for a in ARCH_NAMES for s in range(SEEDS)]
    summary = [(r["arch"], r["seed"]) for r in rows if not r["seed"].isdigit()]
    assert summary == [(a, stat) for a in ARCH_NAMES for stat in ("mean", "std")]
    by_key = {(r["arch"], r["seed"]): r for r in rows}
    for arch in ARCH_NAMES:
        values = []
        for seed in range(SEEDS):
            row = by_key[(arch, str(seed))]
            card = _card(out, arch, seed)
            assert row["status"] == "trained"
            assert float(row["test_accuracy"]) == pytest.approx(card["metrics"]["test"]["accuracy"])
            assert float(row["test_loss"]) == pytest.approx(
                card["metrics"]["test"]["loss"], rel=1e-4
            )
            assert int(row["parameters"]) == card["model"]["parameters"]
            values.append(float(row["test_accuracy"]))
        assert float(by_key[(arch, "mean")]["test_accuracy"]) == pytest.approx(
            statistics.fmean(values), rel=1e-5
        )


def test_bar_plot_is_a_png(compared: tuple[Path, Path, Any]) -> None:
    from PIL import Image

    _, out, _ = compared
    data = (out / "results.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(out / "results.png") as image:
        image.verify()
    with Image.open(out / "results.png") as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_each_run_is_a_processor_with_its_arch_and_seed(compared: tuple[Path, Path, Any]) -> None:
    _, out, result = compared
    for arch in ARCH_NAMES:
        for seed in range(SEEDS):
            card = _card(out, arch, seed)
            assert card["model"]["arch"] == arch
            assert card["training"]["config"]["train"]["seed"] == seed
            assert card["training"]["config"]["train"]["epochs"] == 2  # the same budget
    # the dws runs use the config's model section
    assert _card(out, "dws", 0)["model"]["config"]["hidden_channels"] == 8
    # progress: a line per run on stderr, the table on stdout
    assert len(re.findall(r"^\[\d/\d\] .*: training$", result.stderr, re.M)) == SEEDS * len(
        ARCH_NAMES
    )
    assert "accuracy" in result.stdout


# ------------------------------------------------------------------------------------------------
# resuming


def test_finished_runs_are_reused_not_retrained(
    compared: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    config, out, _ = compared
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    cards = {s: copy / "runs" / f"dws-s{s}" / f"tiny-dws-s{s}.yaml" for s in range(SEEDS)}
    before = {s: p.stat().st_mtime_ns for s, p in cards.items()}
    result = dws(
        "compare",
        str(config),
        "--archs",
        "dws",
        "--seeds",
        str(SEEDS + 1),
        "-o",
        str(copy),
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert {s: p.stat().st_mtime_ns for s, p in cards.items()} == before
    assert result.stderr.count("finished, reused") == SEEDS
    data = json.loads(result.stdout)
    assert [r["status"] for r in data["runs"]] == ["reused"] * SEEDS + ["trained"]
    assert data["summary"][0]["runs"] == SEEDS + 1
    _, rows = _table((copy / "results.md").read_text())
    assert [row[0] for row in rows] == ["dws"] and rows[0][-1] == f"{SEEDS + 1}/{SEEDS + 1}"


def test_a_reused_config_is_its_arch_run_trained_in_place_once(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    """compare.reuse: the named config's processor is the arch's run; the comparison trains it
    where that config writes (not under runs/) when it is missing and reads it afterwards."""
    shipped = write_config(tmp_path / "ship.yaml", small_inr_zoo, output=str(tmp_path / "ship"))
    shipped_data = yaml.safe_load(shipped.read_text())
    shipped_data.update(name="shipped", default_for={"task": "inr-classify", "dataset": "mnist"})
    shipped.write_text(yaml.safe_dump(shipped_data, sort_keys=False))
    config = write_config(
        tmp_path / "c.yaml", small_inr_zoo, compare={"reuse": {"dws": str(shipped)}}
    )
    out = tmp_path / "o"
    first = dws("compare", str(config), "--archs", "dws", "-o", str(out), "--json")
    assert first.exit_code == 0, first.stderr
    card = tmp_path / "ship" / "shipped.yaml"
    assert card.is_file() and not (out / "runs" / "dws-s0").exists()
    assert [r["status"] for r in json.loads(first.stdout)["runs"]] == ["trained"]
    assert f"the processor `shipped` of `{shipped}`" in (out / "results.md").read_text()
    before = card.stat().st_mtime_ns
    again = dws("compare", str(config), "--archs", "dws", "-o", str(out), "--json")
    assert again.exit_code == 0, again.stderr
    assert [r["status"] for r in json.loads(again.stdout)["runs"]] == ["reused"]
    assert card.stat().st_mtime_ns == before
    accuracy = yaml.safe_load(card.read_text())["metrics"]["test"]["accuracy"]
    _, rows = _table((out / "results.md").read_text())
    assert _mean_std(rows[0][1])[0] == pytest.approx(accuracy, abs=1e-4)


def test_a_reused_config_that_is_not_the_compared_run_is_refused(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    shipped = write_config(tmp_path / "ship.yaml", small_inr_zoo, output=str(tmp_path / "ship"))
    data = yaml.safe_load(shipped.read_text())
    data["train"]["lr"] = 5e-3
    shipped.write_text(yaml.safe_dump(data, sort_keys=False))
    config = write_config(
        tmp_path / "c.yaml", small_inr_zoo, compare={"reuse": {"dws": str(shipped)}}
    )
    result = dws("compare", str(config), "--archs", "dws", "-o", str(tmp_path / "o"))
    _one_line_error(result, str(config), "compare.reuse.dws", str(shipped), "train.lr")
    assert not (tmp_path / "ship").exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------
# errors before training, failed runs


def _one_line_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_unknown_arch_lists_the_choices(small_inr_zoo: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", small_inr_zoo)
    result = dws("compare", str(config), "--archs", "dws,transformr", "-o", str(tmp_path / "o"))
    line = _one_line_error(result, "unknown architecture 'transformr'", "choose from")
    assert all(name in line for name in ARCHS)
    assert not (tmp_path / "o").exists()


def test_an_arch_that_cannot_do_the_task_is_refused_before_training(
    small_inr_zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    equi_only = dataclasses.replace(ARCHS["dws"], name="equi-only", kinds=("equivariant",))
    monkeypatch.setitem(ARCHS, "equi-only", equi_only)
    config = write_config(tmp_path / "c.yaml", small_inr_zoo)
    result = dws("compare", str(config), "--archs", "dws,equi-only", "-o", str(tmp_path / "o"))
    _one_line_error(result, "arch 'equi-only' cannot do task inr-classify", "invariant model")
    assert not (tmp_path / "o").exists()  # nothing was trained, not even dws


#: every arch of the DWSNets paper's domain-adaptation table that has a weights -> weights model
#: (dws, mlp, mlp-aug, mlp-align, inr2vec, transformer); "no adaptation" is the task's baseline
PAPER_ADAPTATION_ARCHS = ["dws", "mlp", "mlp-aug", "mlp-align", "inr2vec", "transformer"]


def test_the_papers_adaptation_baselines_can_all_do_the_adapt_task(
    da_zoo: Path, tmp_path: Path
) -> None:
    from dwscli.compare.plan import check_model_kinds
    from dwscli.train.config import TrainConfig

    base = TrainConfig.from_dict(
        {"name": "da", "task": "adapt", "zoo": str(da_zoo), "output": str(tmp_path)}
    )
    check_model_kinds(base, PAPER_ADAPTATION_ARCHS)  # raises for an invariant-only arch
    with pytest.raises(DwsError, match="arch 'statnn' cannot do task adapt"):
        check_model_kinds(base, ["statnn"])


def test_compare_runs_inr2vec_and_transformer_on_the_adapt_task(
    da_zoo: Path, tmp_path: Path
) -> None:
    """The two baselines that gained an equivariant kind train through ``dws compare`` on
    domain adaptation and report the adapted classifiers' accuracy."""
    config = write_config(
        tmp_path / "c.yaml",
        da_zoo,
        task={"name": "adapt", "images_per_step": 64, "val_images": 300, "eval_images": 300},
        model={"arch": "transformer", "d_model": 16, "num_heads": 2, "dim_feedforward": 32},
    )
    out = tmp_path / "o"
    archs = "inr2vec,transformer"
    result = dws("compare", str(config), "--archs", archs, "--seeds", "1", "-o", str(out))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    runs = {r["arch"]: r for r in rows if r["seed"] == "0"}
    assert {"inr2vec", "transformer"} <= set(runs)
    for arch in ("inr2vec", "transformer"):
        card = _card(out, arch, 0)
        assert card["model"]["kind"] == "equivariant" and runs[arch]["status"] == "trained"
        accuracy = card["metrics"]["test"]["adapted_acc"]
        assert 0.0 <= accuracy <= 1.0
        assert float(runs[arch]["test_adapted_acc"]) == pytest.approx(accuracy)
    assert _card(out, "transformer", 0)["model"]["config"]["d_model"] == 16


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        (
            {"train": {"dws": {"epochs": 5}}},
            "compare.train.dws.epochs: every arch shares the budget",
        ),
        ({"train": {"dws": {"lrr": 0.1}}}, "compare.train.dws.lrr: unknown key"),
        ({"train": {"dws": {"lr": "fast"}}}, "compare.train.dws.lr: expected a number"),
        ({"models": {"dws": {"hidden": 3}}}, "compare.models.dws.hidden: unknown key"),
        ({"models": {"mlp-x": {}}}, "compare.models.mlp-x: unknown architecture; choose from"),
        ({"seeds": 0}, "compare.seeds: expected an integer of at least 1"),
        ({"colour": 1}, "compare.colour: unknown key"),
    ],
    ids=["budget", "train-key", "train-type", "model-key", "unknown-arch", "seeds", "section-key"],
)
def test_compare_section_mistakes_are_one_line_errors(
    small_inr_zoo: Path, tmp_path: Path, section: dict[str, Any], fragment: str
) -> None:
    config = write_config(tmp_path / "c.yaml", small_inr_zoo, compare=section)
    result = dws("compare", str(config), "--archs", "dws", "-o", str(tmp_path / "o"))
    _one_line_error(result, str(config), fragment)
    assert not (tmp_path / "o").exists()


def test_model_options_precedence(small_inr_zoo: Path, tmp_path: Path) -> None:
    """compare.models.<arch>, else the config's model: section for its own arch, else defaults."""
    section = {
        "archs": ["dws"],
        "seeds": 2,
        "models": {"dws": {"hidden_channels": 4}, "mlp": {}},  # mlp: not compared, allowed
        "train": {"dws": {"lr": "5e-3", "permutation_augmentation": False}},
    }
    base, parsed = load_compare_config(
        write_config(tmp_path / "c.yaml", small_inr_zoo, compare=section)
    )
    assert parsed.archs == ("dws",) and parsed.seeds == 2
    runs = plan_runs(
        base, ["dws"], 2, tmp_path / "o", models=parsed.models, train_overrides=parsed.train
    )
    assert [r.config.model.options.hidden_channels for r in runs] == [4, 4]
    assert [r.config.train.seed for r in runs] == [0, 1]
    expected = dataclasses.replace(base.train, lr=5e-3, permutation_augmentation=False, seed=1)
    assert runs[1].config.train == expected  # the rest of train: is shared
    assert base.train.lr == 1e-2
    assert [r.directory.name for r in runs] == ["dws-s0", "dws-s1"]
    (own,) = plan_runs(base, ["dws"], 1, tmp_path / "o")
    assert own.config.model.options.hidden_channels == 8  # the model: section
    bare, _ = load_compare_config(
        write_config(tmp_path / "d.yaml", small_inr_zoo, model={"arch": "dws"})
    )
    (default,) = plan_runs(bare, ["dws"], 1, tmp_path / "o")
    assert default.config.model.options == type(default.config.model.options)()
    for other in ARCH_NAMES[1:]:  # an arch the config's model: section is not for: defaults
        (run,) = plan_runs(base, [other], 1, tmp_path / "o")
        assert run.config.model.arch == other
        assert run.config.model.options == ARCHS[other].options_type()


class _NanModel(nn.Module):
    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, space: Any) -> torch.Tensor:
        return self.scale * torch.full((space.batch_size, self.out_features), math.nan)


def test_a_failed_run_is_reported_and_the_others_are_kept(
    compared: tuple[Path, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, out, _ = compared
    broken = dataclasses.replace(
        ARCHS["dws"],
        name="broken",
        build=lambda spec, kind, options, out_features: _NanModel(out_features),
        fit_normalizer=lambda model, space: None,
    )
    monkeypatch.setitem(ARCHS, "broken", broken)
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    args = ["compare", str(config), "--archs", "dws,broken", "--seeds", str(SEEDS), "-o", str(copy)]
    result = dws(*args)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("error: broken seed") == SEEDS
    assert "training diverged" in result.stderr
    _, rows = _table((copy / "results.md").read_text())
    assert [row[0] for row in rows] == ["dws", "broken"]
    assert rows[1][-1] == f"0/{SEEDS}" and rows[1][1] == "n/a"
    assert "Failed runs:" in (copy / "results.md").read_text()

    stopped = dws(*args, "--fail-fast")
    assert stopped.exit_code == 1
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: broken seed 0: training diverged in epoch 1 (mean loss nan)"
    ]  # stopped at the first failure
    assert "broken seed 1" not in stopped.stderr and "Traceback" not in stopped.stderr


def test_tables_from_records_with_a_baseline_a_tie_and_a_failure(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    """The aggregation alone, on made-up run records (no training)."""
    from dwscli.compare.runner import CompareResult, RunRecord
    from dwscli.compare.tables import csv_text, markdown, metric_names, summarise

    def run(arch: str, seed: int, accuracy: float, baseline: float) -> RunRecord:
        return RunRecord(
            arch,
            seed,
            tmp_path / f"{arch}-s{seed}",
            "trained",
            test={"accuracy": accuracy, "loss": 1.0 - accuracy},
            val={"accuracy": accuracy},
            train={"accuracy": min(1.0, accuracy + 0.2)},
            parameters=100,
            seconds=2.0 + seed,
            baselines={"statnn": {"accuracy": baseline}},
        )

    records = [
        run("dws", 0, 0.5, 0.3),
        run("dws", 1, 0.7, 0.4),
        run("mlp", 0, 0.6, 0.9),  # the baseline of seed 0 was already taken from dws
        RunRecord("mlp", 1, tmp_path / "mlp-s1", "failed", error="training diverged"),
    ]
    metrics = metric_names(records, "accuracy")
    summary = summarise(records, ["dws", "mlp"], metrics, 2)
    assert [row["system"] for row in summary] == ["dws", "mlp", "baseline:statnn"]
    assert summary[0]["mean"]["accuracy"] == pytest.approx(0.6)
    assert summary[0]["std"]["accuracy"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert summary[1]["runs"] == 1 and math.isnan(summary[1]["std"]["accuracy"])
    assert summary[2]["mean"]["accuracy"] == pytest.approx(0.35)
    base, _ = load_compare_config(write_config(tmp_path / "c.yaml", small_inr_zoo))
    result = CompareResult(
        "tiny",
        "inr-classify",
        "accuracy",
        True,
        metrics,
        ["dws", "mlp"],
        2,
        tmp_path,
        records,
        summary,
        {},
    )
    _, rows = _table(markdown(result, base, plan_runs(base, ["dws", "mlp"], 2, tmp_path)))
    assert rows == [
        ["dws", "**0.6000 ± 0.1414**", "0.8000 ± 0.1414", "100", "2.5 ± 0.7", "2/2"],
        # a tie: both bold; one run: no std
        ["mlp", "**0.6000**", "0.8000", "100", "2.0", "1/2"],
        # the trainer's baselines have no training-sample metric
        ["baseline:statnn", "0.3500 ± 0.0707", "n/a", "n/a", "n/a", "2/2"],
    ]
    table = list(csv.DictReader(io.StringIO(csv_text(result))))
    assert [(r["arch"], r["seed"], r["status"]) for r in table] == [
        ("dws", "0", "trained"),
        ("dws", "1", "trained"),
        ("mlp", "0", "trained"),
        ("mlp", "1", "failed"),
        ("baseline:statnn", "0", "fitted"),
        ("baseline:statnn", "1", "fitted"),
        *(
            (system, stat, "")
            for system in ("dws", "mlp", "baseline:statnn")
            for stat in ("mean", "std")
        ),
    ]
    assert table[3]["error"] == "training diverged" and table[3]["test_accuracy"] == ""


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[2] / "configs" / "compare").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_committed_compare_configs_plan(
    path: Path, small_inr_zoo: Path, da_zoo: Path, tmp_path: Path
) -> None:
    """Every committed compare config parses (its zoo pointed at a tiny zoo of the same kind)
    and plans a valid run for each arch it names."""
    from dwscli.compare.plan import check_model_kinds, check_reused, parse_compare_section
    from dwscli.train.config import TrainConfig

    data = yaml.safe_load(path.read_text())
    assert data["zoo"].startswith("zoos/")
    section = parse_compare_section(data.pop("compare"), str(path))
    tiny = small_inr_zoo if "inr" in data["zoo"] else da_zoo
    base = TrainConfig.from_dict({**data, "zoo": str(tiny)}, source=str(path))
    assert section.archs and set(section.archs) <= set(ARCHS)
    check_model_kinds(base, section.archs)  # what dws compare checks before any training
    runs = plan_runs(
        base,
        section.archs,
        1,
        tmp_path / "out",
        models=section.models,
        train_overrides=section.train,
    )
    assert [r.arch for r in runs] == list(section.archs)
    assert all(r.config.task.name == base.task.name for r in runs)
    for arch, reused in (section.reuse or {}).items():  # a reused config is the compared run
        other = yaml.safe_load(reused.read_text())
        other = TrainConfig.from_dict({**other, "zoo": str(tiny)}, source=str(reused))
        run = next(r for r in runs if r.arch == arch)
        check_reused(other, run.config, str(path))


def test_finished_runs_saved_before_an_option_existed_still_count_when_it_is_at_its_old_value(
    tmp_path: Path,
) -> None:
    """A saved config that predates an option matches when the option's current value is what
    its absence meant (input-unit mixing off, no clean-image loss, no recalibrated norm
    statistics), and not otherwise; a saved config without ``head_norm`` means un-normalised
    heads, so today's default does not match."""
    from dwscli.compare.runner import config_matches
    from dwscli.train import TrainConfig

    def config(model: dict[str, Any], task: dict[str, Any], **train: Any) -> TrainConfig:
        return TrainConfig.from_dict(
            {
                "name": "run",
                "task": {"name": "adapt", **task},
                "zoo": str(tmp_path / "zoo"),
                "output": str(tmp_path / "out"),
                "model": {"arch": "dws", **model},
                "train": {"epochs": 1, **train},
            }
        )

    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "zoo.json").write_text("{}")  # the config only checks that it exists
    current = config({}, {})
    saved = json.loads(json.dumps(current.to_dict()))
    del saved["model"]["input_mixing"], saved["task"]["clean_weight"]
    del saved["model"]["input_templates"]
    assert config_matches(saved, current)
    assert not config_matches(saved, config({"input_mixing": 4}, {}))
    assert not config_matches(saved, config({"input_templates": 16}, {}))
    assert not config_matches(saved, config({}, {"clean_weight": 1.0}))
    del saved["model"]["head_norm"]
    assert not config_matches(saved, current)  # absent: "none"; today's default: "batch"
    assert config_matches(saved, config({"head_norm": "none"}, {}))
    # runs saved before evaluations recalibrated the head norm's statistics kept a trailing
    # average: today's default does not match them, the option turned off does
    saved = json.loads(json.dumps(current.to_dict()))
    del saved["train"]["recalibrate_norms"]
    assert not config_matches(saved, current)
    assert config_matches(saved, config({}, {}, recalibrate_norms=False))
