"""One module per command; each has ``register(app)``. Nothing here imports torch at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def doc_help(function: Callable[..., Any]) -> str:
    """A command's docstring as help text: paragraphs kept, lines within a paragraph joined."""
    import inspect

    doc = inspect.getdoc(function) or ""
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n") if p.strip())


def add_commands(
    app: Any, commands: dict[str, Callable[..., Any]], examples: dict[str, str]
) -> None:
    """Register each ``name: function`` on a Typer app, with its docstring as help and its
    examples as the epilog (every command shows examples in ``--help``)."""
    for name, function in commands.items():
        app.command(name, help=doc_help(function), epilog="Examples:\n\n" + examples[name])(
            function
        )
