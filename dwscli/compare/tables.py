"""The comparison's outputs: ``results.md``, ``results.csv`` and ``results.png``.

- ``results.md``: what was compared (task, zoo, split sizes, budget, seeds, each arch's options),
  then one table row per arch: mean ± std over seeds of the task's test metrics (the best metric
  first, in bold for the best arch and every arch tied with it; ``loss`` only in the CSV), the
  best metric on the held-out-recipe nets (only when the zoo has a ``test_heldout_recipe``
  split), parameters, training time (the trainer's epoch time in seconds) and ``runs`` as
  finished/planned. A trainer baseline the task fits beside every run (StatNN for ``accuracy``)
  gets a row ``baseline:<name>``. With one seed a cell is the value alone; std is the sample
  standard deviation (n - 1).
- ``results.csv``: one row per run (``seed`` 0, 1, …; ``status`` trained, reused or failed), then
  per arch a ``mean`` and a ``std`` row (``seed`` column). Columns: ``arch, seed, status``,
  ``test_<metric>`` for every test metric, ``test_heldout_recipe_<metric>`` (when the zoo has that
  split), ``val_<metric>``, ``parameters, seconds, best_epoch,
  epochs_run, processor, error``. Baselines use ``arch`` = ``baseline:<name>``.
- ``results.png``: a bar per arch (and baseline) of the best metric's mean, std as error bars.

Each file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dwscli.errors import DwsError
from dwscli.nn.archs import get_arch
from dwscli.processors.card import ProcessorCard
from dwscli.weights.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from dwscli.compare.plan import RunPlan
    from dwscli.compare.results import CompareResult, RunRecord
    from dwscli.train.config import TrainConfig

HIDDEN_IN_MARKDOWN = ("loss",)
HELDOUT = "test_heldout_recipe"  # the held-out-recipe split's name (dwscli.data.zoo_format)


def metric_names(records: Sequence[RunRecord], best: str) -> list[str]:
    """Test metrics of the finished runs, in the trainer's order, the best metric first."""
    names: dict[str, None] = {best: None}
    for record in records:
        names.update(dict.fromkeys(record.test))
    return list(names)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN when undefined)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    std = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return statistics.fmean(finite), std


def _stats(rows: Sequence[dict[str, float]], metrics: Sequence[str]) -> tuple[dict, dict]:
    mean, std = {}, {}
    for name in metrics:
        mean[name], std[name] = mean_std([row.get(name, math.nan) for row in rows])
    return mean, std


def summarise(
    records: Sequence[RunRecord], archs: Sequence[str], metrics: Sequence[str], seeds: int
) -> list[dict[str, Any]]:
    """One row per arch, then one per trainer baseline: mean/std of every test metric."""
    rows: list[dict[str, Any]] = []
    for arch in archs:
        done = [r for r in records if r.arch == arch and r.ok]
        mean, std = _stats([r.test for r in done], metrics)
        train_mean, train_std = _stats([r.train for r in done], metrics)
        heldout_mean, heldout_std = _stats([r.heldout for r in done if r.heldout], metrics)
        seconds = mean_std([r.seconds for r in done if r.seconds is not None])
        parameters = {r.parameters for r in done if r.parameters is not None}
        rows.append(
            {
                "system": arch,
                "kind": "arch",
                "runs": len(done),
                "planned": seeds,
                "mean": mean,
                "std": std,
                "train_mean": train_mean,
                "train_std": train_std,
                "heldout_mean": heldout_mean,
                "heldout_std": heldout_std,
                "parameters": max(parameters) if parameters else None,
                "seconds_mean": seconds[0],
                "seconds_std": seconds[1],
            }
        )
    for name, per_seed in baseline_runs(records).items():
        mean, std = _stats(list(per_seed.values()), metrics)
        rows.append(
            {
                "system": f"baseline:{name}",
                "kind": "baseline",
                "runs": len(per_seed),
                "planned": seeds,
                "mean": mean,
                "std": std,
                "train_mean": {},
                "train_std": {},
                "heldout_mean": {},
                "heldout_std": {},
                "parameters": None,
                "seconds_mean": math.nan,
                "seconds_std": math.nan,
            }
        )
    return rows


def baseline_runs(records: Sequence[RunRecord]) -> dict[str, dict[int, dict[str, float]]]:
    """``{baseline: {seed: test metrics}}``: the trainer fits a baseline on a seed's training
    nets, the same for every arch, so the first run of each seed that has it counts."""
    found: dict[str, dict[int, dict[str, float]]] = {}
    for record in records:
        for name, metrics in record.baselines.items():
            found.setdefault(name, {}).setdefault(record.seed, metrics)
    return found


# ------------------------------------------------------------------------------------------------
# Markdown


