"""``task: inr-classify``: the class of the image an INR represents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dwscli.data.zoo import Zoo, ZooBatch
from dwscli.errors import DwsError
from dwscli.train.tasks.base import Task


@dataclass(frozen=True)
class InrClassifyOptions:
    label: str = "label"  # a key of the manifest's labels
    num_classes: int | None = None  # default: largest label in the zoo + 1


class InrClassifyTask(Task):
    """Invariant classification of ``labels.<label>`` (the digit an INR draws)."""

    name = "inr-classify"
    kind = "invariant"
    Options = InrClassifyOptions
    best_metric = "accuracy"
    higher_is_better = True
    options: InrClassifyOptions

    def __init__(self, options: InrClassifyOptions, zoo: Zoo) -> None:
        super().__init__(options, zoo)
        labels = [(r.get("labels") or {}).get(options.label) for r in zoo.records()]
        if not labels or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
            raise DwsError(
                f"{zoo.path}: task inr-classify needs an integer labels.{options.label} on every "
                "net (an INR zoo made by dws zoo inrs has one)"
            )
        self.num_classes = options.num_classes or max(labels) + 1
        if min(labels) < 0 or max(labels) >= self.num_classes:
            raise DwsError(
                f"{zoo.path}: labels.{options.label} range {min(labels)}..{max(labels)} does "
                f"not fit num_classes {self.num_classes}"
            )

    @property
    def out_features(self) -> int:
        return self.num_classes

    def target_keys(self) -> list[tuple[str, str]]:
        return [("labels", self.options.label)]

    def loss(self, output: Tensor, batch: ZooBatch) -> Tensor:
        target = batch.targets[self.options.label].to(output.device, torch.long)
        return F.cross_entropy(output, target, reduction="none")

    def evaluate(self, output: Tensor, batch: ZooBatch) -> dict[str, Tensor]:
        target = batch.targets[self.options.label].to(output.device, torch.long)
        correct = (output.argmax(dim=1) == target).float()
        return {"correct": correct, "loss": self.loss(output, batch)}

    def metrics(self, values: Mapping[str, Tensor]) -> dict[str, float]:
        return {
            "accuracy": float(values["correct"].double().mean()),
            "loss": float(values["loss"].double().mean()),
        }

    def describe_output(self) -> dict[str, Any]:
        return {
            "type": "logits",
            "classes": self.num_classes,
            "target": f"labels.{self.options.label}",
        }


__all__ = ["InrClassifyOptions", "InrClassifyTask"]
