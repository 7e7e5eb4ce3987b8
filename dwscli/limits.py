"""Bounds on every size that an input file controls, checked before memory is committed.

A checkpoint, an INR's metadata or a config file is untrusted: a header may claim a million
tensors, metadata may ask for a 100000x100000 render, a YAML file may expand a few aliases into
gigabytes. Each such size has a limit here, read from an environment variable so that a user with
a legitimately larger input can raise it without a code change. The error names the limit and the
variable (see :func:`limit_error`).

This module must stay free of torch (the CLI imports it at start-up).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dwscli.errors import DwsError


@dataclass(frozen=True)
class Limit:
    """One bound: its environment variable, default value and what it counts."""

    env: str
    default: int
    what: str

    def value(self) -> int:
        """The bound in force: ``$env`` when set to a positive integer, else the default."""
        raw = os.environ.get(self.env, "").strip().replace("_", "")
        if not raw:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise DwsError(
                f"environment variable {self.env}={os.environ[self.env]!r} is not an integer"
            ) from None
        if value <= 0:
            raise DwsError(f"environment variable {self.env}={value} must be positive")
        return value

    @property
    def hint(self) -> str:
        return f"raise it with the environment variable {self.env}=N if the input is trusted"

    def check(self, amount: int, where: str) -> None:
        """Raise a one-line :class:`DwsError` when ``amount`` exceeds the bound."""
        bound = self.value()
        if amount > bound:
            raise limit_error(self, amount, where)


def limit_error(limit: Limit, amount: int, where: str) -> DwsError:
    return DwsError(
        f"{where}: {limit.what} {amount:,} exceeds the limit of {limit.value():,}",
        hint=limit.hint,
    )


#: Bytes of a safetensors JSON header (safetensors itself stops at 100 MB).
HEADER_BYTES = Limit("DWS_MAX_HEADER_BYTES", 16 * 1024 * 1024, "header length (bytes)")
#: Tensors in one checkpoint.
TENSORS = Limit("DWS_MAX_TENSORS", 4096, "tensor count")
#: Bytes of one checkpoint file.
CHECKPOINT_BYTES = Limit("DWS_MAX_CHECKPOINT_BYTES", 8 * 1024**3, "file size (bytes)")
#: Width of any layer of an MLP spec (inputs, hidden units or outputs).
WIDTH = Limit("DWS_MAX_WIDTH", 1 << 20, "layer width")
#: Layers of an MLP spec.
LAYERS = Limit("DWS_MAX_LAYERS", 1024, "number of layers")
#: Pixels of an INR render (height x width from ``inr.grid``).
INR_PIXELS = Limit("DWS_MAX_INR_PIXELS", 2048 * 2048, "pixel count")
#: Bytes of a YAML/JSON config file.
CONFIG_BYTES = Limit("DWS_MAX_CONFIG_BYTES", 1024 * 1024, "config file size (bytes)")
#: Nodes of a YAML config after alias expansion (an alias bomb expands exponentially).
CONFIG_NODES = Limit("DWS_MAX_CONFIG_NODES", 100_000, "config size after alias expansion (nodes)")
#: Checkpoint files one command reads (after expanding directories and globs).
FILES = Limit("DWS_MAX_FILES", 100_000, "number of input files")

ALL_LIMITS = (
    HEADER_BYTES,
    TENSORS,
    CHECKPOINT_BYTES,
    WIDTH,
    LAYERS,
    INR_PIXELS,
    CONFIG_BYTES,
    CONFIG_NODES,
    FILES,
)

__all__ = [
    "ALL_LIMITS",
    "CHECKPOINT_BYTES",
    "CONFIG_BYTES",
    "CONFIG_NODES",
    "FILES",
    "HEADER_BYTES",
    "INR_PIXELS",
    "LAYERS",
    "TENSORS",
    "WIDTH",
    "Limit",
    "limit_error",
]
