"""``dws predict-accuracy`` and ``dws adapt``: processors for classifier checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import ForceOption, JsonOption
from dwscli.cli.output import Output, make_table, progress_bar

PathsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="PATH...",
        help="Checkpoints: files, directories, globs, example:NAME, or - for paths on stdin.",
        show_default=False,
    ),
]
ProcessorOption = Annotated[
    str | None,
    typer.Option("--processor", "-p", help="A shipped processor name or a .yaml card path."),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")
]
FailFastOption = Annotated[
    bool, typer.Option("--fail-fast", help="Stop at the first bad file instead of skipping it.")
]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Checkpoints per forward pass.")
]
PROGRESS_FROM = 200  # show a progress bar for at least this many checkpoints


class _Failures:
    """Counts and reports per-file errors as one line each (stderr)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: Path, error: Exception) -> None:
        from dwscli.cli.errors import report

        self.count += 1
        report(error)


def _expand(paths: list[str], failures: _Failures) -> list[Path]:
    from dwscli.paths import expand_paths

    return expand_paths(paths, on_error=lambda error: failures(Path("-"), error))


def _finish(out: Output, failures: _Failures, done: int) -> None:
    if failures.count:
        out.message(f"{failures.count} of {failures.count + done} checkpoints failed")
        raise typer.Exit(1)


def predict_accuracy_command(
    paths: PathsArgument,
    processor: ProcessorOption = None,
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Write CSV on stdout.")] = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
) -> None:
    """Predict each classifier's test accuracy from its weights alone (no data needed).

    One row per checkpoint, in input order. Hidden widths may differ from the processor's
    training nets; depth, input and output widths and activation must match.
    """
    from dwscli.processors.run import predict_accuracy

    out = Output(json_mode=json_output)
    failures = _Failures()
    files = _expand(paths, failures)
    with progress_bar(
        len(files), "predict-accuracy", unit="nets", enabled=len(files) >= PROGRESS_FROM
    ) as advance:
        rows = predict_accuracy(
            files,
            processor=processor,
            batch_size=batch_size,
            device=device,
            fail_fast=fail_fast,
            on_error=failures,
            progress=advance,
        )
    if csv_output:
        _write_csv(rows, ["path", "spec", "predicted_accuracy"])
    else:
        out.emit(
            rows,
            render=lambda: make_table(
                ["path", "spec", "predicted accuracy"],
                [[r["path"], r["spec"], f"{100 * r['predicted_accuracy']:.1f} %"] for r in rows],
                no_wrap=("predicted accuracy",),
            ),
        )
    _finish(out, failures, len(rows))


def _write_csv(rows: list[dict[str, Any]], columns: list[str]) -> None:
    import csv
    import sys

    writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def adapt_command(
    paths: PathsArgument,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="OUT", help="Output (one input).")
    ] = None,
    out_dir: Annotated[
        str | None,
        typer.Option("--out-dir", metavar="DIR", help="Directory for the outputs (same names)."),
    ] = None,
    processor: ProcessorOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
) -> None:
    """Adapt classifiers to a new input domain in one forward pass (no retraining, no labels).

    Writes new checkpoints with each input's keys, dtypes and metadata, plus provenance (the
    processor and its version). Inputs are never overwritten unless --force.
    """
    from dwscli.errors import DwsError
    from dwscli.processors.run import adapt

    if (output is None) == (out_dir is None):
        raise DwsError("pass exactly one of -o OUT and --out-dir DIR", exit_code=2)
    out = Output(json_mode=json_output)
    failures = _Failures()
    files = _expand(paths, failures)
    with progress_bar(
        len(files), "adapt", unit="nets", enabled=len(files) >= PROGRESS_FROM
    ) as advance:
        rows = adapt(
            files,
            output=Path(output) if output else None,
            out_dir=Path(out_dir) if out_dir else None,
            processor=processor,
            batch_size=batch_size,
            device=device,
            force=force,
            fail_fast=fail_fast,
            on_error=failures,
            progress=advance,
        )
    out.emit(
        rows,
        render=lambda: make_table(["input", "output"], [[r["input"], r["output"]] for r in rows]),
    )
    if rows:
        out.success(f"adapted {len(rows)} checkpoint{'s' if len(rows) != 1 else ''}")
    _finish(out, failures, len(rows))


EXAMPLES = {
    "predict-accuracy": (
        "  dws predict-accuracy model.safetensors\n\n"
        "  dws predict-accuracy runs/ --csv > accuracies.csv\n\n"
        "  find runs -name '*.safetensors' | dws predict-accuracy - --json"
    ),
    "adapt": (
        "  dws adapt model.safetensors -o model-adapted.safetensors\n\n"
        "  dws adapt 'runs/*.safetensors' --out-dir adapted/\n\n"
        "  dws adapt example:fmnist-mlp -p fmnist-adapt-contrast -o /tmp/adapted.safetensors"
    ),
}


def register(app: typer.Typer) -> None:
    for name, function in (
        ("predict-accuracy", predict_accuracy_command),
        ("adapt", adapt_command),
    ):
        app.command(name, help=doc_help(function), epilog="Examples:\n\n" + EXAMPLES[name])(
            function
        )
