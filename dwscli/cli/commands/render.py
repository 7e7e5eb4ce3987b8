"""``dws render INR... -o image.png``: decode INRs back to the images they encode."""

from __future__ import annotations

from typing import Annotated

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import ForceOption, JsonOption
from dwscli.cli.output import Output

EPILOG = (
    "Examples:\n\n"
    "  dws render example:mnist-inr -o digit.png\n\n"
    "  dws render inrs/ --grid -o grid.png\n\n"
    "  dws render 'inrs/*.safetensors' --grid --columns 10 --scale 2 -o grid.png"
)


def render_command(
    paths: Annotated[list[str], typer.Argument(metavar="INR...", help="INR checkpoints.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="PNG", help="Image to write.")],
    grid: Annotated[bool, typer.Option("--grid", help="Tile many INRs into one picture.")] = False,
    columns: Annotated[int | None, typer.Option(min=1, help="Grid columns.")] = None,
    scale: Annotated[int, typer.Option(min=1, max=32, help="Pixel upscaling factor.")] = 4,
    force: ForceOption = False,
    json_output: JsonOption = False,
) -> None:
    """Render image INRs (2 coordinates -> 1 intensity) with the conventions in their metadata."""
    from dwscli.api import render_inrs
    from dwscli.paths import expand_paths

    files = expand_paths(paths)
    result = render_inrs(files, output, grid=grid, scale=scale, columns=columns, force=force)
    out = Output(json_mode=json_output)
    out.emit(result, render=lambda: None)
    out.success(
        f"wrote {result['output']} ({result['inrs']} INR{'s' if result['inrs'] > 1 else ''})"
    )


def register(app: typer.Typer) -> None:
    app.command("render", help=doc_help(render_command), epilog=EPILOG)(render_command)
