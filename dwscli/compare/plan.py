"""What ``dws compare`` will run: the ``compare:`` section, per-run configs, checks before training.

A comparison config is an ordinary training config (:mod:`dwscli.train.config`) with an optional
``compare:`` section, which ``dws train`` does not accept and this module removes before the rest
is validated as a :class:`~dwscli.train.config.TrainConfig`::

    compare:
      archs: [dws, mlp, mlp-aug]     # default for --archs
      seeds: 3                       # default for --seeds (runs use train.seed = 0..seeds-1)
      output: results/fmnist         # default for -o (else runs/compare-<name>)
      models:                        # per-arch model options (over the arch's defaults)
        mlp: {hidden: [256, 256]}
      train:                         # per-arch train settings (not the budget: see BUDGET_KEYS)
        mlp: {permutation_augmentation: false, lr: 3.0e-4}
      reuse:                         # an arch's run is the processor another config trains
        dws: configs/mnist-inr-classify-dws.yaml

Which model options a run gets: ``compare.models.<arch>`` when given; else the config's own
``model:`` section when its ``model.arch`` is that arch (``dws`` when unset); else the arch's
defaults. Every run shares the config's task, zoo, split and ``train:`` settings (the same
budget: epochs, training nets, batch size), apart from the per-arch ``compare.train`` overrides
and ``train.seed``, which is the run's seed.

``compare.reuse`` names, per arch, a training config (e.g. the one a shipped processor is
trained by) whose processor *is* that arch's run for the seed it trains with: the comparison
reads it when it is finished and trains it in place (with resume) when it is not, so a long
model is trained once for both purposes. The reused config must be the run the comparison would
train: the same task, zoo, arch and train settings (only where it is written, its name, version,
description, default and evaluation batch size may differ).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dwscli.errors import DwsError
from dwscli.nn.archs import ARCHS, get_arch
from dwscli.safe_yaml import load_yaml_file, short_repr
from dwscli.schema import ConfigError, build_section, check_keys
from dwscli.train.config import ModelSettings, TrainConfig, TrainSettings, _train_section
from dwscli.train.state import flatten_config

COMPARE_KEYS = ["archs", "seeds", "output", "models", "train", "reuse"]
#: What a reused training config may set differently from the run it stands for.
REUSE_FREE_KEYS = frozenset(
    {
        "name",
        "version",
        "description",
        "default_for",
        "output",
        "train.eval_batch_size",
        "train.device",
    }
)
#: Train settings every arch shares: the comparison's budget and protocol.
BUDGET_KEYS = ("epochs", "max_train_nets", "seed", "device")


@dataclass(frozen=True)
class CompareSection:
    """The ``compare:`` section (every key optional)."""

    archs: tuple[str, ...] = ()
    seeds: int | None = None
    output: Path | None = None
    models: Mapping[str, Mapping[str, Any]] | None = None
    train: Mapping[str, Mapping[str, Any]] | None = None
    reuse: Mapping[str, Path] | None = None


@dataclass(frozen=True)
class RunPlan:
    """One training run of the comparison."""

    arch: str
    seed: int
    directory: Path  # <output>/runs/<arch>-s<seed>, or where a reused config writes
    config: TrainConfig
    reused_from: str | None = None  # the training config this run's processor comes from


def _where(source: str | None, key: str) -> str:
    return f"{source or 'config'}: {key}"


def _mapping_of_mappings(data: Any, key: str, source: str | None) -> dict[str, dict[str, Any]]:
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not all(
        isinstance(v, Mapping) or v is None for v in data.values()
    ):
        raise ConfigError(f"{_where(source, key)}: expected a mapping of arch names to options")
    return {str(k): dict(v or {}) for k, v in data.items()}


def parse_compare_section(data: Any, source: str | None) -> CompareSection:
    """Validate the ``compare:`` section of a config (``None``: no section)."""
    if data is None:
        return CompareSection()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(source, 'compare')}: expected a mapping")
    check_keys(data, COMPARE_KEYS, "compare.", source)
    archs = data.get("archs") or ()
    if isinstance(archs, str):
        archs = [a.strip() for a in archs.split(",")]
    if not isinstance(archs, (list, tuple)) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{_where(source, 'compare.archs')}: expected a list of arch names")
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise ConfigError(f"{_where(source, 'compare.seeds')}: expected an integer of at least 1")
    output = data.get("output")
    if output is not None and not isinstance(output, str):
        raise ConfigError(f"{_where(source, 'compare.output')}: expected a path (a string)")
    reuse = data.get("reuse") or {}
    if not isinstance(reuse, Mapping) or not all(isinstance(v, str) for v in reuse.values()):
        raise ConfigError(
            f"{_where(source, 'compare.reuse')}: expected a mapping of arch names to config paths"
        )
    return CompareSection(
        reuse={str(k): Path(v).expanduser() for k, v in reuse.items()},
        archs=tuple(archs),
        seeds=seeds,
        output=None if output is None else Path(output).expanduser(),
        models=_mapping_of_mappings(data.get("models"), "compare.models", source),
        train=_mapping_of_mappings(data.get("train"), "compare.train", source),
    )


def load_compare_config(
    config: TrainConfig | str | Path,
) -> tuple[TrainConfig, CompareSection]:
    """A training config and its ``compare:`` section, from a YAML path or a TrainConfig."""
    if isinstance(config, TrainConfig):
        return config, CompareSection()
    path = Path(config)
    data = load_yaml_file(path)
    section = None
    if isinstance(data, dict):
        data = dict(data)
        section = data.pop("compare", None)
    source = str(path)
    return TrainConfig.from_dict(data, source=source), parse_compare_section(section, source)


def parse_archs(archs: str | Sequence[str]) -> list[str]:
    """``"dws,mlp"`` or ``["dws", "mlp"]`` -> known names, in order, without repeats."""
    names = archs.split(",") if isinstance(archs, str) else list(archs)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise DwsError("no architectures to compare", hint="pass --archs dws,mlp,…")
    for name in names:
        if name not in ARCHS:
            raise DwsError(f"unknown architecture {name!r}; choose from {', '.join(sorted(ARCHS))}")
    return list(dict.fromkeys(names))


def model_settings(
    base: TrainConfig, arch: str, models: Mapping[str, Mapping[str, Any]]
) -> ModelSettings:
    """The model options of ``arch``'s runs (see the module docstring for the precedence)."""
    if arch not in models and base.model.arch == arch:
        return base.model
    spec = get_arch(arch)
    options = build_section(
        spec.options_type,
        dict(models.get(arch) or {}),
        prefix=f"compare.models.{arch}.",
        source=base.source,
        exclude=spec.reserved,
    )
    return ModelSettings(arch, options)


