"""The ``dws`` command line: a Typer app with one thin command per job.

Startup must stay fast (``dws --help``, ``dws --version``): this package imports typer and rich
only, and every command imports torch and the library inside its function body.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dwscli import __version__
from dwscli.cli.commands import (
    classifiers,
    compare,
    data,
    equivariance,
    evaluate,
    inrs,
    inspect,
    permute,
    processors,
    render,
    train,
    zoo,
)
from dwscli.cli.errors import run_guarded, state


class DwsGroup(TyperGroup):
    """The root command: runs the app and turns every failure into a short message and exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        state.debug = False
        parent_main = super().main

        def invoke() -> Any:
            return parent_main(
                args=args,
                prog_name=prog_name or "dws",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )

        code = run_guarded(invoke)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="dws",
    cls=DwsGroup,
    help=(
        "Model surgery with weight-space networks (DWSNets): inspect, permute, adapt, edit and "
        "evaluate small MLPs and INRs from their weights."
    ),
    epilog=(
        "Paths: files, directories (their *.safetensors), globs, example:NAME for a shipped "
        "example, and - to read paths from stdin.\n\n"
        "Start with: dws inspect example:tiny-siren"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dws {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks on errors (also DWS_DEBUG=1).")
    ] = False,
) -> None:
    """Model surgery with weight-space networks (DWSNets)."""
    state.debug = debug


for _module in (
    inspect,
    permute,
    equivariance,
    processors,
    classifiers,
    inrs,
    zoo,
    render,
    train,
    evaluate,
    compare,
    data,
):
    _module.register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``dws``) and ``python -m dwscli``."""
    from dwscli.runtime import tune_allocator

    tune_allocator()  # ctypes only, no torch import: keeps --help fast
    typer.main.get_command(app).main(args=argv, prog_name="dws")


__all__ = ["DwsGroup", "app", "main"]
