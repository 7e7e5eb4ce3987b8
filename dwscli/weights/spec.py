"""MLPSpec: the architecture of a multilayer perceptron as seen by a weight-space processor.

A spec fixes the widths d_0 … d_L and the activation. The input width d_0 and the output width
d_L are *fixed* dimensions (every input feature and output unit has its own identity); the hidden
widths d_1 … d_{L-1} are permuted by the symmetry group. Its compact string form is
``2-32-32-1:sine`` (widths joined by ``-``, then ``:activation``; options as ``;key=value``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace

from dwscli import limits
from dwscli.errors import DwsError
from dwscli.weights.activations import ACTIVATIONS, NUMERIC_OPTIONS


def _check_numeric_option(key: str, value: str) -> None:
    try:
        number = float(value)
    except ValueError:
        raise DwsError(f"activation option {key}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise DwsError(f"activation option {key}={value} must be a finite number")


_SPEC_PATTERN = re.compile(
    r"^\s*(\d+(?:-\d+)+)\s*(?::\s*([a-z_]+))?\s*((?:;[a-z_0-9]+=[^;]+)*)\s*$"
)


@dataclass(frozen=True)
class MLPSpec:
    """Widths d_0..d_L, activation between layers, and INR options.

    ``options`` carries activation or INR details that affect the function, e.g. ``w0`` for sine
    networks (the first layer computes ``sin(w0 * (W x + b))``, later layers ``sin(W h + b)``
    as in SIREN, where w0 scales only the first layer; ``w0_hidden`` scales hidden ones).
    """

    widths: tuple[int, ...]
    activation: str = "relu"
    options: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        widths = tuple(int(w) for w in self.widths)
        object.__setattr__(self, "widths", widths)
        if len(widths) < 2:
            raise DwsError(f"an MLP needs at least two widths (input and output), got {widths}")
        if any(w <= 0 for w in widths):
            raise DwsError(f"MLP widths must be positive, got {widths}")
        if self.activation not in ACTIVATIONS:
            raise DwsError(
                f"unknown activation {self.activation!r}",
                hint=f"choose one of {', '.join(ACTIVATIONS)}",
            )
        shown = "-".join(map(str, widths[:8])) + ("-…" if len(widths) > 8 else "")
        limits.LAYERS.check(len(widths) - 1, f"MLP spec {shown}")
        limits.WIDTH.check(max(widths), f"MLP spec {shown}")
        options = tuple(sorted((str(k), str(v)) for k, v in self.options))
        for key, value in options:
            if key in NUMERIC_OPTIONS:
                _check_numeric_option(key, value)
        object.__setattr__(self, "options", options)

    # ----------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of linear layers L."""
        return len(self.widths) - 1

    @property
    def input_dim(self) -> int:
        return self.widths[0]

    @property
    def output_dim(self) -> int:
        return self.widths[-1]

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return self.widths[1:-1]

    @property
    def weight_shapes(self) -> list[tuple[int, int]]:
        """Torch layout ``[d_i, d_{i-1}]`` for i = 1..L."""
        return list(_weight_shapes(self.widths))

    @property
    def bias_shapes(self) -> list[tuple[int]]:
        return [(self.widths[i + 1],) for i in range(self.depth)]

    @property
    def num_parameters(self) -> int:
        return sum(o * i + o for o, i in self.weight_shapes)

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def float_option(self, key: str, default: float) -> float:
        value = self.option(key)
        return default if value is None else float(value)

    def with_options(self, **options: object) -> MLPSpec:
        merged = dict(self.options)
        merged.update({k: str(v) for k, v in options.items() if v is not None})
        return replace(self, options=tuple(merged.items()))

    def fixed_dims_match(self, other: MLPSpec) -> bool:
        """True when depth, input and output widths agree (hidden widths may differ)."""
        return (
            self.depth == other.depth
            and self.input_dim == other.input_dim
            and self.output_dim == other.output_dim
        )

    # ----------------------------------------------------------------------------------------
    def __str__(self) -> str:
        text = "-".join(str(w) for w in self.widths) + f":{self.activation}"
        return text + "".join(f";{k}={v}" for k, v in self.options)

    def __repr__(self) -> str:
        return f"MLPSpec({str(self)!r})"

    @classmethod
    def parse(cls, text: str) -> MLPSpec:
        """Parse ``2-32-32-1:sine;w0=30`` (activation defaults to relu)."""
        match = _SPEC_PATTERN.match(text)
        if match is None:
            raise DwsError(
                f"cannot read MLP spec {text!r}",
                hint="write widths joined by '-' and an activation, e.g. 2-32-32-1:sine",
            )
        widths = tuple(int(w) for w in match.group(1).split("-"))
        activation = match.group(2) or "relu"
        options = tuple(
            tuple(item.split("=", 1)) for item in match.group(3).split(";") if item.strip()
        )
        return cls(widths, activation, options)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _weight_shapes(widths: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Cached: every loaded checkpoint's weights are checked against their spec's shapes."""
    return tuple((widths[i + 1], widths[i]) for i in range(len(widths) - 1))
