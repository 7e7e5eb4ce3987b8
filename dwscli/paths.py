"""Turn the paths a user typed into a list of checkpoint files.

Every command that takes checkpoints accepts, in any mix:

- a file (``net.safetensors``, ``net.pt``), passed through as is (the loader checks it);
- a directory: every ``*.safetensors`` file directly inside it, in natural order
  (``net2`` before ``net10``);
- a glob (``zoo/*.safetensors``, ``runs/**/best.safetensors``), matches in natural order;
- ``example:NAME``: a checkpoint shipped with dws (see :mod:`dwscli.examples`);
- ``-``: read one such item per line from standard input (blank lines and ``#`` comments skipped).

This module must stay free of torch so that the CLI starts fast.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from dwscli import limits
from dwscli.errors import DwsError

EXAMPLE_PREFIX = "example:"
STDIN = "-"
DIRECTORY_PATTERN = "*.safetensors"
_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")

ErrorHandler = Callable[[DwsError], None]


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``net2`` < ``net10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part
    )


def _natural_sorted(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: natural_key(str(p)))


def _expand_directory(directory: Path) -> list[Path]:
    found = _natural_sorted(p for p in directory.glob(DIRECTORY_PATTERN) if p.is_file())
    if not found:
        raise DwsError(
            f"{directory}: directory holds no {DIRECTORY_PATTERN} files",
            hint="pass the checkpoint files themselves, or a glob such as 'dir/**/*.safetensors'",
        )
    return found


def _expand_glob(pattern: str) -> list[Path]:
    matches = _natural_sorted(Path(m) for m in glob.glob(pattern, recursive=True))
    if not matches:
        raise DwsError(f"{pattern}: no files match this pattern")
    result: list[Path] = []
    for match in matches:
        result.extend(_expand_directory(match) if match.is_dir() else [match])
    return result


def expand_item(item: str) -> list[Path]:
    """Expand one item (file, directory, glob or ``example:NAME``; not ``-``)."""
    text = os.path.expanduser(item.strip())
    if not text:
        raise DwsError("empty path")
    path = Path(text)
    if text.startswith(EXAMPLE_PREFIX) and not path.exists():
        from dwscli.examples import example_path

        return [example_path(text.removeprefix(EXAMPLE_PREFIX))]
    if path.is_dir():
        return _expand_directory(path)
    if _GLOB_CHARS.search(text) and not path.exists():
        return _expand_glob(text)
    return [path]


def read_stdin_items(stream: TextIO) -> list[str]:
    """Non-blank, non-comment lines of ``stream``, stripped."""
    lines = (line.strip() for line in stream)
    return [line for line in lines if line and not line.startswith("#")]


class ExpandedPaths(list[Path]):
    """Checkpoint files already expanded from user items (:func:`expand_paths`' result):
    expanding them again hands them back unchanged, so the API functions that expand their
    ``paths`` can be called with what the command line expanded."""


def expand_paths(
    items: Sequence[str | os.PathLike[str]],
    *,
    stdin: TextIO | None = None,
    on_error: ErrorHandler | None = None,
) -> list[Path]:
    """Expand user-typed path items into checkpoint files, in order.

    An item that expands to nothing (a glob without matches, a directory without checkpoints, an
    unknown example) raises :class:`DwsError`, or, when ``on_error`` is given, is reported to it
    and skipped, so that one bad item among many does not stop the rest. Standard input is read
    once, however many ``-`` items there are. Files are not opened here: the loader reports
    missing or unreadable files.
    """
    if isinstance(items, ExpandedPaths):
        return items
    result = ExpandedPaths()
    stdin_read = False
    for raw in items:
        item = os.fspath(raw)
        if item == STDIN:
            if stdin_read:
                continue
            stdin_read = True
            sub_items = read_stdin_items(stdin if stdin is not None else sys.stdin)
            if not sub_items:
                error = DwsError("no paths on standard input ('-')")
                if on_error is None:
                    raise error
                on_error(error)
            result.extend(expand_paths(sub_items, on_error=on_error))
            continue
        try:
            result.extend(expand_item(item))
        except DwsError as error:
            if on_error is None:
                raise
            on_error(error)
        limits.FILES.check(len(result), "input paths")  # a glob may match millions of files
    return result


def expand_single(item: str | os.PathLike[str], *, stdin: TextIO | None = None) -> Path:
    """Expand an item that must name exactly one checkpoint file."""
    paths = expand_paths([item], stdin=stdin)
    if len(paths) != 1:
        shown = ", ".join(str(p) for p in paths[:3]) + (", …" if len(paths) > 3 else "")
        raise DwsError(
            f"{os.fspath(item)}: expected one checkpoint, found {len(paths)} ({shown})",
            hint="this command takes a single file",
        )
    return paths[0]


__all__ = [
    "EXAMPLE_PREFIX",
    "STDIN",
    "expand_item",
    "expand_paths",
    "expand_single",
    "natural_key",
    "read_stdin_items",
]