def number(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value != 0 and (abs(value) >= 10**6 or abs(value) < 10**-digits):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def cell(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(std):
        return number(mean, digits)
    return f"{number(mean, digits)} ± {number(std, digits)}"


def _best_systems(result: CompareResult) -> set[str]:
    """The arch(s) with the best mean of the best metric (every one of a tie)."""
    means = {
        row["system"]: row["mean"].get(result.best_metric, math.nan)
        for row in result.summary
        if row["kind"] == "arch"
    }
    finite = [v for v in means.values() if math.isfinite(v)]
    if not finite:
        return set()
    best = max(finite) if result.higher_is_better else min(finite)
    return {name for name, value in means.items() if value == best}


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def markdown(result: CompareResult, base: TrainConfig, runs: Sequence[RunPlan]) -> str:
    shown = [m for m in result.metrics if m not in HIDDEN_IN_MARKDOWN]
    lines = [f"# dws compare: {result.name}", ""]
    lines += _context_lines(result, base, runs)
    best = _best_systems(result)
    train_column = f"train {result.best_metric}"
    heldout = has_heldout(result)
    heldout_columns = [f"held-out recipes {result.best_metric}"] if heldout else []
    header = ["arch", *shown, *heldout_columns, train_column, "parameters", "train time (s)"]
    header.append("runs")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in result.summary:
        cells = [row["system"]]
        for name in shown:
            text = cell(row["mean"].get(name, math.nan), row["std"].get(name, math.nan))
            if name == result.best_metric and row["system"] in best:
                text = f"**{text}**"
            cells.append(text)
        best_metric = result.best_metric
        if heldout:
            cells.append(
                cell(
                    row["heldout_mean"].get(best_metric, math.nan),
                    row["heldout_std"].get(best_metric, math.nan),
                )
            )
        cells.append(
            cell(
                row["train_mean"].get(best_metric, math.nan),
                row["train_std"].get(best_metric, math.nan),
            )
        )
        cells.append("n/a" if row["parameters"] is None else str(row["parameters"]))
        cells.append(cell(row["seconds_mean"], row["seconds_std"], 1))
        cells.append(f"{row['runs']}/{row['planned']}")
        lines.append("| " + " | ".join(cells) + " |")
    failed = result.failed
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r.arch} seed {r.seed}: {r.error}" for r in failed]
    return "\n".join(lines) + "\n"


def has_heldout(result: CompareResult) -> bool:
    """Whether any run was also scored on held-out-recipe nets."""
    return any(r.heldout for r in result.runs)


def _context_lines(result: CompareResult, base: TrainConfig, runs: Sequence[RunPlan]) -> list[str]:
    zoo = _zoo_info(result)
    s = base.train
    splits = zoo.get("splits") or {}
    split_text = "/".join(str(splits.get(k, "?")) for k in ("train", "val", "test"))
    if splits.get("test_heldout_recipe"):
        split_text += f" (+{splits['test_heldout_recipe']} held-out-recipe test)"
    seeds = "0" if result.seeds == 1 else f"0..{result.seeds - 1}"
    direction = "higher" if result.higher_is_better else "lower"
    lines = [
        f"Task `{result.task}` on zoo `{zoo.get('path', base.zoo)}` ({zoo.get('kind', '?')} "
        f"nets `{zoo.get('spec', '?')}`, {zoo.get('dataset', '?')}): {split_text} "
        f"train/val/test nets, {zoo.get('train_nets_used', '?')} used for training.",
        "",
        f"Same budget for every arch: {s.epochs} epoch{'s' if s.epochs != 1 else ''}, "
        f"batch {s.batch_size}, lr {s.lr:g}, "
        f"{s.schedule} schedule; seeds {seeds} (train.seed).",
        "",
        f"Test-split metrics of the model best on validation {result.best_metric} "
        f"({direction} is better), mean ± std over seeds. Training time: seconds of training "
        "epochs (validation included, final test excluded).",
        "",
        "Options per arch (the model's, and train settings that differ from the config's):",
        "",
    ]
    for arch in result.archs:
        run = next(r for r in runs if r.arch == arch)
        permuted = (
            run.config.train.permutation_augmentation
            or get_arch(arch).force_permutation_augmentation
        )
        text = (
            f"- `{arch}`: {_options_text(run.config.model.to_dict())}; permutation "
            f"augmentation {'on' if permuted else 'off'}"
        )
        shared = asdict(base.train)
        changed = {
            k: v for k, v in asdict(run.config.train).items() if k != "seed" and shared[k] != v
        }
        if changed:
            text += f"; train overrides: {_options_text(changed)}"
        reused = [r for r in runs if r.arch == arch and r.reused_from]
        for r in reused:
            text += f"; seed {r.seed} is the processor `{r.config.name}` of `{r.reused_from}`"
        lines.append(text)
    return lines


def _zoo_info(result: CompareResult) -> dict[str, Any]:
    for record in result.runs:
        if record.ok and record.processor is not None:
            try:
                zoo = ProcessorCard.read(record.processor).training.get("zoo")
            except DwsError:
                continue
            if isinstance(zoo, dict):
                return dict(zoo)
    return {}


# ------------------------------------------------------------------------------------------------
# CSV


def csv_text(result: CompareResult) -> str:
    val_names = list(dict.fromkeys(k for r in result.runs for k in r.val))
    train_names = list(dict.fromkeys(k for r in result.runs for k in r.train))
    heldout = result.metrics if has_heldout(result) else []
    columns = [
        "arch",
        "seed",
        "status",
        *(f"test_{m}" for m in result.metrics),
        *(f"{HELDOUT}_{m}" for m in heldout),
        *(f"val_{m}" for m in val_names),
        *(f"train_{m}" for m in train_names),
        "parameters",
        "seconds",
        "best_epoch",
        "epochs_run",
        "processor",
        "error",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()

    def fmt(value: Any) -> Any:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.6g}"
        return "" if value is None else value

    for record in result.runs:
        row: dict[str, Any] = {"arch": record.arch, "seed": record.seed, "status": record.status}
        row.update({f"test_{m}": record.test.get(m) for m in result.metrics})
        row.update({f"{HELDOUT}_{m}": record.heldout.get(m) for m in heldout})
        row.update({f"val_{m}": record.val.get(m) for m in val_names})
        row.update({f"train_{m}": record.train.get(m) for m in train_names})
        row.update(
            parameters=record.parameters,
            seconds=record.seconds,
            best_epoch=record.best_epoch,
            epochs_run=record.epochs_run,
            processor=record.processor,
            error=record.error,
        )
        writer.writerow({k: fmt(v) for k, v in row.items()})
    for name, per_seed in baseline_runs(result.runs).items():
        for seed, metrics in per_seed.items():
            row = {"arch": f"baseline:{name}", "seed": seed, "status": "fitted"}
            row.update({f"test_{m}": metrics.get(m) for m in result.metrics})
            writer.writerow({k: fmt(v) for k, v in row.items()})
    for summary in result.summary:
        for stat in ("mean", "std"):
            row = {"arch": summary["system"], "seed": stat}
            row.update({f"test_{m}": summary[stat].get(m) for m in result.metrics})
            row.update({f"{HELDOUT}_{m}": summary[f"heldout_{stat}"].get(m) for m in heldout})
            if summary["kind"] == "arch":
                row["parameters"] = summary["parameters"] if stat == "mean" else None
                row["seconds"] = summary[f"seconds_{stat}"]
            writer.writerow({k: fmt(v) for k, v in row.items()})
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# bar plot


def bar_plot_png(result: CompareResult) -> bytes:
    """The best metric per system as bars with std error bars (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = result.best_metric
    rows = [r for r in result.summary if math.isfinite(r["mean"].get(metric, math.nan))]
    names = [r["system"] for r in rows]
    means = [r["mean"][metric] for r in rows]
    errors = [0.0 if math.isnan(r["std"][metric]) else r["std"][metric] for r in rows]
    colors = ["tab:blue" if r["kind"] == "arch" else "tab:gray" for r in rows]

    figure = Figure(figsize=(max(4.0, 0.9 * len(rows) + 2.0), 3.6), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(rows)))
    axes.bar(positions, means, yerr=errors, capsize=4, color=colors)
    for x, value in zip(positions, means):
        axes.annotate(
            number(value, 3),
            (x, value),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=8,
        )
    axes.set_xticks(positions, names, rotation=30, ha="right")
    axes.set_ylabel(f"test {metric}")
    seeds = f"{result.seeds} seeds" if result.seeds > 1 else "1 seed"
    axes.set_title(f"{result.name}: {result.task} ({seeds}, mean ± std)", fontsize=10)
    axes.axhline(0.0, color="black", linewidth=0.6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_all(result: CompareResult, base: TrainConfig, runs: Sequence[RunPlan]) -> dict[str, Path]:
    """Write the three files into ``result.output``; returns their paths."""
    out = result.output
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": out / "results.md",
        "csv": out / "results.csv",
        "plot": out / "results.png",
    }
    atomic_write_bytes(files["markdown"], markdown(result, base, runs).encode(), force=True)
    atomic_write_bytes(files["csv"], csv_text(result).encode(), force=True)
    atomic_write_bytes(files["plot"], bar_plot_png(result), force=True)
    return files


__all__ = [
    "bar_plot_png",
    "baseline_runs",
    "cell",
    "csv_text",
    "markdown",
    "mean_std",
    "metric_names",
    "number",
    "summarise",
    "write_all",
]
