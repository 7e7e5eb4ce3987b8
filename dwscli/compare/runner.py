"""Running a comparison: every planned run trained (or reused when finished), then the tables.

A run is *finished* when its processor card ``<output>/runs/<arch>-s<seed>/<name>.yaml`` and its
weights exist and the card's ``training.config`` equals the run's config (apart from
:data:`IGNORED_KEYS`); it is then read, not retrained. Anything else is handed to the trainer
with ``resume``, which continues an interrupted run from its ``.last.pt`` state. Results are
always read back from the cards, so a reused run and a fresh one are reported the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from dwscli.compare.plan import (
    RunPlan,
    check_model_kinds,
    flatten_config,
    load_compare_config,
    parse_archs,
    plain,
    plan_runs,
)
from dwscli.compare.results import CompareResult, RunRecord, RunStatus
from dwscli.errors import DwsError
from dwscli.processors.card import ProcessorCard
from dwscli.train.config import TrainConfig
from dwscli.train.report import TrainReporter
from dwscli.train.state import ABSENT_MEANS

#: Config keys a finished run may differ in and still be reused.
IGNORED_KEYS = frozenset({"output", "description", "train.device", "train.eval_batch_size"})


class CompareReporter(Protocol):
    """What :func:`compare` tells its caller (see :class:`SilentReporter`)."""

    def run_started(
        self, index: int, total: int, run: RunPlan, reused: bool
    ) -> TrainReporter | None: ...
    def run_finished(self, index: int, total: int, record: RunRecord) -> None: ...


class SilentReporter:
    """A :class:`CompareReporter` that says nothing; override what you need."""

    def run_started(
        self, index: int, total: int, run: RunPlan, reused: bool
    ) -> TrainReporter | None:
        """Before run ``index`` (1-based; ``reused``: finished, will not be retrained);
        returns the trainer's reporter for the run, if any."""
        return None

    def run_finished(self, index: int, total: int, record: RunRecord) -> None:
        """After run ``index``: trained, reused or failed (``record.error``)."""


# ------------------------------------------------------------------------------------------------
# finished runs


def config_matches(saved: Mapping[str, Any], config: TrainConfig) -> bool:
    """Whether a card's ``training.config`` is ``config`` (apart from :data:`IGNORED_KEYS`;
    options the saved config predates count as :data:`ABSENT_MEANS` says)."""
    a, b = flatten_config(saved), flatten_config(plain(config.to_dict()))
    for key in ABSENT_MEANS.keys() & (set(b) - set(a)):
        a[key] = ABSENT_MEANS[key]
    return all(a.get(k) == b.get(k) for k in set(a) | set(b) if k not in IGNORED_KEYS)


def _read_card(path: Path) -> ProcessorCard | None:
    try:
        return ProcessorCard.read(path)
    except DwsError:
        return None


def finished_card(run: RunPlan) -> ProcessorCard | None:
    """The card of a finished run of exactly this config, or None."""
    config = run.config
    if not (config.processor_path.is_file() and config.weights_path.is_file()):
        return None
    card = _read_card(config.processor_path)
    saved = None if card is None else card.training.get("config")
    if card is None or not isinstance(saved, dict) or not config_matches(saved, config):
        return None
    return card


