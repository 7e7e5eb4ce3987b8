"""``dws compare CONFIG.yaml --archs …``: every arch side by side (a thin wrapper over
:func:`dwscli.compare.compare`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import JsonOption, ThreadsOption, TrainDeviceOption
from dwscli.cli.output import Output, make_table, safe_text, stderr_console

if TYPE_CHECKING:
    from dwscli.cli.commands.train import TrainProgress
    from dwscli.compare import CompareResult, RunPlan, RunRecord

EPILOG = (
    "Examples:\n\n"
    "  dws compare configs/fmnist-accuracy.yaml --archs dws,mlp,nfn-hnp,statnn --seeds 3 "
    "-o results/\n\n"
    "  dws compare configs/fmnist-adapt-contrast.yaml --archs dws,nfn-np --epochs 5 "
    "--max-train-nets 500 -o /tmp/quick\n\n"
    "  dws compare configs/fmnist-accuracy.yaml --archs dws,mlp -o results/ --json > summary.json"
)


class CompareProgress:
    """One line per run on stderr, the trainer's progress while a run trains."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self.train: TrainProgress | None = None
        self.failures = 0

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(safe_text(text)), soft_wrap=True)

    def close(self) -> None:
        if self.train is not None:
            self.train.__exit__(None, None, None)
            self.train = None

    def run_started(self, index: int, total: int, run: RunPlan, reused: bool) -> Any:
        from dwscli.cli.commands.train import TrainProgress

        what = "finished, reused" if reused else "training"
        self._print(f"[{index}/{total}] {run.arch} seed {run.seed} ({run.directory}): {what}")
        if reused:
            return None
        self.train = TrainProgress()
        return self.train

    def run_finished(self, index: int, total: int, record: RunRecord) -> None:
        from dwscli.cli.errors import report
        from dwscli.errors import DwsError

        self.close()
        if record.status == "failed":
            self.failures += 1
            report(DwsError(f"{record.arch} seed {record.seed}: {record.error}", hint=record.hint))
        elif record.status == "trained":
            metrics = " ".join(f"{k} {v:.4g}" for k, v in record.test.items())
            self._print(f"[{index}/{total}] {record.arch} seed {record.seed}: test {metrics}")


def _render(result: CompareResult) -> object:
    from dwscli.compare.tables import HIDDEN_IN_MARKDOWN, cell, has_heldout

    names = [n for n in result.metrics if n not in HIDDEN_IN_MARKDOWN]
    best = result.best_metric
    heldout = has_heldout(result)
    rows = [
        [
            row["system"],
            *(
                cell(row["mean"].get(n, float("nan")), row["std"].get(n, float("nan")))
                for n in names
            ),
            *(
                [
                    cell(
                        row["heldout_mean"].get(best, float("nan")),
                        row["heldout_std"].get(best, float("nan")),
                    )
                ]
                if heldout
                else []
            ),
            "-" if row["parameters"] is None else f"{row['parameters']:,}",
            cell(row["seconds_mean"], row["seconds_std"], 1),
            f"{row['runs']}/{row['planned']}",
        ]
        for row in result.summary
    ]
    header = ["arch", *(f"test {n}" for n in names)]
    header += [f"held-out recipes {best}"] if heldout else []
    return make_table(
        [*header, "parameters", "train time (s)", "runs"],
        rows,
        title=f"{result.name}: {result.task}, mean ± std over {result.seeds} seed(s)",
    )


def compare_command(
    config: Annotated[
        str, typer.Argument(metavar="CONFIG.yaml", help="Training config (the shared budget).")
    ],
    archs: Annotated[
        str | None,
        typer.Option(
            "--archs",
            metavar="A,B,…",
            help="Architectures to compare, comma-separated (default: compare.archs).",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", min=1, help="Runs per arch, train.seed 0..N-1 (default 1)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Results folder (default: compare.output, else runs/compare-<name>).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Overrides train.epochs for every run."),
    ] = None,
    max_train_nets: Annotated[
        int | None,
        typer.Option("--max-train-nets", min=1, help="Overrides train.max_train_nets."),
    ] = None,
    device: TrainDeviceOption = None,
    threads: ThreadsOption = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Reuse finished runs and continue interrupted ones, or retrain every run.",
        ),
    ] = True,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first failed run.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Train several architectures on the same zoo split with the same budget and write
    DIR/results.md (mean ± std over seeds of the task's test metrics, parameters, training
    time), DIR/results.csv (one row per run, then mean and std rows per arch) and
    DIR/results.png (bar plot of the task's best metric).

    Each run is an ordinary training run written to DIR/runs/<arch>-s<seed>/ (a processor you
    can load). A run whose card exists for the same config is reused, not retrained: run the
    command again after an interruption, or with more --archs. Model options per arch come from
    the config's compare.models.<arch> section, else its model: section when model.arch is that
    arch, else the arch's defaults. Unknown archs, archs that cannot do the task and config
    mistakes are reported before any training; a run that fails is reported and skipped, and
    the command exits with status 1 at the end.
    """
    import torch

    from dwscli.api import compare

    if threads is not None:
        torch.set_num_threads(threads)
    progress = CompareProgress()
    try:
        result = compare(
            config,
            archs,
            seeds,
            output,
            device=device,
            epochs=epochs,
            max_train_nets=max_train_nets,
            resume=resume,
            fail_fast=fail_fast,
            reporter=progress,
        )
    finally:
        progress.close()
    out = Output(json_mode=json_output)
    out.emit(result.to_dict(), render=lambda: _render(result))
    files = ", ".join(str(p) for p in result.files.values())
    out.success(f"wrote {files}")
    if result.failed:
        out.message(f"{len(result.failed)} of {len(result.runs)} runs failed")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("compare", help=doc_help(compare_command), epilog=EPILOG)(compare_command)