def train_settings(
    base: TrainConfig, arch: str, overrides: Mapping[str, Mapping[str, Any]], seed: int
) -> TrainSettings:
    """The config's train settings with ``arch``'s overrides and ``seed``."""
    changes = dict(overrides.get(arch) or {})
    allowed = [f.name for f in fields(TrainSettings) if f.name not in BUDGET_KEYS]
    prefix = f"compare.train.{arch}."
    for key in changes:
        if key in BUDGET_KEYS:
            raise ConfigError(
                f"{_where(base.source, prefix + key)}: every arch shares the budget "
                f"({', '.join(BUDGET_KEYS)}); set it in train: or on the command line"
            )
    check_keys(changes, allowed, prefix, base.source)
    build_section(TrainSettings, changes, prefix=prefix, source=base.source)  # types, named here
    # then the whole section as the config parser builds it (nested settings included)
    return _train_section({**asdict(base.train), **changes, "seed": seed}, base.source)


def plan_runs(
    base: TrainConfig,
    archs: Sequence[str],
    seeds: int,
    output: Path,
    *,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    train_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    reuse: Mapping[str, Path] | None = None,
) -> list[RunPlan]:
    """Every run, arch by arch, seed by seed; each config fully validated. ``reuse``: per arch,
    a training config whose processor stands for that arch's run with its seed."""
    if seeds < 1:
        raise DwsError(f"seeds must be at least 1, got {seeds}")
    models, train_overrides = models or {}, train_overrides or {}
    reused = {arch: load_reused_config(path) for arch, path in (reuse or {}).items()}
    tables = (
        ("compare.models", models),
        ("compare.train", train_overrides),
        ("compare.reuse", reused),
    )
    for key, table in tables:
        for name in table:  # archs not compared this time may have settings; typos may not
            if name not in ARCHS:
                raise ConfigError(
                    f"{_where(base.source, f'{key}.{name}')}: unknown architecture; choose "
                    f"from {', '.join(sorted(ARCHS))}"
                )
    runs = []
    for arch in archs:
        model = model_settings(base, arch, models)
        for seed in range(seeds):
            directory = output / "runs" / f"{arch}-s{seed}"
            config = replace(
                base,
                name=f"{base.name}-{arch}-s{seed}",
                output=directory,
                default_for=None,  # a comparison's runs are never a command's default
                model=model,
                train=train_settings(base, arch, train_overrides, seed),
            )
            other, reused_from = reused.get(arch), None
            if other is not None and other.train.seed == seed:
                reused_from = other.source
                check_reused(other, config, base.source)
                config, directory = (
                    replace(other, train=replace(other.train, device=config.train.device)),
                    other.output,
                )
            runs.append(RunPlan(arch, seed, directory, config, reused_from))
    return runs


