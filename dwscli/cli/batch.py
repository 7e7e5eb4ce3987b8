"""What every many-checkpoint command shares: the PATH... argument and its options, per-file
error reporting (one line each, skip and go on, exit 1 at the end), and CSV rows on stdout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dwscli.cli.output import Output, progress_bar

T = TypeVar("T")

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
OutputOption = Annotated[
    str | None, typer.Option("--output", "-o", metavar="OUT", help="Output (one input).")
]
OutDirOption = Annotated[
    str | None,
    typer.Option("--out-dir", metavar="DIR", help="Directory for the outputs (same names)."),
]
OodWarningsOption = Annotated[
    bool,
    typer.Option(
        "--ood-warnings/--no-ood-warnings",
        help="Warn (stderr) about each input unlike the processor's training nets; the rows "
        "carry ood_score and in_distribution either way.",
    ),
]
PROGRESS_FROM = 200  # show a progress bar for at least this many checkpoints
#: The columns every processor command's --csv ends with (see dwscli.processors.ood).
OOD_COLUMNS = ["ood_score", "in_distribution"]


class Failures:
    """Counts and reports per-file errors as one line each (stderr)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: Path, error: Exception) -> None:
        from dwscli.cli.errors import report

        self.count += 1
        report(error)


class OodWarnings:
    """Prints one ``warning: <file>: out of distribution for …`` line per input (stderr)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.count = 0

    def __call__(self, path: Path, message: str) -> None:
        self.count += 1
        if self.enabled:
            Output().warning(message)


def expand(paths: list[str], failures: Failures) -> list[Path]:
    from dwscli.paths import expand_paths

    return expand_paths(paths, on_error=lambda error: failures(Path("-"), error))


def finish(out: Output, failures: Failures, done: int) -> None:
    if failures.count:
        out.message(f"{failures.count} of {failures.count + done} checkpoints failed")
        raise typer.Exit(1)


def csv_value(value: Any) -> Any:
    """A CSV cell: booleans as ``true``/``false`` (as in JSON), None as an empty cell."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def write_csv(rows: list[dict[str, Any]], columns: list[str]) -> None:
    import csv
    import sys

    writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: csv_value(row.get(k)) for k in columns} for row in rows)


def run_over_paths(
    paths: list[str],
    description: str,
    run: Callable[..., T],
    *,
    ood_warnings: bool = True,
    **options: Any,
) -> tuple[T, Failures]:
    """Expand PATH... (bad items reported and counted), then ``run(files, on_error=…,
    progress=…, on_warning=…, **options)`` under a progress bar from :data:`PROGRESS_FROM`
    files on; inputs out of the processor's training distribution are warned of unless
    ``ood_warnings`` is false."""
    failures = Failures()
    files = expand(paths, failures)
    enabled = len(files) >= PROGRESS_FROM
    warnings = OodWarnings(ood_warnings)
    with progress_bar(len(files), description, unit="nets", enabled=enabled) as advance:
        result = run(files, on_error=failures, progress=advance, on_warning=warnings, **options)
    return result, failures
