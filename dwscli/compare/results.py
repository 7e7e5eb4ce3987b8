"""What a comparison produces: one :class:`RunRecord` per run and the :class:`CompareResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from dwscli.train.report import _clean

RunStatus = Literal["trained", "reused", "failed"]


@dataclass
class RunRecord:
    """One run's outcome, read from its processor card (or its error)."""

    arch: str
    seed: int
    directory: Path
    status: RunStatus
    processor: Path | None = None
    test: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    #: the best model's metrics on the fixed training sample (empty for older cards)
    train: dict[str, float] = field(default_factory=dict)
    #: the best model's metrics on the held-out-recipe nets (empty when the zoo has none)
    heldout: dict[str, float] = field(default_factory=dict)
    parameters: int | None = None
    seconds: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    #: the trainer's baselines fitted on this run's training nets: {name: test metrics}
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None  # why a failed run failed (one line)
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class CompareResult:
    """Outcome of :func:`compare`; ``summary`` rows are what results.md shows."""

    name: str
    task: str
    best_metric: str
    higher_is_better: bool
    metrics: list[str]  # test metrics, the best one first
    archs: list[str]
    seeds: int
    output: Path
    runs: list[RunRecord]
    summary: list[dict[str, Any]]
    files: dict[str, Path]  # markdown, csv, plot

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings, NaN as None)."""
        data = asdict(self)
        data["failed"] = len(self.failed)
        return _clean(data)


__all__ = ["CompareResult", "RunRecord", "RunStatus"]
