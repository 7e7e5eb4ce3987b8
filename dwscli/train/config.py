"""The trainer's YAML configuration: :class:`TrainConfig` and its validation.

Example (every key but ``name``, ``task`` and ``zoo`` has a default)::

    name: fmnist-accuracy          # processor name: <output>/<name>.safetensors + .yaml
    version: 1
    task: accuracy                 # or {name: accuracy, target: test_acc, loss: mse}
    zoo: zoos/fmnist-clf           # paths are relative to the working directory
    output: dwscli/processors      # default runs/<name>
    default_for: {task: accuracy}  # the commands use this processor when none is named
    model:
      arch: dws
      hidden_channels: 16
      num_layers: 3
      fixed_mixing: shared
    train:
      epochs: 50
      batch_size: 64               # the global batch: split across torchrun processes
      lr: 1.0e-3
      schedule: cosine             # or constant; both after warmup_steps of linear warm-up
      patience: 10                 # early stopping, in epochs without a better val score
      permutation_augmentation: true
      augment: {noise: 0.02, dropout: 0.02}   # INRs also rotate/translate/scale (train.augment)
      init_from: mnist-inr-classify  # start from a processor's weights (fine-tune it); optional
      seed: 0

Every mistake is a one-line :class:`~dwscli.errors.DwsError` naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from dwscli.errors import DwsError
from dwscli.nn.archs import get_arch
from dwscli.processors.card import DefaultFor, default_for_mapping
from dwscli.safe_yaml import load_yaml_file, short_repr
from dwscli.schema import ConfigError, build_section, check_keys
from dwscli.train.augment import AugmentSettings
from dwscli.train.tasks import task_class

Device = Literal["auto", "cpu", "cuda"]
TOP_LEVEL_KEYS = [
    "name",
    "version",
    "description",
    "default_for",
    "task",
    "zoo",
    "output",
    "model",
    "train",
]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class TrainSettings:
    """The ``train:`` section."""

    epochs: int = 50
    batch_size: int = 32
    eval_batch_size: int | None = None  # default: batch_size
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = None  # max global gradient norm
    patience: int | None = None  # early stopping: epochs without a better validation score
    permutation_augmentation: bool = True
    seed: int = 0
    device: Device = "auto"
    eval_every: int = 1  # epochs between validations
    max_train_nets: int | None = None  # a seeded subset of the training split
    normalizer_nets: int = 1000  # training nets the input normalisation is fitted on
    augment: AugmentSettings | None = None  # weight-space augmentations (dwscli.train.augment)
    # warn when the training loss has not moved over this many validations (null: never)
    stall_evals: int | None = 3
    # before every evaluation, recompute the batch norms' running statistics over the
    # normaliser's training sample with the current weights (dwscli.nn.heads)
    recalibrate_norms: bool = True
    # a processor (shipped name or card path) whose weights the model starts from: fine-tuning
    # it on this zoo (dwscli.train.start)
    init_from: str | None = None
    # train, select and test only on the nets whose recorded recipe, fit metric or label meets
    # this (dws evaluate --where syntax), e.g. "psnr=25..": nets that draw their image
    where: str | None = None
    # invariant models: also check each input's pooled features against the training nets'
    # (dwscli.processors.feature_ood), with a subspace of this many principal directions
    # (0: the weight-statistics check only)
    ood_features: int = 0

    def check(self, source: str | None) -> None:
        positive = ("epochs", "batch_size", "eval_every", "normalizer_nets")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{source}: train.{key}: must be at least 1")
        for key in ("eval_batch_size", "max_train_nets", "patience", "stall_evals"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{source}: train.{key}: must be at least 1 (or null)")
        if self.lr <= 0:
            raise ConfigError(f"{source}: train.lr: must be positive")
        for key in ("weight_decay", "warmup_steps", "seed", "ood_features"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{source}: train.{key}: must be at least 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"{source}: train.grad_clip: must be positive (or null)")
        if self.where is not None:
            from dwscli.data.zoo_splits import parse_hold_out

            parse_hold_out(self.where, f"{source}: train.where")


@dataclass(frozen=True)
class TaskSettings:
    name: str
    options: Any  # the task's Options dataclass


@dataclass(frozen=True)
class ModelSettings:
    arch: str
    options: Any  # the architecture's options dataclass

    def to_dict(self) -> dict[str, Any]:
        """The options the config may set (reserved ones, like out_features, left out)."""
        reserved = get_arch(self.arch).reserved
        return {k: v for k, v in asdict(self.options).items() if k not in reserved}


@dataclass(frozen=True)
class TrainConfig:
    """A validated training configuration (see the module docstring for the YAML form)."""

    name: str
    task: TaskSettings
    zoo: Path
    output: Path
    model: ModelSettings
    train: TrainSettings = field(default_factory=TrainSettings)
    version: str = "1"
    description: str | None = None
    #: copied into the card: the requests the processor answers when none is named
    default_for: DefaultFor | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def processor_path(self) -> Path:
        return self.output / f"{self.name}.yaml"

    @property
    def weights_path(self) -> Path:
        return self.output / f"{self.name}.safetensors"

    @property
    def state_path(self) -> Path:
        """The resumable training state, beside the processor."""
        return self.output / f"{self.name}.last.pt"

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (what the card records and resume compares)."""
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
        }
        if self.default_for is not None:
            data["default_for"] = default_for_mapping(self.default_for)
        return {
            **data,
            "task": {"name": self.task.name, **asdict(self.task.options)},
            "zoo": str(self.zoo),
            "output": str(self.output),
            "model": {"arch": self.model.arch, **self.model.to_dict()},
            "train": asdict(self.train),
        }

    def with_device(self, device: str | None) -> TrainConfig:
        if device is None:
            return self
        if device not in ("auto", "cpu", "cuda"):
            raise DwsError(f"unknown device {device!r}; choose auto, cpu or cuda")
        return replace(self, train=replace(self.train, device=device))  # type: ignore[arg-type]

    # --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> TrainConfig:
        where = source or "config"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a training config must be a YAML mapping")
        check_keys(data, TOP_LEVEL_KEYS, "", source)
        for key in ("name", "task", "zoo"):
            if data.get(key) is None:
                raise ConfigError(f"{where}: {key}: missing required key")
        name = data["name"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"{where}: name: expected a file-name-safe string (letters, digits, . _ -), "
                f"got {short_repr(name)}"
            )
        for key in ("zoo", "output", "description"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ConfigError(
                    f"{where}: {key}: expected a string, got {short_repr(data[key])} "
                    f"({type(data[key]).__name__})"
                )
        version = data.get("version", 1)
        if not isinstance(version, (str, int)) or isinstance(version, bool):
            raise ConfigError(f"{where}: version: expected a string or an integer")
        zoo = Path(data["zoo"]).expanduser()
        if not (zoo / "zoo.json").is_file():
            problem = "does not exist" if not zoo.exists() else "is not a zoo (no zoo.json)"
            raise ConfigError(
                f"{where}: zoo: {zoo} {problem}",
                hint="make one with dws zoo classifiers|inrs|sines -o DIR",
            )
        return cls(
            name=name,
            task=task_settings(data["task"], source),
            zoo=zoo,
            output=Path(data.get("output") or f"runs/{name}").expanduser(),
            model=_model_section(data.get("model"), source),
            train=_train_section(data.get("train"), source),
            version=str(version),
            description=data.get("description"),
            default_for=_default_for_section(data.get("default_for"), source),
            source=source,
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        config_path = Path(path)
        return cls.from_dict(load_yaml_file(config_path), source=str(config_path))


def _default_for_section(data: Any, source: str | None) -> DefaultFor | None:
    if data is None:
        return None
    return build_section(DefaultFor, data, prefix="default_for.", source=source)


def task_settings(data: Any, source: str | None) -> TaskSettings:
    """A ``task:`` section (a name, or a mapping of the name and its options) checked."""
    where = source or "config"
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(
            f"{where}: task: expected a task name or a mapping with 'name' and its options"
        )
    cls = task_class(data["name"], source)
    options = {k: v for k, v in data.items() if k != "name"}
    return TaskSettings(
        cls.name, build_section(cls.Options, options, prefix="task.", source=source)
    )


def _model_section(data: Any, source: str | None) -> ModelSettings:
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'}: model: expected a mapping")
    arch_name = data.get("arch", "dws")
    if not isinstance(arch_name, str):
        raise ConfigError(f"{source or 'config'}: model.arch: expected a string")
    arch = get_arch(arch_name, source)
    options = {k: v for k, v in data.items() if k != "arch"}
    for key in arch.reserved:
        if key in options:
            raise ConfigError(f"{source or 'config'}: model.{key}: set by the task, remove it")
    valid = ["arch", *(f.name for f in fields(arch.options_type) if f.name not in arch.reserved)]
    check_keys(data, valid, "model.", source)
    built = build_section(
        arch.options_type, options, prefix="model.", source=source, exclude=arch.reserved
    )
    return ModelSettings(arch.name, built)


def _train_section(data: Any, source: str | None) -> TrainSettings:
    settings = build_section(TrainSettings, data, prefix="train.", source=source)
    settings.check(source or "config")
    if settings.augment is not None:
        augment = build_section(
            AugmentSettings, settings.augment, prefix="train.augment.", source=source
        )
        augment.check(source)
        settings = replace(settings, augment=augment)
    return settings


def load_config(config: TrainConfig | str | Path) -> TrainConfig:
    """A :class:`TrainConfig` from itself or from a YAML file path."""
    return config if isinstance(config, TrainConfig) else TrainConfig.from_yaml(config)


__all__ = ["ModelSettings", "TaskSettings", "TrainConfig", "TrainSettings", "load_config"]
