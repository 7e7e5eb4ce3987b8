"""One module per command; each has ``register(app)``. Nothing here imports torch at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def doc_help(function: Callable[..., Any]) -> str:
    """A command's docstring as help text: paragraphs kept, lines within a paragraph joined."""
    import inspect

    doc = inspect.getdoc(function) or ""
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n") if p.strip())
