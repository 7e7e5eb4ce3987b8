"""``dws permute PATH -o OUT``: a function-preserving random permutation of hidden neurons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import (
    ActivationOption,
    AllowNonfiniteOption,
    ForceOption,
    JsonOption,
    SeedOption,
)
from dwscli.cli.output import Output, key_value_table

if TYPE_CHECKING:
    from dwscli.api import PermuteResult

EPILOG = (
    "Examples:\n\n"
    "  dws permute example:tiny-siren -o /tmp/permuted.safetensors\n\n"
    "  dws permute net.safetensors -o net-perm.safetensors --seed 7 --force\n\n"
    "  dws permute net.safetensors -o net-perm.safetensors --json"
)


def render(result: PermuteResult) -> object:
    preserved = "yes" if result.function_preserved else "NO"
    return key_value_table(
        {
            "input": result.input,
            "output": result.output,
            "spec": result.spec,
            "seed": result.seed,
            "hidden layers permuted": result.permuted_layers,
            "max |f(x) - f'(x)|": (
                f"{result.max_abs_difference:.3g} on {result.check_inputs} random inputs (float64)"
            ),
            "function preserved": preserved,
        }
    )


def permute_command(
    path: Annotated[
        str,
        typer.Argument(metavar="PATH", help="Checkpoint to permute (a file or example:NAME)."),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", metavar="OUT", help="Where to write the permuted checkpoint."
        ),
    ],
    seed: SeedOption = None,
    force: ForceOption = False,
    activation: ActivationOption = None,
    allow_nonfinite: AllowNonfiniteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Permute the hidden neurons of a network at random: new weights, the same function.

    Rows of W_i and b_i and columns of W_(i+1) are permuted together for every hidden layer; the
    output keeps the input's keys, dtypes and metadata and records the operation and seed. The
    largest difference between the two networks' outputs on random inputs is reported.
    """
    from dwscli.api import permute_checkpoint

    out = Output(json_mode=json_output)
    result = permute_checkpoint(
        path, output, seed=seed, force=force, activation=activation, allow_nonfinite=allow_nonfinite
    )
    out.emit(result.to_dict(), render=lambda: render(result))
    if result.permuted_layers == 0:
        out.warning(
            "the network has no hidden layer: nothing to permute, the weights are unchanged"
        )
    out.success(f"wrote {result.output}")


def register(app: typer.Typer) -> None:
    app.command("permute", help=doc_help(permute_command), epilog=EPILOG)(permute_command)
