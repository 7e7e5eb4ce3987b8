"""Option types shared by the commands, so that a flag means the same thing everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

from dwscli.weights.activations import describe as describe_activations

JsonOption = Annotated[
    bool, typer.Option("--json", help="Write the result as JSON on stdout (for scripts).")
]
ThreadsOption = Annotated[
    int | None, typer.Option("--threads", min=1, help="CPU threads for torch (default: torch's).")
]
TrainDeviceOption = Annotated[
    str | None,
    typer.Option("--device", metavar="auto|cpu|cuda", help="Overrides train.device."),
]
SeedOption = Annotated[
    int | None,
    typer.Option("--seed", help="Random seed; without it one is drawn and reported.", min=0),
]
CheckSeedOption = Annotated[int, typer.Option("--seed", help="Random seed of the check.", min=0)]
ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Overwrite OUT if it exists (even an input).")
]
ActivationOption = Annotated[
    str | None,
    typer.Option(
        "--activation",
        "-a",
        metavar="NAME",
        help=(
            "Activation when the checkpoint's metadata does not record it: "
            f"{describe_activations()}, with options as in 'sine;w0=30'."
        ),
    ),
]
AllowNonfiniteOption = Annotated[
    bool,
    typer.Option(
        "--allow-nonfinite",
        help="Accept NaN/Inf weights (refused by default: they usually mean a broken file).",
    ),
]