def _free(key: str) -> bool:
    """Whether a flattened key (``default_for.task``) is one a reused config may set freely."""
    parts = key.split(".")
    return any(".".join(parts[:n]) in REUSE_FREE_KEYS for n in range(1, len(parts) + 1))


def load_reused_config(path: Path) -> TrainConfig:
    """A training config named by ``compare.reuse`` (one without a ``compare:`` section)."""
    return TrainConfig.from_dict(load_yaml_file(path), source=str(path))


def check_reused(other: TrainConfig, run: TrainConfig, source: str | None) -> None:
    """Refuse a reused config that is not the run the comparison would train."""
    mine, theirs = flatten_config(plain(run.to_dict())), flatten_config(plain(other.to_dict()))
    differ = sorted(
        k for k in set(mine) | set(theirs) if not _free(k) and mine.get(k) != theirs.get(k)
    )
    if differ:
        shown = ", ".join(
            f"{k} ({short_repr(theirs.get(k))} there, {short_repr(mine.get(k))} here)"
            for k in differ[:3]
        )
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(
            f"{_where(source, 'compare.reuse.' + run.model.arch)}: {other.source} is not the run "
            f"this comparison trains: {shown}{more} differ"
        )


def check_model_kinds(base: TrainConfig, archs: Sequence[str]) -> None:
    """Refuse, before any training, an arch that cannot build the task's kind of model."""
    from dwscli.train.tasks import task_class

    task = task_class(base.task.name)
    for name in archs:
        kinds = get_arch(name).kinds
        if task.kind not in kinds:
            raise DwsError(
                f"arch {name!r} cannot do task {task.name}, which needs an {task.kind} model "
                f"({name} builds {' and '.join(kinds)} models only)",
                hint="leave it out of --archs",
            )


def plain(data: Any) -> Any:
    """``data`` as the YAML card stores it (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(data, default=str))


__all__ = [
    "BUDGET_KEYS",
    "CompareSection",
    "RunPlan",
    "check_model_kinds",
    "flatten_config",
    "load_compare_config",
    "parse_archs",
    "parse_compare_section",
    "plan_runs",
]
