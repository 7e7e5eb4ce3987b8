"""``dws adapt --target DOMAIN``: the shipped adapt processor picked by its card's target domain.

The processors folder is replaced by a temporary one holding copies of the shipped contrast
processor under other names and domains (the same weights: a card's domain is only a label to
the code), so the tests do not depend on which adapt processors ship.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.errors import DwsError
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet
from dwscli.processors import registry
from dwscli.processors.registry import (
    adapt_domains,
    adapt_processor_for,
    adapt_processors_for,
    check_adapt_domain,
)
from dwscli.weights.checkpoint import load_checkpoint, save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SHIPPED = registry.PROCESSORS_DIR
CONTRAST = "fmnist-adapt-contrast"
FMNIST = MLPSpec.parse("196-32-32-10:relu")
#: name -> target_domain of the copies (the contrast one is the shipped card as it is)
DOMAINS = {
    "fmnist-adapt-rotation": "rotation:30",
    "fmnist-adapt-noise": "gaussian-noise:0.5",
    "fmnist-adapt-blur": "blur:1.5",
    "fmnist-adapt-rot-noise": "rotation:30+gaussian-noise:0.2",
}
SMALL = MLPSpec.parse("12-8-8-4:relu")


def dws(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def copy_card(folder: Path, name: str, **changes: object) -> Path:
    """The shipped contrast processor as ``name``: its weights, its card with ``changes``
    (``default_for=None`` drops the default; ``spec`` replaces the input spec)."""
    data = yaml.safe_load((SHIPPED / f"{CONTRAST}.yaml").read_text(encoding="utf-8"))
    data["name"] = name
    data.pop("default_for")
    for key, value in changes.items():
        if key == "spec":
            data["input"]["spec"] = value
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    shutil.copyfile(SHIPPED / f"{CONTRAST}.safetensors", folder / f"{name}.safetensors")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A processors folder with the contrast processor (the default) and four more domains."""
    folder = tmp_path / "processors"
    folder.mkdir()
    for suffix in (".yaml", ".safetensors"):
        shutil.copyfile(SHIPPED / f"{CONTRAST}{suffix}", folder / f"{CONTRAST}{suffix}")
    for name, domain in DOMAINS.items():
        copy_card(folder, name, target_domain=domain)
    monkeypatch.setattr(registry, "PROCESSORS_DIR", folder)
    return folder


# ------------------------------------------------------------------------------------------------
# resolution (registry)


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("rotation", "fmnist-adapt-rotation"),
        ("contrast", CONTRAST),
        ("blur", "fmnist-adapt-blur"),
        ("gaussian-noise", "fmnist-adapt-noise"),
        ("rotation+gaussian-noise", "fmnist-adapt-rot-noise"),
    ],
)
def test_a_domain_without_severity_matches_by_name(shipped: Path, target: str, name: str) -> None:
    assert adapt_processor_for(target).name == name
    assert [card.name for card in adapt_processors_for(target)] == [name]


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("rotation:30", "fmnist-adapt-rotation"),
        ("contrast:0.80", CONTRAST),
        ("blur:1.5", "fmnist-adapt-blur"),
        ("rotation:30+gaussian-noise:0.2", "fmnist-adapt-rot-noise"),
        ("rotation:30+gaussian-noise", "fmnist-adapt-rot-noise"),  # severity per part
    ],
)
def test_a_domain_with_severity_matches_exactly(shipped: Path, target: str, name: str) -> None:
    assert adapt_processor_for(target).name == name


@pytest.mark.parametrize(
    "target",
    ["rotation:45", "contrast:0.5", "blur:3", "gaussian-noise+rotation", "rotation:30+blur"],
)
def test_a_different_severity_or_order_does_not_match(shipped: Path, target: str) -> None:
    with pytest.raises(DwsError, match="no shipped adapt processor for domain"):
        adapt_processor_for(target)


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("noise", "fmnist-adapt-noise"),
        ("NOISE:0.5", "fmnist-adapt-noise"),
        ("Gaussian_Noise", "fmnist-adapt-noise"),
        ("gaussian-blur", "fmnist-adapt-blur"),
        ("Rotate:30", "fmnist-adapt-rotation"),
        ("rotate+noise", "fmnist-adapt-rot-noise"),
    ],
)
def test_aliases_and_case_are_accepted(shipped: Path, target: str, name: str) -> None:
    assert adapt_processor_for(target).name == name


def test_a_card_without_severity_means_the_default_severity(shipped: Path) -> None:
    """Training with ``contrast`` used the default severity, so ``contrast:0.5`` asks for it."""
    copy_card(shipped, "plain-contrast", target_domain="contrast")
    assert adapt_processor_for("contrast:0.5").name == "plain-contrast"
    assert adapt_processor_for("contrast:0.8").name == CONTRAST


