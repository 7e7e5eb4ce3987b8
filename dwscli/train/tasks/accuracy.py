"""``task: accuracy``: predict a classifier's test accuracy from its weights.

Beside the processor, the trainer fits StatNN (:class:`~dwscli.nn.baselines.statnn.StatNN`) on
the same split for the card's side by side: weight statistics of the training nets (computed in
chunks, so a big zoo is never in memory at once) -> gradient boosting, then predictions for the
test nets. It runs once, after training, on one process, with as many threads as torch uses
(``dws train --threads``): scikit-learn's OpenMP pool would otherwise take every core, which on
a shared machine is much slower than one thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from dwscli.data.zoo import ZooBatch
from dwscli.nn.baselines.statnn import StatNN, weight_statistics
from dwscli.train.tasks.base import BaselineMetrics, Task, kendall_tau, r2_score

if TYPE_CHECKING:
    from dwscli.train.netstore import SplitNets


def split_statistics(nets: SplitNets, chunk: int = 1024) -> Tensor:
    """:func:`weight_statistics` of every net of ``nets``, in split order ``[n, features]``."""
    positions = torch.arange(len(nets))
    return torch.cat([weight_statistics(nets.batch(part).space) for part in positions.split(chunk)])


def torch_thread_budget() -> Any:
    """A context that limits native thread pools (OpenMP, BLAS) to torch's thread count."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(torch.get_num_threads())


def statnn_predictions(train: SplitNets, test: SplitNets, target: str) -> Tensor:
    """StatNN fitted on ``train``'s ``target`` values; its predictions for ``test`` (in order)."""
    features = split_statistics(train)
    with torch_thread_budget():
        model = StatNN.fit_features(features, train.targets[target].float())
        return model.predict_features(split_statistics(test))


@dataclass(frozen=True)
class AccuracyOptions:
    target: str = "test_acc"  # a key of the manifest's metrics
    loss: Literal["mse", "l1"] = "mse"
    # fitted on the same training nets at the end, measured on the same test nets
    baselines: list[Literal["statnn"]] = field(default_factory=lambda: ["statnn"])


class AccuracyTask(Task):
    """Invariant regression of ``metrics.<target>`` (test accuracy) of classifiers."""

    name = "accuracy"
    kind = "invariant"
    Options = AccuracyOptions
    best_metric = "kendall_tau"
    higher_is_better = True
    options: AccuracyOptions

    @property
    def out_features(self) -> int:
        return 1

    def target_keys(self) -> list[tuple[str, str]]:
        return [("metrics", self.options.target)]

    def _pred_target(self, output: Tensor, batch: ZooBatch) -> tuple[Tensor, Tensor]:
        target = batch.targets[self.options.target].to(output.device, torch.float32)
        return output.reshape(-1), target

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.options.loss == "l1":
            return (pred - target).abs()
        return (pred - target) ** 2

    def loss(self, output: Tensor, batch: ZooBatch) -> Tensor:
        return self._loss(*self._pred_target(output, batch))

    def evaluate(self, output: Tensor, batch: ZooBatch) -> dict[str, Tensor]:
        pred, target = self._pred_target(output, batch)
        return {"pred": pred, "target": target, "loss": self.loss(output, batch)}

    def metrics(self, values: Mapping[str, Tensor]) -> dict[str, float]:
        pred, target = values["pred"].double(), values["target"].double()
        return {
            "kendall_tau": kendall_tau(pred, target),
            "r2": r2_score(pred, target),
            "mae": float((pred - target).abs().mean()),
            "loss": float(values["loss"].double().mean()),
        }

    def describe_output(self) -> dict[str, Any]:
        return {"type": "scalar", "target": f"metrics.{self.options.target}"}

    def baselines(self, train: SplitNets, test: SplitNets) -> BaselineMetrics:
        results: BaselineMetrics = {}
        key = self.options.target
        for name in dict.fromkeys(self.options.baselines):  # only statnn so far
            if name == "statnn":
                pred = statnn_predictions(train, test, key).double()
                target = test.targets[key].double()
                values = {"pred": pred, "target": target, "loss": self._loss(pred, target)}
                results[name] = {"test": self.metrics(values)}
        return results


__all__ = [
    "AccuracyOptions",
    "AccuracyTask",
    "split_statistics",
    "statnn_predictions",
    "torch_thread_budget",
]
