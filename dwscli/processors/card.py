"""The processor card: the contract between training a processor and running it.

A processor is two files side by side: ``<name>.safetensors`` (the model's weights) and
``<name>.yaml``, its card. The trainer writes the card (:func:`dwscli.train.card.write_processor`);
``dws processors``, every processor command and ``dws compare`` read it, all through
:class:`ProcessorCard`. A card is checked when it is read: an unknown key, a missing required
key or a value of the wrong type is a one-line error naming the file and the key.

The sections, in the order a card is written::

    name: fmnist-accuracy            # default: the file name
    version: '2'
    task: accuracy                   # the training task (dwscli.train.tasks)
    target_domain: contrast          # task adapt only
    edit: {op: erode, size: 3}       # task inr-edit only
    default_for: {task: accuracy}    # the processor commands use it when none is named
    description: ...
    model: {kind: invariant, arch: dws, parameters: 553521, config: {...}}
    output: {type: scalar, target: metrics.test_acc}        # what the output means
    input: {spec: 196-32-32-10:relu, widths: [...], activation: relu, zoo_kind: classifier,
            dataset: fashion-mnist, preprocessing: {...}}   # 'conventions' for INRs
    normalization: {...}             # what the model's input normalisation was fitted on
    ood: {threshold: ..., centre: {...}, scale: {...}, ...}   # optional: what the training
                                     # nets looked like, to flag inputs unlike them
    training: {zoo: {...}, config: {...}, epochs_run: 15, best_epoch: 11, ...}
    metrics: {val: {...}, test: {...}, baselines: {statnn: {test: {...}}}}

``default_for`` says which requests the processor answers when the user names none: a task,
and optionally the data set of the input (``dataset``) or the edit (``op``). ``fallback: true``
marks the one to use when the input records no data set.

Reading a card needs pyyaml but not torch, so ``dws processors`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dwscli.errors import DwsError
from dwscli.schema import build_section, check_keys
from dwscli.weights.spec import MLPSpec

ModelKind = Literal["invariant", "equivariant"]

#: The training tasks a processor can come from (``dwscli.train.tasks.TASKS``, which a test
#: keeps equal to this), listed here so that reading cards does not import torch.
TASK_NAMES = ("accuracy", "adapt", "embed", "inr-classify", "inr-edit")

#: The order of a card's keys on disk.
KEY_ORDER = (
    "name",
    "version",
    "task",
    "target_domain",
    "edit",
    "default_for",
    "description",
    "model",
    "output",
    "input",
    "normalization",
    "ood",
    "training",
    "metrics",
)


@dataclass(frozen=True)
class ModelSection:
    """``model:``: which architecture, built for which kind, with which options."""

    kind: ModelKind
    arch: str = "dws"
    parameters: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputSection:
    """``input:``: the networks the processor takes and how their data was read."""

    spec: str
    widths: list[int] | None = None
    activation: str | None = None
    zoo_kind: str | None = None
    dataset: str | None = None
    preprocessing: dict[str, Any] | None = None  # classifier zoos
    conventions: dict[str, Any] | None = None  # INR zoos: grid, coordinate range, ...


@dataclass(frozen=True)
class DefaultFor:
    """``default_for:``: the requests this processor answers when the user names none."""

    task: str
    dataset: str | None = None
    op: str | None = None
    fallback: bool = False  # also the default when the input records no data set


@dataclass(frozen=True)
class ProcessorCard:
    """A processor's card, checked; :attr:`path` is where it was read from (not written)."""

    name: str
    task: str
    model: ModelSection
    input: InputSection
    version: str = "0"
    target_domain: str | None = None
    edit: dict[str, Any] | None = None
    default_for: DefaultFor | None = None
    description: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] | None = None  # the training nets' statistics (dwscli.processors.ood)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    # -- what the commands ask of a card ---------------------------------------------------

    @property
    def spec(self) -> MLPSpec:
        return MLPSpec.parse(self.input.spec)

    @property
    def input_spec(self) -> str:
        return self.input.spec

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def weights_path(self) -> Path | None:
        """``<name>.safetensors`` beside the card, when the card came from a file."""
        return None if self.path is None else self.path.with_suffix(".safetensors")

    @property
    def output_type(self) -> str | None:
        value = self.output.get("type")
        return None if value is None else str(value)

    def fits(self, spec: MLPSpec) -> bool:
        """True when ``spec`` has this processor's depth, input/output widths and activation.

        Hidden widths may differ: the layers are defined for any hidden width.
        """
        own = self.spec
        return own.fixed_dims_match(spec) and own.activation == spec.activation

    def is_default_for(
        self, task: str, *, dataset: str | None = None, op: str | None = None
    ) -> bool:
        """Whether this processor answers ``task`` (for ``dataset``, with ``op``) by default."""
        wanted = self.default_for
        if wanted is None or wanted.task != task or (op is not None and wanted.op != op):
            return False
        if dataset is None:
            return wanted.dataset is None or wanted.fallback
        return wanted.dataset in (None, dataset)

    def to_dict(self) -> dict[str, Any]:
        """What ``dws processors --json`` shows of a card."""
        return {
            "name": self.name,
            "task": self.task,
            "version": self.version,
            "target_domain": self.target_domain,
            "input_spec": self.input.spec,
            "metrics": self.metrics,
            "path": None if self.path is None else str(self.path),
        }

    # -- reading and writing ---------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Any, *, path: Path | None = None) -> ProcessorCard:
        """A checked card from a YAML mapping; mistakes are one-line errors naming ``path``."""
        source = str(path) if path is not None else "processor card"
        if not isinstance(data, Mapping):
            raise DwsError(f"{source}: a processor card must be a YAML mapping")
        keys = [f.name for f in dataclasses.fields(cls) if f.name != "path"]
        check_keys(data, keys, "", source)
        values = dict(data)
        if values.get("name") is None and path is not None:
            values["name"] = path.stem
        for key in ("name", "task", "model", "input"):
            if values.get(key) is None:
                raise DwsError(f"{source}: {key}: missing required key")
        if isinstance(values.get("version"), (int, float)) and not isinstance(
            values["version"], bool
        ):
            values["version"] = str(values["version"])
        sections = {
            "model": ModelSection,
            "input": InputSection,
            "default_for": DefaultFor,
        }
        for key, section in sections.items():
            if values.get(key) is not None:
                values[key] = build_section(section, values[key], prefix=f"{key}.", source=source)
        card = build_section(cls, values, prefix="", source=source, extra={"path": path})
        _check_mappings(card, "", source)
        _check_mappings(card.model, "model.", source)
        _check_mappings(card.input, "input.", source)
        try:
            MLPSpec.parse(card.input.spec)
        except DwsError as error:
            raise DwsError(f"{source}: input.spec: {error.message}", hint=error.hint) from error
        return card

    @classmethod
    def read(cls, path: str | Path) -> ProcessorCard:
        """Read and check the card at ``path`` (through the bounded YAML reader)."""
        from dwscli.safe_yaml import load_yaml_file

        card_path = Path(path)
        data = load_yaml_file(card_path, "processor card")
        return cls.from_mapping(data, path=card_path)

    def to_mapping(self) -> dict[str, Any]:
        """The card as plain YAML types, in the written order; unset optional keys left out."""
        data: dict[str, Any] = {}
        for key in KEY_ORDER:
            value = getattr(self, key)
            if value is None and key != "description":
                continue
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)  # type: ignore[arg-type]
                if key == "default_for":
                    value = default_for_mapping(self.default_for)  # type: ignore[arg-type]
                if key == "input":  # a classifier zoo's preprocessing or an INR's conventions
                    value = {
                        k: v
                        for k, v in value.items()
                        if v is not None or k not in ("preprocessing", "conventions")
                    }
            data[key] = value
        return json.loads(json.dumps(data, default=str))  # plain types only (no str subclasses)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_mapping(), sort_keys=False, allow_unicode=True, width=100)


def default_for_mapping(default_for: DefaultFor) -> dict[str, Any]:
    """``default_for`` as written: the keys that are set."""
    return {k: v for k, v in dataclasses.asdict(default_for).items() if v not in (None, False)}


def _check_mappings(section: Any, prefix: str, source: str) -> None:
    """Fields typed as mappings hold mappings (the schema leaves them to their owner)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if "dict[" in str(f.type) and value is not None and not isinstance(value, Mapping):
            raise DwsError(
                f"{source}: {prefix}{f.name}: expected a mapping, got {type(value).__name__}"
            )


def read_card(path: str | Path) -> ProcessorCard:
    """Read and check one processor card (YAML)."""
    return ProcessorCard.read(path)


__all__ = [
    "DefaultFor",
    "InputSection",
    "ModelSection",
    "ProcessorCard",
    "default_for_mapping",
    "read_card",
]
