"""Small example checkpoints shipped with the package (a few KB each).

``example_path("tiny-siren")`` gives the file; on the command line the same file is written
``example:tiny-siren`` wherever a checkpoint path is accepted. ``scripts/make_examples.py``
regenerates them deterministically.
"""

from __future__ import annotations

from pathlib import Path

from dwscli.errors import DwsError

EXAMPLES_DIR = Path(__file__).resolve().parent
SUFFIX = ".safetensors"


def list_examples() -> list[str]:
    """Names of the shipped example checkpoints, sorted."""
    return sorted(p.name.removesuffix(SUFFIX) for p in EXAMPLES_DIR.glob(f"*{SUFFIX}"))


def example_path(name: str) -> Path:
    """Path of the shipped example checkpoint ``name`` (with or without ``.safetensors``)."""
    stem = name.strip().removesuffix(SUFFIX)
    path = EXAMPLES_DIR / f"{stem}{SUFFIX}"
    if not stem or "/" in stem or not path.is_file():
        available = ", ".join(list_examples()) or "none"
        raise DwsError(f"no example checkpoint named {name!r}", hint=f"examples: {available}")
    return path


__all__ = ["EXAMPLES_DIR", "example_path", "list_examples"]
