"""``dws check-equivariance [PROCESSOR]``: run the library's equivariance checks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import CheckSeedOption, JsonOption
from dwscli.cli.output import Output, make_table

EPILOG = (
    "Examples:\n\n"
    "  dws check-equivariance\n\n"
    "  dws check-equivariance --seed 3 --json\n\n"
    "  dws check-equivariance mnist-inr-classifier\n\n"
    "  dws check-equivariance path/to/processor.yaml"
)


def render(rows: list[dict[str, Any]]) -> object:
    table_rows = [
        (
            row["module"],
            row["spec"],
            row["kind"],
            f"{float(row['max_error']):.2e}",
            "ok" if row["passed"] else "FAILED",
        )
        for row in rows
    ]
    columns = ("module", "spec", "kind", "max error", "result")
    return make_table(columns, table_rows, no_wrap=columns)


def check_equivariance_command(
    processor: Annotated[
        str | None,
        typer.Argument(
            metavar="PROCESSOR",
            help="A shipped processor's name or a card path; without it, the library's layers.",
            show_default=False,
        ),
    ] = None,
    seed: CheckSeedOption = 0,
    json_output: JsonOption = False,
) -> None:
    """Check that layers (or a processor) are equivariant / invariant to hidden permutations.

    Applies each module to random weight-space features and to randomly permuted ones, in
    float64, and prints the largest deviation from exact equivariance. Exit code 1 if any check
    fails.
    """
    from dwscli.api import check_equivariance

    out = Output(json_mode=json_output)
    with out.status("running equivariance checks…"):
        rows = check_equivariance(processor, seed=seed)
    out.emit(rows, render=lambda: render(rows))
    failed = sum(1 for row in rows if not row["passed"])
    if failed:
        out.message(f"{failed} of {len(rows)} checks failed")
        raise typer.Exit(1)
    out.success(f"all {len(rows)} checks passed")


def register(app: typer.Typer) -> None:
    app.command("check-equivariance", help=doc_help(check_equivariance_command), epilog=EPILOG)(
        check_equivariance_command
    )
