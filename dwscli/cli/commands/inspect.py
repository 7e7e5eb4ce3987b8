"""``dws inspect PATH...``: what a checkpoint holds and which processors fit it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import ActivationOption, AllowNonfiniteOption, JsonOption
from dwscli.cli.output import Output, key_value_table, make_table

if TYPE_CHECKING:
    from rich.console import RenderableType

    from dwscli.errors import DwsError

EPILOG = (
    "Examples:\n\n"
    "  dws inspect example:tiny-siren\n\n"
    "  dws inspect net.safetensors --activation tanh\n\n"
    "  dws inspect zoo/ --json | jq '.[].spec'\n\n"
    "  find runs -name '*.safetensors' | dws inspect -"
)

_MAX_VALUE_CHARS = 100


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


_SOURCES = {
    "argument": "from --activation",
    "default": "a guess: the file does not say; pass --activation",
}

_SHORT_SOURCES = {
    "metadata:dws.spec": "dws.spec",
    "metadata:activation": "metadata",
    "argument": "--activation",
    "default": "guess",
}


def activation_origin(source: str) -> str:
    """Where the activation came from, for people: ``metadata:dws.spec`` -> ``from metadata …``."""
    if source.startswith("metadata:"):
        return f"from metadata {source.removeprefix('metadata:')}"
    return _SOURCES.get(source, source)


def _layout_cell(layout: dict[str, Any]) -> str:
    modules = [layer["module"] or layer["weight"] for layer in layout["layers"]]
    text = f"{layout['format']}, linear layers {', '.join(modules)}"
    bias_free = layout["bias_free_layers"]
    if bias_free:
        text += f" (no bias: {', '.join(modules[i] for i in bias_free)})"
    return text


def render_one(info: dict[str, Any]) -> RenderableType:
    fields: dict[str, object] = {
        "spec": info["spec"],
        "layers": info["depth"],
        "parameters": f"{info['parameters']:,}",
        "dtype": ", ".join(info["dtypes"]),
        "activation": f"{info['activation']} ({activation_origin(info['activation_source'])})",
        "layout": _layout_cell(info["layout"]),
    }
    fields["processors"] = ", ".join(info["processors"]) or "none shipped fit this spec"
    metadata = info["metadata"]
    if not metadata:
        fields["metadata"] = "(none)"
    for key, value in sorted(metadata.items()):
        fields[f"metadata {key}"] = _short(value)
    return key_value_table(fields, title=info["path"])


def _spec_cell(info: dict[str, Any]) -> str:
    """The spec, flagged when its activation is not the file's own statement."""
    source = info["activation_source"]
    if source.startswith("metadata:"):
        return info["spec"]
    return f"{info['spec']} ({_SHORT_SOURCES.get(source, source)})"


def render_many(infos: list[dict[str, Any]]) -> RenderableType:
    rows = [
        (
            info["path"],
            _spec_cell(info),
            f"{info['parameters']:,}",
            ", ".join(info["dtypes"]),
            ", ".join(info["processors"]) or "-",
        )
        for info in infos
    ]
    widest_spec = max((len(row[1]) for row in rows), default=14)
    return make_table(
        ("path", "spec", "params", "dtype", "processors"),
        rows,
        no_wrap=("params", "dtype"),
        # a spec reads whole (2-16-16-1:sine;w0=30) unless it is unusually long
        min_width={"path": 20, "spec": min(max(widest_spec, 14), 28), "processors": 10},
    )


def inspect_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Checkpoints: files, directories, globs, example:NAME, or - for stdin.",
            show_default=False,
        ),
    ],
    activation: ActivationOption = None,
    allow_nonfinite: AllowNonfiniteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Show a checkpoint's spec, size, dtype, metadata and the shipped processors that fit it.

    With several checkpoints, one row each (use --json for everything); a file that cannot be
    read is reported on stderr and skipped, and the exit code is 1 at the end.
    """
    from dwscli.api import inspect_checkpoint, processors
    from dwscli.cli.errors import report
    from dwscli.errors import DwsError
    from dwscli.paths import expand_paths

    out = Output(json_mode=json_output)
    failures = 0

    def fail(error: DwsError) -> None:
        nonlocal failures
        failures += 1
        report(error)

    cards = processors()
    infos: list[dict[str, Any]] = []
    for path in expand_paths(paths, on_error=fail):
        try:
            infos.append(
                inspect_checkpoint(
                    path, activation=activation, allow_nonfinite=allow_nonfinite, processors=cards
                )
            )
        except DwsError as error:
            fail(error)
    if infos:
        out.emit(
            infos, render=lambda: render_one(infos[0]) if len(infos) == 1 else render_many(infos)
        )
    if failures:
        total = failures + len(infos)
        if total > 1:
            out.message(f"{failures} of {total} checkpoints could not be read")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("inspect", help=doc_help(inspect_command), epilog=EPILOG)(inspect_command)
