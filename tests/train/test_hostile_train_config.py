"""Hostile training configs (alias bombs, binary, deep nesting, NaN) fail fast, in one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.errors import DwsError
from dwscli.safe_yaml import expanded_size, load_yaml_text, short_repr
from dwscli.train.config import TrainConfig


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level is a list of nine aliases to the one before."""
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        text += f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]\n"
    return text


@pytest.mark.parametrize("key", ["name", "description", "zoo"])
def test_alias_bomb_in_a_config_key_is_refused_quickly(tmp_path: Path, key: str) -> None:
    config = tmp_path / "bomb.yaml"
    rest = {"name": "x", "task": "accuracy", "zoo": "z"}
    rest[key] = "*a8"
    config.write_text(alias_bomb() + "".join(f"{k}: {v}\n" for k, v in rest.items()))
    start = time.perf_counter()
    with pytest.raises(DwsError, match="DWS_MAX_CONFIG_NODES"):
        TrainConfig.from_yaml(config)
    assert time.perf_counter() - start < 5
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 1
    assert "DWS_MAX_CONFIG_NODES" in result.output and "internal error" not in result.output
    assert len(result.output) < 400


def test_expansion_is_counted_without_expanding() -> None:
    import yaml

    node = yaml.compose(alias_bomb(4), Loader=yaml.SafeLoader)
    # 4 keys + 1 mapping; a0 = 10 nodes; a1 = 1 + 9*10; a2 = 1 + 9*91; a3 = 1 + 9*820
    assert expanded_size(node, 10**9) == 1 + 4 + 10 + 91 + 820 + 7381
    assert expanded_size(node, 100) == 101  # stops counting past the bound


def test_limit_is_raised_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWS_MAX_CONFIG_NODES", "10000000")
    data = load_yaml_text(alias_bomb(6), "cfg")
    assert len(data["a5"]) == 9


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(DwsError, match="refers to itself"):
        load_yaml_text("a: &a [*a]\n", "cfg")


def test_error_message_does_not_format_huge_values(tmp_path: Path) -> None:
    assert len(short_repr(["x"] * 10**6)) < 60
    assert len(short_repr("y" * 10**6)) <= 60
    config = tmp_path / "long.yaml"
    config.write_text("name: [" + ", ".join(["1"] * 5000) + "]\ntask: accuracy\nzoo: z\n")
    with pytest.raises(DwsError) as caught:
        TrainConfig.from_yaml(config)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00\x01binary", "not UTF-8"),
        (b"name: x\x00\n", "NUL"),
        (("name: " + "[" * 100_000 + "]" * 100_000 + "\n").encode(), "nested too deeply"),
    ],
)
def test_unreadable_configs_are_one_line_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 1, result.output
    assert message in result.output and "internal error" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_config_file_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWS_MAX_CONFIG_BYTES", "100")
    config = tmp_path / "big.yaml"
    config.write_text("name: x\ntask: accuracy\nzoo: z\ndescription: " + "d" * 200 + "\n")
    with pytest.raises(DwsError, match="DWS_MAX_CONFIG_BYTES"):
        TrainConfig.from_yaml(config)


@pytest.mark.parametrize(
    ("train", "key"),
    [
        ("lr: .nan", "train.lr"),
        ("lr: .inf", "train.lr"),
        ("weight_decay: .nan", "train.weight_decay"),
        ("lr: 'inf'", "train.lr"),
        ("lr: " + "9" * 400, "train.lr"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, train: str, key: str) -> None:
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "zoo.json").write_text("{}")
    config = tmp_path / "c.yaml"
    config.write_text(f"name: x\ntask: accuracy\nzoo: {tmp_path / 'z'}\ntrain:\n  {train}\n")
    with pytest.raises(DwsError, match=key):
        TrainConfig.from_yaml(config)


def test_control_character_in_config_is_one_line_error(tmp_path: Path) -> None:
    """Found by the fuzz suite: PyYAML's reader raised from the loader's constructor."""
    config = tmp_path / "ctrl.yaml"
    config.write_text("\x08")
    with pytest.raises(DwsError, match="not valid YAML"):
        TrainConfig.from_yaml(config)
