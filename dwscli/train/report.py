"""What a training run tells its caller: live events (:class:`Reporter`) and the result.

The trainer calls a reporter on the main process only (rank 0 under torchrun). The base class
does nothing, so the Python API is silent unless given one; the CLI passes a rich progress
display (plain lines when stderr is not a terminal).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


class TrainReporter(Protocol):
    """What the trainer calls (see :class:`Reporter` for the meaning of each call)."""

    def start(self, info: dict[str, Any]) -> None: ...
    def step(self, epoch: int, step: int, steps: int, loss: float, lr: float) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class Reporter:
    """A :class:`TrainReporter` that does nothing; override what you need."""

    def start(self, info: dict[str, Any]) -> None:
        """Before the first epoch: ``epochs``, ``start_epoch``, ``steps_per_epoch``, ``nets``
        (per split), ``device``, ``world_size``, ``parameters``, ``best_metric``."""

    def step(self, epoch: int, step: int, steps: int, loss: float, lr: float) -> None:
        """After every optimiser step (``loss``: this process's batch mean)."""

    def epoch(self, record: dict[str, Any]) -> None:
        """After every epoch: ``epoch``, ``train_loss``, ``lr``, ``seconds``, and when
        validated ``val`` (metrics), ``train`` (the same metrics on the fixed training sample),
        ``live_head_units`` (``[alive, total]`` of an invariant head), ``best`` (bool),
        ``best_epoch``, ``best_val``."""

    def message(self, text: str) -> None:
        """A note (resuming, early stopping, …)."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class TrainResult:
    """Outcome of :func:`dwscli.train.train` (the same on every rank)."""

    name: str
    task: str
    processor: Path  # the card; load it with dwscli.processors.loading.load_processor
    weights: Path
    metrics: dict[str, dict[str, float]]  # {"val": best epoch's, "test": best model's}
    initial: dict[str, dict[str, float]]  # before training: {"val", "train_sample"}
    train_sample: dict[str, float]  # the best model on the training sample
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    seconds: float
    device: str
    world_size: int
    rank: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    #: systems fitted on the same training nets, on the same test nets: {name: {"test": metrics}}
    baselines: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings, NaN as None)."""
        return _clean(asdict(self))


__all__ = ["Reporter", "TrainReporter", "TrainResult"]
