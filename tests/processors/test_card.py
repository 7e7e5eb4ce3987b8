"""The processor card: every shipped card reads, round-trips and names the defaults the commands
use; a card with a mistake is a one-line error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dwscli.errors import DwsError
from dwscli.processors.card import ProcessorCard
from dwscli.processors.registry import PROCESSORS_DIR, default_processor, list_processors

SHIPPED = sorted(PROCESSORS_DIR.glob("*.yaml"))
#: What the commands ask for when no processor is named, and who answers.
DEFAULTS = [
    (("accuracy", None, None), "fmnist-accuracy"),
    (("adapt", None, None), "fmnist-adapt-contrast"),
    (("inr-classify", "mnist", None), "mnist-inr-classify"),
    (("inr-classify", "fashion-mnist", None), "fmnist-inr-classify"),
    (("inr-classify", None, None), "mnist-inr-classify"),  # the INR records no data set
    (("inr-edit", None, "dilate"), "mnist-inr-dilate"),
    (("inr-edit", None, "erode"), "mnist-inr-erode"),
    (("inr-edit", None, "invert"), "mnist-inr-invert"),
    (("embed", None, None), "sine-embed"),
]
MINIMAL = "task: accuracy\nmodel: {kind: invariant}\ninput: {spec: 4-8-3:relu}\n"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_cards_read_and_write_back_unchanged(path: Path) -> None:
    card = ProcessorCard.read(path)
    assert card.name == path.stem and card.weights_path is not None
    assert card.weights_path.is_file()
    assert card.to_yaml() == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("request_", "name"), DEFAULTS, ids=lambda v: str(v))
def test_every_default_is_shipped(request_: tuple, name: str) -> None:
    task, dataset, op = request_
    assert default_processor(task, dataset=dataset, op=op).name == name


def test_an_unshipped_default_is_an_error_not_a_guess() -> None:
    with pytest.raises(DwsError, match="no shipped processor does inr-edit with op sharpen"):
        default_processor("inr-edit", op="sharpen")
    with pytest.raises(DwsError, match="no shipped processor does inr-classify on cifar10"):
        default_processor("inr-classify", dataset="cifar10")


def test_a_minimal_card_has_defaults(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(MINIMAL)
    card = ProcessorCard.read(path)
    assert (card.name, card.version, card.model.arch, card.default_for) == (
        "tiny",
        "0",
        "dws",
        None,
    )
    assert [c.name for c in list_processors(tmp_path)] == ["tiny"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "colour: red\n", "colour: unknown key"),
        (MINIMAL + "default_for: {task: accuracy, datasets: [mnist]}\n", "default_for.datasets"),
        ("task: accuracy\ninput: {spec: 4-8-3:relu}\n", "model: missing required key"),
        ("model: {kind: invariant}\ninput: {spec: 4-8-3:relu}\n", "task: missing required key"),
        (MINIMAL.replace("invariant", "sideways"), "model.kind: expected one of"),
        (MINIMAL.replace("4-8-3:relu", "4-x-3"), "input.spec"),
        (MINIMAL + "metrics: [0.9]\n", "metrics: expected a mapping"),
        (MINIMAL.replace("{kind: invariant}", "{kind: invariant, config: 3}"), "model.config"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("task: [unclosed\n", "not valid YAML"),
    ],
)
def test_card_mistakes_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DwsError, match=message) as info:
        ProcessorCard.read(path)
    assert str(path) in str(info.value) and "\n" not in info.value.message
