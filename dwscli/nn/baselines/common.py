"""What every baseline processor shares: input checks, normalisation, heads and residual output.

A baseline model is built for one input spec and one *kind*: ``invariant`` (weights -> vector of
``out_features``) or ``equivariant`` (weights -> weights of the same shapes, as input + predicted
change). Inputs are normalised per tensor with the :class:`~dwscli.nn.models.WeightNormalizer`
that DWSNets use (scalars per W_i / b_i, fitted on training nets by :meth:`BaselineModel.fit`),
so every system sees the same preprocessing and the card's ``normalization`` section applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.layers import activation_module
from dwscli.nn.models import WeightNormalizer
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

KINDS = ("invariant", "equivariant")


def mlp(
    sizes: Sequence[int], activation: str, dropout: float = 0.0, *, final_activation: bool = False
) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` (and dropout) between them."""
    layers: list[nn.Module] = []
    pairs = list(zip(sizes[:-1], sizes[1:]))
    for index, (a, b) in enumerate(pairs):
        layers.append(nn.Linear(a, b))
        if index < len(pairs) - 1 or final_activation:
            layers.append(activation_module(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def scale_parameters_(module: nn.Module, scale: float) -> None:
    """Shrink a freshly built output layer, so an untrained equivariant model is near identity."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)


def check_options(arch: str, options: Any) -> None:
    """Sizes (every integer option, and list items) at least 1; dropout in [0, 1)."""
    for item in fields(options):
        value = getattr(options, item.name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v < 1:
                raise DwsError(f"{arch}: model.{item.name}: must be at least 1, got {value}")
        if item.name == "dropout" and not 0.0 <= float(value) < 1.0:
            raise DwsError(f"{arch}: model.dropout: must be in [0, 1), got {value}")


class BaselineModel(nn.Module):
    """Base class: the spec and kind a model was built for, its normaliser and the residual."""

    arch_name: str = "baseline"
    kinds: tuple[str, ...] = KINDS
    #: hidden widths may differ from the spec's (models built from permutation-equivariant
    #: layers); otherwise every width must match exactly
    any_hidden_widths: bool = False
    #: the input goes through the per-tensor :class:`WeightNormalizer` (not ``statnn``, which
    #: standardises its statistics instead; the card then says ``method: none``)
    normalizes_weights: bool = True

    def __init__(self, spec: MLPSpec, kind: str, out_features: int, options: Any) -> None:
        super().__init__()
        check_options(self.arch_name, options)
        self.options = options
        if kind not in self.kinds:
            only = " and ".join(self.kinds)
            raise DwsError(
                f"architecture {self.arch_name} supports {only} tasks only, not {kind} ones"
            )
        if out_features < 1:
            raise DwsError(f"architecture {self.arch_name}: out_features must be at least 1")
        self.spec, self.kind, self.out_features = spec, kind, out_features
        self.normalizer = WeightNormalizer(spec.depth) if self.normalizes_weights else None

    @property
    def invariant(self) -> bool:
        return self.kind == "invariant"

    @torch.no_grad()
    def fit(self, space: WeightSpace) -> None:
        """Fit the input normalisation on a sample of training nets (the trainer calls this)."""
        if self.normalizer is not None:
            self.normalizer.fit(space)

    @property
    def weight_normalizer(self) -> WeightNormalizer:
        if self.normalizer is None:
            raise DwsError(f"architecture {self.arch_name} does not normalise weights")
        return self.normalizer

    def check_input(self, space: WeightSpace) -> None:
        spec = self.spec
        widths = space.spec.widths
        same_fixed = (
            len(widths) == len(spec.widths)
            and widths[0] == spec.input_dim
            and widths[-1] == spec.output_dim
        )
        if same_fixed and (self.any_hidden_widths or widths == spec.widths):
            return
        expected = (
            f"{spec.input_dim}-…-{spec.output_dim} with {spec.depth} layers"
            if self.any_hidden_widths
            else "-".join(str(w) for w in spec.widths)
        )
        raise DwsError(
            f"network {space.spec} does not fit this {self.arch_name} processor, which expects "
            f"{expected}"
        )

    def normalized(self, space: WeightSpace) -> tuple[list[Tensor], list[Tensor]]:
        """Normalised ``(weights [B, out, in], biases [B, out])`` of the input nets."""
        self.check_input(space)
        features = self.weight_normalizer.normalize(space)
        return [w[..., 0] for w in features.weights], [b[..., 0] for b in features.biases]

    def residual(
        self, space: WeightSpace, delta_w: Sequence[Tensor], delta_b: Sequence[Tensor]
    ) -> WeightSpace:
        """Input plus a change predicted in normalised units (scaled back to weight units)."""
        depth = space.spec.depth
        std = self.weight_normalizer.std
        weights = [w + d * std[i] for i, (w, d) in enumerate(zip(space.weights, delta_w))]
        biases = [b + d * std[depth + i] for i, (b, d) in enumerate(zip(space.biases, delta_b))]
        return WeightSpace(weights, biases, space.spec)


def interleaved_flat(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """``[B, P]`` in W_1, b_1, …, W_L, b_L order (as :meth:`WeightSpace.flatten`)."""
    batch = weights[0].shape[0]
    parts = [t.reshape(batch, -1) for pair in zip(weights, biases) for t in pair]
    return torch.cat(parts, dim=1)


def split_flat(flat: Tensor, spec: MLPSpec) -> tuple[list[Tensor], list[Tensor]]:
    """Inverse of :func:`interleaved_flat` for the shapes of ``spec``."""
    space = WeightSpace.unflatten(flat, spec)
    return space.weights, space.biases


__all__ = [
    "KINDS",
    "BaselineModel",
    "check_options",
    "interleaved_flat",
    "mlp",
    "scale_parameters_",
    "split_flat",
]
