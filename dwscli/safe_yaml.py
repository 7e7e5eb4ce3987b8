"""Read a YAML file that may be hostile: bounded size, bounded alias expansion, one-line errors.

``yaml.safe_load`` never runs code, but it will happily expand a "billion laughs" file (a few
aliases, each a list of the previous one) into gigabytes, recurse until Python's stack runs out
on deeply nested brackets, and raise ``UnicodeDecodeError`` on a binary file. :func:`load_yaml_file`
checks the file size first, composes the node graph (aliases stay shared, so that is cheap),
counts the nodes the graph expands to without expanding it, and only then builds Python objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from dwscli import limits
from dwscli.errors import DwsError

__all__ = ["expanded_size", "load_yaml_file", "load_yaml_text", "short_repr"]


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about untrusted values.

    Large containers are not formatted at all (formatting one can itself exhaust memory).
    """
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def expanded_size(root: yaml.Node, bound: int) -> int:
    """Nodes the graph under ``root`` becomes once aliases are expanded (stops past ``bound``).

    Iterative and memoised by node identity, so it costs one visit per distinct node however
    often an alias repeats it, and needs no deep recursion.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if children_done:
            on_path.discard(key)
            sizes[key] = min(bound + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in on_path:
            raise DwsError("a YAML alias refers to itself (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise DwsError("a YAML alias refers to itself (a recursive structure)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def load_yaml_text(text: str, where: str) -> Any:
    """``yaml.safe_load(text)`` with the alias-expansion bound; errors name ``where``.

    One parse: the node graph is composed, measured, and only then turned into Python objects.
    """
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses control characters
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise DwsError(f"{where}: not valid YAML ({problem[:200]})") from error
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise DwsError(f"{where}: not valid YAML ({problem[:200]})") from error
        except RecursionError:
            raise DwsError(f"{where}: YAML nested too deeply to read") from None
        if node is None:
            return None
        bound = limits.CONFIG_NODES.value()
        try:
            size = expanded_size(node, bound)
        except DwsError as error:
            raise DwsError(f"{where}: {error.message}") from None
        if size > bound:
            raise DwsError(
                f"{where}: expands to more than {bound:,} YAML nodes (aliases repeat content), "
                f"over the limit {limits.CONFIG_NODES.env}={bound:,}",
                hint=limits.CONFIG_NODES.hint,
            )
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise DwsError(f"{where}: not valid YAML ({problem[:200]})") from error
        except RecursionError:
            raise DwsError(f"{where}: YAML nested too deeply to read") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike[str], what: str = "config") -> Any:
    """Read and parse a YAML file with every size bounded (see the module docstring)."""
    source = Path(path)
    try:
        size = source.stat().st_size
    except OSError as error:
        raise DwsError(f"{source}: cannot read {what} ({error.strerror or error})") from error
    limits.CONFIG_BYTES.check(size, str(source))
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise DwsError(f"{source}: cannot read {what} ({error.strerror or error})") from error
    limits.CONFIG_BYTES.check(len(raw), str(source))  # a file that grew since stat, or a pipe
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DwsError(f"{source}: not a text file (not UTF-8); a {what} is YAML text") from None
    if "\x00" in text:
        raise DwsError(f"{source}: not a text file (holds NUL bytes); a {what} is YAML text")
    return load_yaml_text(text, str(source))
