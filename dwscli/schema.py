"""Checking YAML sections against dataclasses, with one-line messages that name the key.

A section (a mapping from YAML) is turned into an instance of a dataclass whose field types are
simple: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``list[int]`` and ``X | None``.
Unknown keys are refused with the list of valid ones (and a "did you mean" when one is close);
values of the wrong type are refused naming the key and the expected type. Numbers written as
``1e-3`` are strings to YAML 1.1 (it wants ``1.0e-3``), so float fields accept numeric strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from dwscli.errors import DwsError

T = TypeVar("T")


class ConfigError(DwsError):
    """A configuration mistake; the message already names the file and the key."""


def _where(source: str | None, key: str) -> str:
    return f"{source}: {key}" if source else key


def unknown_key_error(source: str | None, key: str, valid: list[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1)
    return ConfigError(
        f"{_where(source, key)}: unknown key; valid keys: {', '.join(valid)}",
        hint=f"did you mean {close[0]!r}?" if close else None,
    )


def check_keys(data: Mapping[str, Any], valid: list[str], prefix: str, source: str | None) -> None:
    for key in data:
        if key not in valid:
            raise unknown_key_error(source, f"{prefix}{key}", valid)


def describe_type(annotation: Any) -> str:
    """``an integer``, ``a number``, ``one of cosine, constant``, … for messages."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(describe_type(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is list:
        if get_origin(args[0]) is Literal:
            return "a list with items from " + ", ".join(str(a) for a in get_args(args[0]))
        return f"a list of {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


_MISSING = object()


def _convert(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` or ``_MISSING`` when it does not fit."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            converted = _convert(value, arg)
            if converted is not _MISSING:
                return converted
        return _MISSING
    if origin is Literal:
        return value if value in args else _MISSING
    if origin is list:
        if not isinstance(value, list):
            return _MISSING
        items = [_convert(v, args[0]) for v in value]
        return _MISSING if any(i is _MISSING for i in items) else items
    if annotation is bool:
        return value if isinstance(value, bool) else _MISSING
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if annotation is float:  # finite only: NaN or Inf in a config is always a mistake
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except (ValueError, OverflowError):
                return _MISSING
        else:
            return _MISSING
        return number if math.isfinite(number) else _MISSING
    if annotation is str:
        return value if isinstance(value, str) else _MISSING
    return value  # anything else is checked by its owner


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def build_section(
    cls: type[T],
    data: Any,
    *,
    prefix: str,
    source: str | None,
    exclude: tuple[str, ...] = (),
    extra: Mapping[str, Any] | None = None,
) -> T:
    """An instance of dataclass ``cls`` from the mapping ``data`` (keys under ``prefix``).

    ``exclude`` names fields the user may not set (they are filled in by the caller through
    ``extra``).
    """
    section = prefix.rstrip(".") or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{_where(source, section)}: must be a mapping of keys to values, got "
            f"{type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]  # type: ignore[arg-type]
    check_keys(data, fields, prefix, source)
    values: dict[str, Any] = dict(extra or {})
    for key, value in data.items():
        converted = _convert(value, hints[key])
        if converted is _MISSING:
            raise ConfigError(
                f"{_where(source, prefix + key)}: expected {describe_type(hints[key])}, "
                f"got {_shown(value)} ({type(value).__name__})"
            )
        values[key] = converted
    try:
        return cls(**values)
    except ConfigError:
        raise
    except DwsError as error:  # the dataclass's own check of its values together
        if source is None:
            raise
        raise ConfigError(f"{source}: {error.message}", hint=error.hint) from None
    except TypeError as error:  # a required field is missing
        missing = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(
                f"{_where(source, prefix + missing[0])}: missing required key"
            ) from error
        raise


__all__ = ["ConfigError", "build_section", "check_keys", "describe_type", "unknown_key_error"]