def _floats(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        return {}
    return {str(k): math.nan if v is None else float(v) for k, v in metrics.items()}


def record_from_card(run: RunPlan, card: ProcessorCard, status: RunStatus) -> RunRecord:
    metrics, training = card.metrics, card.training
    baselines = metrics.get("baselines") or {}
    return RunRecord(
        arch=run.arch,
        seed=run.seed,
        directory=run.directory,
        status=status,
        processor=run.config.processor_path,
        test=_floats(metrics.get("test")),
        val=_floats(metrics.get("val")),
        train=_floats(metrics.get("train")),
        heldout=_floats(metrics.get("test_heldout_recipe")),
        parameters=card.model.parameters,
        seconds=training.get("seconds"),
        best_epoch=training.get("best_epoch"),
        epochs_run=training.get("epochs_run"),
        baselines={name: _floats(split.get("test")) for name, split in baselines.items()},
    )


# ------------------------------------------------------------------------------------------------
# the comparison


def _train_run(run: RunPlan, resume: bool, reporter: TrainReporter | None) -> ProcessorCard:
    """Train one run (continuing its saved state with ``resume``); returns its card."""
    from dwscli.train.loop import train

    result = train(run.config, resume=resume, reporter=reporter)
    card = _read_card(result.processor)
    if card is None:
        raise DwsError(f"{result.processor}: the trainer's card cannot be read back")
    return card


def _failed(run: RunPlan, error: Exception) -> RunRecord:
    if isinstance(error, DwsError):
        message, hint = error.message, error.hint
    else:  # a bug, or e.g. CUDA out of memory: recorded, the other runs go on
        message, hint = f"{type(error).__name__}: {error}", None
    return RunRecord(run.arch, run.seed, run.directory, "failed", error=message, hint=hint)


def compare(
    config: TrainConfig | str | Path,
    archs: str | Sequence[str] | None = None,
    seeds: int | None = None,
    output: str | Path | None = None,
    *,
    device: str | None = None,
    epochs: int | None = None,
    max_train_nets: int | None = None,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    train_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resume: bool = True,
    fail_fast: bool = False,
    reporter: CompareReporter | None = None,
) -> CompareResult:
    """Train every arch of ``archs`` on the config's zoo split with the same budget, ``seeds``
    times each (``train.seed`` 0..seeds-1), and write ``results.md``, ``results.csv`` and
    ``results.png`` into ``output``.

    ``config``: a YAML path (its ``compare:`` section supplies defaults for ``archs``,
    ``seeds``, ``output``, ``models`` and ``train_overrides``; see :mod:`dwscli.compare.plan`)
    or a :class:`TrainConfig`. ``epochs`` / ``max_train_nets`` override the budget for every
    run, ``device`` the device. ``resume``: reuse finished runs and continue interrupted ones
    (the default); otherwise every run starts over. A run that fails is recorded and the others
    go on (``fail_fast``: raise at once); the tables then show the runs that finished.
    Everything that can be checked is checked before the first run trains.
    """
    from dwscli.compare import tables
    from dwscli.train.tasks import task_class

    base, section = load_compare_config(config)
    base = base.with_device(device)
    if epochs is not None or max_train_nets is not None:
        budget = {
            "epochs": base.train.epochs if epochs is None else epochs,
            "max_train_nets": base.train.max_train_nets
            if max_train_nets is None
            else max_train_nets,
        }
        base = replace(base, train=replace(base.train, **budget))
        base.train.check(base.source)
    chosen = parse_archs(archs if archs is not None else section.archs)
    count = seeds if seeds is not None else (section.seeds or 1)
    out = (
        Path(output)
        if output is not None
        else (section.output or Path(f"runs/compare-{base.name}"))
    )
    runs = plan_runs(
        base,
        chosen,
        count,
        out,
        models=models if models is not None else section.models,
        train_overrides=train_overrides if train_overrides is not None else section.train,
        reuse=section.reuse,
    )
    check_model_kinds(base, chosen)
    task = task_class(base.task.name)

    reporter = reporter or SilentReporter()
    records: list[RunRecord] = []
    for index, run in enumerate(runs, start=1):
        card = finished_card(run) if resume else None
        train_reporter = reporter.run_started(index, len(runs), run, card is not None)
        try:
            status: RunStatus = "reused"
            if card is None:
                card, status = _train_run(run, resume, train_reporter), "trained"
            record = record_from_card(run, card, status)
        except Exception as error:  # one bad run must not lose the others
            if fail_fast and isinstance(error, DwsError):
                context = f"{run.arch} seed {run.seed}: {error.message}"
                raise DwsError(context, hint=error.hint) from error
            if fail_fast:
                raise
            record = _failed(run, error)
        records.append(record)
        reporter.run_finished(index, len(runs), record)
    if not any(r.ok for r in records):
        raise DwsError(f"every one of the {len(records)} runs failed; no table written")
    metrics = tables.metric_names(records, task.best_metric)
    result = CompareResult(
        name=base.name,
        task=task.name,
        best_metric=task.best_metric,
        higher_is_better=task.higher_is_better,
        metrics=metrics,
        archs=chosen,
        seeds=count,
        output=out,
        runs=records,
        summary=tables.summarise(records, chosen, metrics, count),
        files={},
    )
    result.files = tables.write_all(result, base, runs)
    return result


__all__ = [
    "IGNORED_KEYS",
    "CompareReporter",
    "CompareResult",
    "RunRecord",
    "SilentReporter",
    "compare",
    "config_matches",
    "finished_card",
]