def test_no_match_names_the_shipped_domains(shipped: Path) -> None:
    with pytest.raises(DwsError) as caught:
        adapt_processor_for("blur:3")
    assert caught.value.message == (
        "no shipped adapt processor for domain 'blur:3'; shipped domains: blur:1.5, "
        "contrast:0.8, gaussian-noise:0.5, rotation:30, rotation:30+gaussian-noise:0.2"
    )
    assert adapt_domains() == {CONTRAST: "contrast:0.8", **DOMAINS}


def test_several_matches_prefer_the_fitting_spec_then_the_default(shipped: Path) -> None:
    # cards only: the registry reads no weights, so a card may claim another spec here
    copy_card(shipped, "a-contrast", target_domain="contrast:0.8")
    copy_card(shipped, "a-mnist-contrast", target_domain="contrast:0.8", spec="784-64-10:relu")
    mnist = MLPSpec.parse("784-128-10:relu")
    assert adapt_processor_for("contrast").name == CONTRAST  # the default before the names
    assert adapt_processor_for("contrast", FMNIST).name == CONTRAST
    assert adapt_processor_for("contrast", mnist).name == "a-mnist-contrast"  # fits beats default
    assert [c.name for c in adapt_processors_for("contrast")] == [
        CONTRAST,
        "a-contrast",
        "a-mnist-contrast",
    ]
    copy_card(shipped, "a-rotation", target_domain="rotation:30", spec="784-64-10:relu")
    # no default among the rotation ones: the fitting one, else the first by name
    assert adapt_processor_for("rotation", FMNIST).name == "fmnist-adapt-rotation"
    assert adapt_processor_for("rotation").name == "a-rotation"
    # nothing fits: the first in preference order (the file is then refused for its spec)
    assert adapt_processor_for("contrast", MLPSpec.parse("5-8-3:relu")).name == CONTRAST


def test_a_bad_domain_is_an_error_naming_the_card_or_the_request(shipped: Path) -> None:
    with pytest.raises(DwsError, match="bad target domain 'sparkle': unknown corruption"):
        adapt_processor_for("sparkle")
    bad = copy_card(shipped, "odd", target_domain="sparkle:2")
    with pytest.raises(
        DwsError, match=re.escape(f"{bad}: target_domain: unknown corruption 'sparkle'")
    ):
        adapt_processor_for("rotation")


def test_a_named_processor_must_agree_with_the_target(shipped: Path) -> None:
    card = registry.find_processor(CONTRAST)
    check_adapt_domain(card, "contrast")
    check_adapt_domain(card, "Contrast:0.8")
    with pytest.raises(DwsError, match=re.escape("adapts to contrast:0.8, not to 'rotation'")):
        check_adapt_domain(card, "rotation")
    with pytest.raises(DwsError, match=re.escape("adapts to contrast:0.8, not to 'contrast:0.5'")):
        check_adapt_domain(card, "contrast:0.5")


# ------------------------------------------------------------------------------------------------
# the command


