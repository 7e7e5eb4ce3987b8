"""The shipped processors: ``<name>.yaml`` cards and ``<name>.safetensors`` weights in this folder.

A card is YAML with at least::

    name: mnist-inr-classifier      # defaults to the file name
    task: inr-classification
    version: 1
    input_spec: "2-32-32-1:sine;w0=30"   # or  input: {spec: "...", dataset: ..., ...}
    metrics: {test_accuracy: 0.86}       # or  metrics: {test: {accuracy: 0.86}}

Reading cards needs pyyaml but not torch, so ``dws processors`` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwscli.errors import DwsError
from dwscli.weights.spec import MLPSpec

PROCESSORS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ProcessorCard:
    """What ``dws processors`` lists: a shipped processor and the networks it accepts."""

    name: str
    task: str
    input_spec: str
    version: str = "0"
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def spec(self) -> MLPSpec:
        return MLPSpec.parse(self.input_spec)

    @property
    def weights_path(self) -> Path | None:
        """``<name>.safetensors`` beside the card, when the card came from a file."""
        return None if self.path is None else self.path.with_suffix(".safetensors")

    def fits(self, spec: MLPSpec) -> bool:
        """True when ``spec`` has this processor's depth, input/output widths and activation.

        Hidden widths may differ: DWS layers are defined for any hidden width.
        """
        own = self.spec
        return own.fixed_dims_match(spec) and own.activation == spec.activation

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "version": self.version,
            "input_spec": self.input_spec,
            "metrics": self.metrics,
            "path": None if self.path is None else str(self.path),
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, path: Path | None = None) -> ProcessorCard:
        where = str(path) if path is not None else "processor card"
        name = data.get("name") or (path.stem if path is not None else None)
        task = data.get("task")
        spec_text = data.get("input_spec")
        input_section = data.get("input")
        if spec_text is None and isinstance(input_section, Mapping):
            spec_text = input_section.get("spec")
        if not name or not task or not spec_text:
            missing = [
                k for k, v in (("name", name), ("task", task), ("input_spec", spec_text)) if not v
            ]
            raise DwsError(f"{where}: card lacks {', '.join(missing)}")
        metrics = data.get("metrics") or {}
        if not isinstance(metrics, Mapping):
            raise DwsError(f"{where}: 'metrics' must be a mapping, got {type(metrics).__name__}")
        try:
            MLPSpec.parse(str(spec_text))
        except DwsError as error:
            raise DwsError(f"{where}: {error.message}", hint=error.hint) from error
        return cls(
            name=str(name),
            task=str(task),
            input_spec=str(spec_text),
            version=str(data.get("version", "0")),
            metrics=dict(metrics),
            path=path,
            raw=dict(data),
        )


def load_card(path: str | Path) -> ProcessorCard:
    """Read one processor card (YAML)."""
    from dwscli.safe_yaml import load_yaml_file

    card_path = Path(path)
    data = load_yaml_file(card_path, "processor card")
    if not isinstance(data, Mapping):
        raise DwsError(f"{card_path}: a processor card must be a YAML mapping")
    return ProcessorCard.from_mapping(data, path=card_path)


def list_processors(directory: str | Path | None = None) -> list[ProcessorCard]:
    """Cards of the processors shipped in ``directory`` (default: this package folder), by name."""
    folder = PROCESSORS_DIR if directory is None else Path(directory)
    cards = [load_card(p) for p in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))]
    return sorted(cards, key=lambda card: card.name)


def fitting_processors(
    spec: MLPSpec, cards: list[ProcessorCard] | None = None
) -> list[ProcessorCard]:
    """The shipped processors that accept networks of ``spec``."""
    return [card for card in (list_processors() if cards is None else cards) if card.fits(spec)]


def find_processor(name: str, directory: str | Path | None = None) -> ProcessorCard:
    """The shipped processor called ``name``."""
    cards = list_processors(directory)
    for card in cards:
        if card.name == name:
            return card
    names = ", ".join(card.name for card in cards) or "none shipped yet"
    raise DwsError(f"no processor named {name!r}", hint=f"available: {names}")


__all__ = [
    "PROCESSORS_DIR",
    "ProcessorCard",
    "find_processor",
    "fitting_processors",
    "list_processors",
    "load_card",
]
