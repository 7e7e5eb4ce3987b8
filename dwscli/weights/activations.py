"""The one table of activations: names, aliases, numeric options, functions and modules.

Everything that knows about activations reads it: :class:`~dwscli.weights.spec.MLPSpec` (which
names are valid, which options are numbers), checkpoint metadata (aliases such as ``siren``),
:func:`~dwscli.weights.functional.activate` (running an MLP) and
:func:`~dwscli.nn.layers.activation_module` (a processor's own hidden activations).

Importing this module does not import torch (the CLI's fast paths use it); the functions do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dwscli.errors import DwsError

if TYPE_CHECKING:
    from torch import Tensor, nn

#: SIREN's convention: w0 = 30 for the first layer and, unless ``w0_hidden`` says otherwise,
#: for the hidden ones.
DEFAULT_SINE_W0 = 30.0
DEFAULT_NEGATIVE_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """One activation: its canonical name, other names it is known by, its numeric options
    (``name;key=value`` in a spec), and the ``torch.nn`` module class that computes it when it
    needs no option (None for sine, whose frequency is per layer)."""

    name: str
    aliases: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    module: str | None = None


ACTIVATION_TABLE: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", module="ReLU"),
        Activation("tanh", module="Tanh"),
        Activation("sine", aliases=("sin", "siren"), options=("w0", "w0_hidden")),
        Activation("gelu", module="GELU"),
        Activation("sigmoid", module="Sigmoid"),
        Activation("identity", aliases=("linear", "none"), module="Identity"),
        Activation(
            "leaky_relu",
            aliases=("leakyrelu", "lrelu"),
            options=("negative_slope",),
            module="LeakyReLU",
        ),
        Activation("silu", aliases=("swish",), module="SiLU"),
    )
}

#: Valid activation names of an MLP spec, in table order.
ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATION_TABLE)
#: Spec options whose values are numbers (every activation's options; they must be finite).
NUMERIC_OPTIONS: tuple[str, ...] = tuple(
    dict.fromkeys(o for a in ACTIVATION_TABLE.values() for o in a.options)
)
#: Other names -> canonical name.
ALIASES: Mapping[str, str] = {
    alias: a.name for a in ACTIVATION_TABLE.values() for alias in a.aliases
}


def canonical_activation(text: str) -> str | None:
    """``"Leaky-ReLU"`` -> ``"leaky_relu"``, ``"siren"`` -> ``"sine"``; None when unknown."""
    name = text.strip().lower().replace("-", "_")
    name = ALIASES.get(name, name)
    return name if name in ACTIVATION_TABLE else None


def sine_frequencies(options: Mapping[str, str]) -> tuple[float, float]:
    """``(w0_first, w0_hidden)`` of a sine MLP with spec options ``options``."""
    w0 = float(options.get("w0", DEFAULT_SINE_W0))
    return w0, float(options.get("w0_hidden", w0))


def _functions() -> dict[str, Callable[[Tensor, Mapping[str, str], int], Tensor]]:
    import torch
    import torch.nn.functional as F

    def sine(x: Tensor, options: Mapping[str, str], layer: int) -> Tensor:
        w0_first, w0_hidden = sine_frequencies(options)
        return torch.sin((w0_first if layer == 0 else w0_hidden) * x)

    def leaky(x: Tensor, options: Mapping[str, str], layer: int) -> Tensor:
        slope = float(options.get("negative_slope", DEFAULT_NEGATIVE_SLOPE))
        return F.leaky_relu(x, slope)

    return {
        "relu": lambda x, o, i: torch.relu(x),
        "tanh": lambda x, o, i: torch.tanh(x),
        "sine": sine,
        "gelu": lambda x, o, i: F.gelu(x),
        "sigmoid": lambda x, o, i: torch.sigmoid(x),
        "identity": lambda x, o, i: x,
        "leaky_relu": leaky,
        "silu": lambda x, o, i: F.silu(x),
    }


_FUNCTIONS: dict[str, Callable[[Tensor, Mapping[str, str], int], Tensor]] = {}


def apply_activation(name: str, x: Tensor, options: Mapping[str, str], layer: int) -> Tensor:
    """Activation ``name`` (with spec ``options``) after linear layer ``layer`` (0-based)."""
    if not _FUNCTIONS:
        _FUNCTIONS.update(_functions())
    try:
        function = _FUNCTIONS[name]
    except KeyError:
        raise DwsError(f"unknown activation {name!r}", hint=f"choose one of {describe()}") from None
    return function(x, options, layer)


def module_activations() -> tuple[str, ...]:
    """Activations available as an option-free ``torch.nn`` module (a processor's own)."""
    return tuple(a.name for a in ACTIVATION_TABLE.values() if a.module is not None)


def activation_module(name: str, *, inplace: bool = False) -> nn.Module:
    """The ``torch.nn`` module of activation ``name``; ``inplace`` where torch offers it."""
    from torch import nn

    entry = ACTIVATION_TABLE.get(name)
    if entry is None or entry.module is None:
        raise DwsError(
            f"unknown activation {name!r}", hint=f"choose one of {', '.join(module_activations())}"
        )
    cls = getattr(nn, entry.module)
    if inplace and entry.module in ("ReLU", "SiLU"):
        return cls(inplace=True)
    return cls()


def describe() -> str:
    """``relu, tanh, …, or silu`` for help texts and hints."""
    return ", ".join(ACTIVATIONS[:-1]) + f" or {ACTIVATIONS[-1]}"


__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_TABLE",
    "ALIASES",
    "DEFAULT_NEGATIVE_SLOPE",
    "DEFAULT_SINE_W0",
    "NUMERIC_OPTIONS",
    "Activation",
    "activation_module",
    "apply_activation",
    "canonical_activation",
    "describe",
    "module_activations",
    "sine_frequencies",
]