def test_cli_target_picks_the_processor_and_records_it(shipped: Path, tmp_path: Path) -> None:
    out = tmp_path / "rotated.safetensors"
    result = dws("adapt", "example:fmnist-mlp", "--target", "rotate", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    metadata = load_checkpoint(out).metadata
    assert metadata["dws.processor"] == "fmnist-adapt-rotation"
    assert metadata["dws.target_domain"] == "rotation:30"


def test_cli_no_match_is_one_line_listing_the_domains(shipped: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.safetensors"
    result = dws("adapt", "example:fmnist-mlp", "--target", "blur:3", "-o", str(out))
    assert_one_line_error(
        result,
        "no shipped adapt processor for domain 'blur:3'; shipped domains: blur:1.5, contrast:0.8",
    )
    assert not out.exists()
    result = dws("adapt", "example:fmnist-mlp", "--target", "sparkle", "-o", str(out))
    assert_one_line_error(result, "bad target domain 'sparkle'")


def test_cli_processor_and_target_must_agree(shipped: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.safetensors"
    args = ["adapt", "example:fmnist-mlp", "-o", str(out), "-p", CONTRAST]
    assert_one_line_error(
        dws(*args, "--target", "rotation"),
        "processor fmnist-adapt-contrast adapts to contrast:0.8, not to 'rotation'",
    )
    assert not out.exists()
    result = dws(*args, "--target", "contrast:0.8")
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(out).metadata["dws.processor"] == CONTRAST
    # a card given by path is checked the same way
    rotation = str(shipped / "fmnist-adapt-rotation.yaml")
    assert_one_line_error(
        dws(
            "adapt", "example:fmnist-mlp", "-o", str(out), "-f", "-p", rotation, "--target", "blur"
        ),
        "processor fmnist-adapt-rotation adapts to rotation:30, not to 'blur'",
    )


def _small_rotation_processor(folder: Path) -> None:
    """A tiny adapt processor for 12-*-*-4 nets, also for ``rotation:30``."""
    torch.manual_seed(0)
    config = DWSNetConfig(hidden_channels=4, num_layers=2, head_hidden=[8], output_init_scale=1.0)
    model = EquivariantDWSNet(SMALL, config)
    model.normalizer.fit(WeightSpace.random(SMALL, 32))
    safetensors.torch.save_file(model.state_dict(), str(folder / "small-rotation.safetensors"))
    card = {
        "name": "small-rotation",
        "task": "adapt",
        "target_domain": "rotation:30",
        "model": {"kind": "equivariant", "arch": "dws", "config": config.to_dict()},
        "input": {"spec": str(SMALL)},
    }
    (folder / "small-rotation.yaml").write_text(yaml.safe_dump(card), encoding="utf-8")


def test_cli_target_sends_each_input_to_the_processor_that_fits_it(
    shipped: Path, tmp_path: Path
) -> None:
    _small_rotation_processor(shipped)
    small = tmp_path / "small.safetensors"
    save_space(small, WeightSpace.random(SMALL, 1, generator=torch.Generator().manual_seed(1)))
    out = tmp_path / "out"
    result = dws(
        "adapt", "example:fmnist-mlp", str(small), "--target", "rotation", "--out-dir", str(out)
    )
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(out / "fmnist-mlp.safetensors").metadata["dws.processor"] == (
        "fmnist-adapt-rotation"
    )
    adapted_small = load_checkpoint(out / "small.safetensors")
    assert adapted_small.metadata["dws.processor"] == "small-rotation"
    assert adapted_small.spec == SMALL
    assert not torch.allclose(adapted_small.space.flatten(), load_checkpoint(small).space.flatten())


def test_processors_lists_the_domains(shipped: Path) -> None:
    rows = json.loads(dws("processors", "--json").stdout)
    assert {row["name"]: row["target_domain"] for row in rows} == {
        CONTRAST: "contrast:0.8",
        **DOMAINS,
    }
    table = dws("processors", "--task", "adapt").stdout
    assert "domain" in table
    for domain in ("contrast:0.8", "rotation:30", "blur:1.5", "gaussian-noise:0.5"):
        assert domain in table, table
    adapt_only = json.loads(dws("processors", "--task", "adapt", "--json").stdout)
    assert len(adapt_only) == len(DOMAINS) + 1
    result = dws("processors", "--task", "accuracy", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert "no accuracy processors shipped" in result.stderr


def test_processors_domain_is_empty_for_other_tasks() -> None:
    rows = {row["name"]: row for row in json.loads(dws("processors", "--json").stdout)}
    assert rows["fmnist-accuracy"]["target_domain"] is None
    assert rows[CONTRAST]["target_domain"] == "contrast:0.8"
    assert "contrast:0.8" in dws("processors").stdout
    accuracy_only = dws("processors", "--task", "accuracy").stdout
    assert "fmnist-accuracy" in accuracy_only and "domain" not in accuracy_only  # no empty column


# ------------------------------------------------------------------------------------------------
# the shipped processor, through the command and the library


def test_target_contrast_gives_what_the_named_processor_gives(tmp_path: Path) -> None:
    from dwscli import api

    by_name, by_target = tmp_path / "p.safetensors", tmp_path / "t.safetensors"
    result = dws("adapt", "example:fmnist-mlp", "-p", CONTRAST, "-o", str(by_name))
    assert result.exit_code == 0, result.stderr
    result = dws("adapt", "example:fmnist-mlp", "--target", "contrast", "-o", str(by_target))
    assert result.exit_code == 0, result.stderr
    rows = api.adapt("example:fmnist-mlp", target="contrast", output=tmp_path / "api.safetensors")
    assert rows[0]["output"] == str(tmp_path / "api.safetensors")
    reference = load_checkpoint(by_name)
    for path in (by_target, tmp_path / "api.safetensors"):
        adapted = load_checkpoint(path)
        assert adapted.metadata["dws.processor"] == CONTRAST
        assert all(
            torch.equal(a, b) for a, b in zip(reference.space.weights, adapted.space.weights)
        )
        assert all(torch.equal(a, b) for a, b in zip(reference.space.biases, adapted.space.biases))
    assert api.adapt_domains()[CONTRAST] == "contrast:0.8"


def test_processors_refuses_an_unknown_task() -> None:
    """A misspelt task is an error naming the tasks, not an empty listing."""
    assert_one_line_error(dws("processors", "--task", "adpat"), "unknown task 'adpat'", "adapt")


def test_card_task_names_are_the_trainers_tasks() -> None:
    from dwscli.processors.card import TASK_NAMES
    from dwscli.train.tasks import TASKS

    assert sorted(TASK_NAMES) == sorted(TASKS)
