"""``dws evaluate``: score a processor on a zoo split with the metrics ``dws train`` reports.

The processor's task is rebuilt from its card (the ``task`` section of the training config it
records) on the zoo, and its per-net values are collected and turned into metrics by the same
code the trainer uses (:func:`dwscli.train.evaluation.collect_values`, the task's
``evaluate``/``metrics``), so on the processor's own training zoo the numbers equal the card's.
A task whose metrics need a fit on training nets (``embed``: the linear probe) fits it as the
trainer did, on the same seeded sample of the zoo's train split.

Beside the metrics: the fraction of the scored nets the card's out-of-distribution profile
flags, optionally the same per value of a recipe field (``by``), and, for tasks with a per-net
outcome (a correct class, an adaptation that helped, an edit that helped), the flagged fraction
among the nets the processor gets wrong and right.

``where`` (``"psnr=25.."``, ``"optimizer=adam,steps=..300"``) scores only the nets whose
recorded recipe, fit metrics or labels meet every condition: recipe-diverse zoos hold nets that
never drew their image, and a user's nets usually do. A probe fitted on training nets (``embed``)
is fitted as without it.

A zoo the processor cannot read (another kind, spec, data set, conventions or sine w0), an
unknown or empty split and an unfinished zoo are one-line errors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_format import HELDOUT_SPLIT
from dwscli.errors import DwsError
from dwscli.processors.loading import Processor, load_processor
from dwscli.processors.ood import net_statistics, spread_subset
from dwscli.processors.pipeline import (
    NOT_READING_CONVENTIONS,
    accepted_shape,
    feature_scores,
    same_setting,
    shown_value,
    spec_fits,
)
from dwscli.train.netstore import ShardMaps, SplitNets
from dwscli.train.tasks import Task

#: The splits ``--split`` accepts (``all``: every net of the zoo, split by split).
SPLIT_CHOICES = ("test", "val", "train", HELDOUT_SPLIT, "all")
#: A recipe field with more distinct values than this is not broken down (e.g. ``lr``).
MAX_GROUPS = 12


@dataclass
class Evaluation:
    """What :func:`evaluate` measured (see :meth:`to_dict` for the JSON form)."""

    processor: str
    task: str
    zoo: str
    split: str
    nets: int
    metrics: dict[str, float]
    #: the card's metrics for this split (measured by ``dws train`` on the training zoo)
    card_metrics: dict[str, float] | None = None
    #: ``{"flagged_fraction", "flagged", "threshold"}`` (and ``flagged_by_features`` when the
    #: card has a feature check); None when the card has no profile
    ood: dict[str, Any] | None = None
    #: ``{field: {value: {"nets", "metrics", "flagged_fraction"}}}``
    by: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: ``{"wrong": {"nets", "flagged_fraction"}, "right": {...}}`` for tasks with an outcome
    outcome: dict[str, dict[str, Any]] | None = None
    #: the condition the scored nets met (``where``), as given
    where: str | None = None
    #: the condition the card's nets met (its training config's ``train.where``), if any
    card_where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# checks


def check_zoo_fits(processor: Processor, zoo: Zoo) -> None:
    """Refuse a zoo whose nets the processor cannot read: kind, spec, data set, conventions and
    sine w0 as its card states them."""
    from dwscli.weights.functional import sine_frequencies

    card, where, name = processor.card, zoo.path, processor.name
    wanted_kind = card.input.zoo_kind
    if wanted_kind and zoo.kind != wanted_kind:
        raise DwsError(f"{where}: a {zoo.kind} zoo, but processor {name} reads {wanted_kind} nets")
    expected, spec = card.spec, zoo.spec
    if not spec_fits(spec, expected):
        raise DwsError(
            f"{where}: the zoo's {spec} nets do not fit processor {name}, "
            f"which expects {accepted_shape(expected)}"
        )
    dataset = zoo.meta.dataset
    if card.input.dataset and dataset and dataset != card.input.dataset:
        raise DwsError(
            f"{where}: a {dataset} zoo, but processor {name} was trained on "
            f"{card.input.dataset} nets"
        )
    conventions = card.input.conventions or card.input.preprocessing or {}
    recorded = zoo.conventions
    for key, value in conventions.items():
        if key in NOT_READING_CONVENTIONS or key not in recorded:
            continue
        if not same_setting(recorded[key], value):
            raise DwsError(
                f"{where}: the zoo's convention {key} is {shown_value(key, recorded[key])} but "
                f"processor {name} expects {shown_value(key, value)}"
            )
    if spec.activation == "sine":
        ours, theirs = sine_frequencies(spec), sine_frequencies(expected)
        if any(not math.isclose(a, b, rel_tol=1e-6) for a, b in zip(ours, theirs)):
            raise DwsError(
                f"{where}: the zoo's nets have sine w0 {ours[0]:g} (hidden {ours[1]:g}) but "
                f"processor {name} expects w0 {theirs[0]:g} (hidden {theirs[1]:g})"
            )


def chosen_splits(zoo: Zoo, split: str) -> list[str]:
    """The zoo splits ``split`` names; unknown, absent and empty ones are one-line errors."""
    if split not in SPLIT_CHOICES:
        raise DwsError(f"--split: unknown split {split!r}; choose {', '.join(SPLIT_CHOICES)}")
    present = zoo.splits
    if split == "all":
        names = [name for name, ids in present.items() if ids]
    else:
        if split not in present:
            raise DwsError(
                f"{zoo.path}: the zoo has no {split} split",
                hint="make one with dws zoo split DIR --hold-out REGION --force",
            )
        names = [split] if present[split] else []
    if not names:
        raise DwsError(f"{zoo.path}: the {split} split is empty")
    return names


def nets_meeting(zoo: Zoo, ids: list[str], where: str) -> set[str]:
    """The nets of ``ids`` whose record meets ``where`` (see the module docstring); a key no net
    records and a condition no net meets are one-line errors."""
    from dwscli.data.zoo_splits import RECORD_GROUPS, parse_hold_out, record_matcher

    region = parse_hold_out(where, "--where")
    records = [zoo.record(net) for net in ids]
    for key in region:
        if not any(key in (r.get(group) or {}) for r in records for group in RECORD_GROUPS):
            raise DwsError(
                f"{zoo.path}: --where: no net records {key!r} (in its recipe, fit metrics or "
                "labels)"
            )
    matches = record_matcher(region)
    chosen = {record["id"] for record in records if matches(record)}
    if not chosen:
        raise DwsError(f"{zoo.path}: --where {where!r}: no net of the split meets it")
    return chosen


def processor_task(processor: Processor, zoo: Zoo) -> Task:
    """The processor's training task (its card's options) set up on ``zoo``."""
    from dwscli.train.config import task_settings

    config = processor.card.training.get("config") or {}
    section = config.get("task") or processor.card.task
    settings = task_settings(section, str(processor.path))
    options = settings.options
    # a classifier of INRs keeps its own number of classes, whatever labels the zoo holds
    classes = processor.card.output.get("classes")
    if getattr(options, "num_classes", 0) is None and isinstance(classes, int):
        options = dataclasses.replace(options, num_classes=classes)
    from dwscli.train.tasks import task_class

    return task_class(settings.name, str(processor.path))(options, zoo)


def check_targets_present(task: Task, zoo: Zoo, processor: Processor) -> None:
    """Refuse a zoo whose nets lack a label or metric the task scores against."""
    for group, key in task.target_keys():
        for record in zoo.records():
            if (record.get(group) or {}).get(key) is None:
                raise DwsError(
                    f"{zoo.path}: net {record['id']} records no {group}.{key}, which processor "
                    f"{processor.name} (task {task.name}) is scored against"
                )


# ------------------------------------------------------------------------------------------------
# measuring


def _outcome(values: Mapping[str, Tensor]) -> Tensor | None:
    """Per net, whether the processor got it right (None for tasks without such an outcome)."""
    if "correct" in values:
        return values["correct"] > 0.5
    if "adapted_acc" in values and "unadapted_acc" in values:
        return values["adapted_acc"] > values["unadapted_acc"]
    if "mse" in values and "mse_no_edit" in values:
        return values["mse"] < values["mse_no_edit"]
    return None


def _subset(values: Mapping[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
    return {key: value[mask] for key, value in values.items()}


def _fraction(flags: Tensor | None, mask: Tensor | None = None) -> float | None:
    if flags is None:
        return None
    chosen = flags if mask is None else flags[mask]
    return float(chosen.double().mean()) if len(chosen) else None


def _group_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "none" if value is None else str(value)


def _round_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {key: float(f"{value:.6g}") for key, value in metrics.items()}


def evaluate(
    processor_name: str,
    zoo_path: Path | str,
    *,
    split: str = "test",
    max_nets: int | None = None,
    by: list[str] | None = None,
    where: str | None = None,
    batch_size: int = 128,
    device: str = "auto",
) -> Evaluation:
    """Score a processor on a zoo split (see the module docstring)."""
    from dwscli.runtime import resolve_device
    from dwscli.train.evaluation import collect_values, training_sample

    if max_nets is not None and max_nets < 1:
        raise DwsError(f"--max-nets: must be at least 1, got {max_nets}")
    torch_device = resolve_device(device)
    zoo = Zoo.open(zoo_path)
    splits = chosen_splits(zoo, split)
    processor = load_processor(processor_name, device=str(torch_device))
    check_zoo_fits(processor, zoo)
    task = processor_task(processor, zoo)
    check_targets_present(task, zoo, processor)

    maps = ShardMaps(zoo)
    keys = task.target_keys()
    parts = [SplitNets.of(zoo, name, keys, maps) for name in splits]
    candidates = [net for part in parts for net in part.ids]
    if where is not None:
        meeting = nets_meeting(zoo, candidates, where)
        candidates = [net for net in candidates if net in meeting]
    chosen_ids = set(candidates)
    if max_nets is not None:
        chosen_ids = set(spread_subset(candidates, max_nets))
    model = processor.model
    if task.fits_on_train:
        train = dict((processor.card.training.get("config") or {}).get("train") or {})
        seed = int(train.get("seed", 0))
        if not zoo.ids("train"):
            raise DwsError(f"{zoo.path}: task {task.name} fits its probe on a train split")
        train_nets = SplitNets.of(
            zoo,
            "train",
            keys,
            maps,
            subset=train.get("max_train_nets"),
            seed=seed,
            where=train.get("where"),
        )
        sample = training_sample(len(train_nets), int(train.get("normalizer_nets", 1000)), seed)
        task.fit_eval(
            collect_values(
                task,
                model,
                train_nets,
                batch_size=batch_size,
                device=torch_device,
                positions=sample,
            )
        )
    collected: list[dict[str, Tensor]] = []
    records: list[dict[str, Any]] = []
    statistics: list[Tensor] = []
    feature_flags: list[Tensor] = []  # the card's feature check, when it records one
    for part in parts:
        task.check_targets(part.name, part.targets, part.ids)
        positions = torch.tensor(
            [k for k, net in enumerate(part.ids) if net in chosen_ids], dtype=torch.long
        )
        if not len(positions):
            continue
        collected.append(
            collect_values(
                task, model, part, batch_size=batch_size, device=torch_device, positions=positions
            )
        )
        records.extend(part.records[int(k)] for k in positions)
        if processor.ood is not None:
            statistics.extend(
                net_statistics(part.batch(chunk).space) for chunk in positions.split(1024)
            )
        if processor.ood is not None and processor.feature_ood is not None:
            threshold = processor.feature_ood.threshold
            feature_flags.extend(
                feature_scores(processor, part.batch(chunk).space) > threshold
                for chunk in positions.split(1024)
            )
    values = {key: torch.cat([c[key] for c in collected]) for key in collected[0]}
    flags: Tensor | None = None
    ood = None
    if processor.ood is not None:
        scores = processor.ood.scores(torch.cat(statistics))
        flags = scores > processor.ood.threshold
        by_features = torch.cat(feature_flags) & ~flags if feature_flags else None
        if by_features is not None:
            flags = flags | by_features
        ood = {
            "flagged_fraction": round(float(flags.double().mean()), 4),
            "flagged": int(flags.sum()),
            "threshold": processor.ood.threshold,
        }
        if by_features is not None:
            ood["flagged_by_features"] = int(by_features.sum())

    result = Evaluation(
        processor=processor.name,
        task=task.name,
        zoo=str(zoo.path),
        split=split,
        nets=len(records),
        metrics=_round_metrics(task.metrics(values)),
        card_metrics=(processor.card.metrics or {}).get(split),
        ood=ood,
        where=where,
        card_where=((processor.card.training.get("config") or {}).get("train") or {}).get("where"),
    )
    for name in by or []:
        result.by[name] = _breakdown(task, values, records, flags, name, zoo)
    right = _outcome(values)
    if right is not None:
        result.outcome = {
            label: {"nets": int(mask.sum()), "flagged_fraction": _fraction(flags, mask)}
            for label, mask in (("wrong", ~right), ("right", right))
        }
    return result


def _breakdown(
    task: Task,
    values: Mapping[str, Tensor],
    records: list[dict[str, Any]],
    flags: Tensor | None,
    name: str,
    zoo: Zoo,
) -> dict[str, dict[str, Any]]:
    """The metrics and flagged fraction per value of the recipe field ``name``."""
    recorded = [(r.get("hparams") or {}).get(name) for r in records]
    if all(v is None for v in recorded):
        raise DwsError(f"{zoo.path}: --by: the nets record no hparams.{name}")
    labels = [_group_key(v) for v in recorded]
    distinct = sorted(set(labels))
    if len(distinct) > MAX_GROUPS:
        raise DwsError(
            f"--by {name}: {len(distinct)} distinct values; choose a field with at most "
            f"{MAX_GROUPS} (optimizer, init, …)"
        )
    groups: dict[str, dict[str, Any]] = {}
    for label in distinct:
        mask = torch.tensor([value == label for value in labels])
        groups[label] = {
            "nets": int(mask.sum()),
            "metrics": _round_metrics(task.metrics(_subset(values, mask))),
            "flagged_fraction": _fraction(flags, mask),
        }
    return groups


__all__ = [
    "SPLIT_CHOICES",
    "Evaluation",
    "check_zoo_fits",
    "chosen_splits",
    "evaluate",
    "nets_meeting",
]
