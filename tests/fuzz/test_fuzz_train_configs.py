"""Fuzzing training configs: generated YAML (structures, aliases, odd scalars) read by dws."""

from __future__ import annotations

from pathlib import Path

from fuzz_contract import check_contract  # type: ignore[import-not-found]
from hypothesis import given, settings
from hypothesis import strategies as st

from dwscli.errors import DwsError
from dwscli.train.config import TrainConfig

SCALARS = st.sampled_from(
    [
        "x",
        "1",
        "-1",
        "0",
        ".nan",
        ".inf",
        "-.inf",
        "1.0e999",
        "9" * 400,
        "null",
        "true",
        "'1e-3'",
        "[]",
        "{}",
        '"\\x1b[2J"',
        "accuracy",
        "adapt",
        "dws",
    ]
)
KEYS = st.sampled_from(
    ["name", "task", "zoo", "train", "model", "output", "description", "version", "bogus"]
)
TRAIN_KEYS = st.sampled_from(["lr", "epochs", "batch_size", "weight_decay", "seed", "augment"])


@st.composite
def configs(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):  # an alias bomb of random depth and width
        depth, width = draw(st.integers(1, 7)), draw(st.integers(1, 9))
        lines.append('a0: &a0 ["lol"]')
        for level in range(1, depth):
            lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    for key in draw(st.lists(KEYS, max_size=6, unique=True)):
        if key == "train":
            lines.append("train:")
            for sub in draw(st.lists(TRAIN_KEYS, max_size=3, unique=True)):
                lines.append(f"  {sub}: {draw(SCALARS)}")
        elif key == "zoo":
            lines.append("zoo: /nonexistent/zoo")
        else:
            value = draw(st.one_of(SCALARS, st.just("*a0") if lines else SCALARS))
            lines.append(f"{key}: {value}")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.text(max_size=40))  # anything at all
    return text


@settings(settings.get_profile("dws-fuzz"))
@given(text=configs())
def test_generated_configs_are_read_or_refused(text: str, fresh_dir) -> None:
    directory: Path = fresh_dir()
    config = directory / "config.yaml"
    config.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        TrainConfig.from_yaml(config)
    except DwsError as error:
        assert "\n" not in error.message and len(error.message) < 2000
    # the zoo never exists, so a config can never start a training run: always exit 1
    outcome = check_contract(["train", str(config)], directory, [config], label="train config")
    assert outcome.code == 1


@settings(settings.get_profile("dws-fuzz"))
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_as_config(content: bytes, fresh_dir) -> None:
    directory: Path = fresh_dir()
    config = directory / "config.yaml"
    config.write_bytes(content)
    check_contract(["train", str(config)], directory, [config], label="train bytes")
