"""DWS layers: the general linear map between weight-space features that commutes with the
hidden-neuron permutations, plus the pointwise pieces that keep equivariance.

How the layer is built (docs/design.md says why these blocks span every equivariant map).
Number the neuron sets 0..L (set k has d_k neurons); W_i is indexed by sets (i, i-1) and b_i by
(i). Sets 1..L-1 are permuted, 0 and L are fixed. For a
block from source tensor S to target tensor T, the equivariant linear maps are spanned by one
choice per hidden set in S ∪ T: a set shared by S and T is either *kept* (the output index equals
the input index) or *pooled* (mean over the input, broadcast over the output); a set only in S is
pooled; a set only in T is broadcast. Fixed sets may be mixed freely.

So a target T gets one contribution per subset K of its set axes (the sets that are kept): every
source S that has all of K is mean-pooled over its other axes, the results are concatenated
along channels, one linear map turns them into T's channels, and the result is broadcast over
T's axes outside K. Each pooled statistic is computed once per layer and broadcasting happens
in the additions, never with ``.repeat``.

Fixed dimensions have two modes (``fixed_mixing``):

* ``full``: a fixed set is folded into the channels, so the linear maps mix across it with a
  parameter per index pair — exactly the complete space of equivariant maps, O(d_0²·C²)
  parameters. Right for INRs (d_0 = 2).
* ``shared``: a fixed set is treated like a permuted one (keep or pool), plus a learned bias per
  fixed index so that every input pixel / output unit keeps its identity. O(d_0·C + C²)
  parameters, still equivariant to the hidden permutations; for 784-pixel classifiers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.features import WSFeatures
from dwscli.nn.fused import LayerPlan, fused_dws_linear
from dwscli.weights import activations
from dwscli.weights.spec import MLPSpec

FixedMixing = Literal["full", "shared"]
FIXED_MIXING_MODES: tuple[str, ...] = ("full", "shared")


@dataclass(frozen=True)
class FixedShape:
    """What a processor fixes about its input nets: depth and the fixed widths d_0 and d_L."""

    depth: int
    input_dim: int
    output_dim: int

    @classmethod
    def of(cls, spec: MLPSpec) -> FixedShape:
        return cls(spec.depth, spec.input_dim, spec.output_dim)

    def check(self, features: WSFeatures) -> None:
        self.check_widths(features.widths)

    def check_widths(self, widths: tuple[int, ...], name: str | None = None) -> None:
        """Refuse nets whose depth or fixed widths differ (hidden widths may)."""
        if (
            len(widths) - 1 != self.depth
            or widths[0] != self.input_dim
            or widths[-1] != self.output_dim
        ):
            got = name or "-".join(str(w) for w in widths)
            raise DwsError(
                f"network {got} does not fit this processor, which expects {self.describe()}",
                hint="depth, input width and output width must match; hidden widths may differ",
            )

    def describe(self) -> str:
        hidden = "-".join(["*"] * (self.depth - 1))
        middle = f"-{hidden}-" if hidden else "-"
        return f"{self.input_dim}{middle}{self.output_dim} (depth {self.depth}, * = any width)"

    def is_hidden(self, neuron_set: int) -> bool:
        return 0 < neuron_set < self.depth

    def size(self, neuron_set: int) -> int | None:
        """Width of a fixed set; None for hidden sets (their width varies)."""
        if neuron_set == 0:
            return self.input_dim
        if neuron_set == self.depth:
            return self.output_dim
        return None


# ------------------------------------------------------------------------------------------------
# Canonical layout: each tensor as [B, *set axes, channels], fixed sets folded into channels in
# "full" mode. Weight i (0-based) has sets (i+1, i); bias i has set (i+1,).


@dataclass(frozen=True)
class _TensorLayout:
    name: str
    sets: tuple[int, ...]  # all neuron sets indexing the tensor, in storage order
    axes: tuple[int, ...]  # sets kept as axes in the canonical layout, in storage order
    folded: tuple[int, ...]  # fixed sets folded into channels (full mode), in storage order
    fold_size: int  # product of folded widths

    def channels(self, base: int) -> int:
        return base * self.fold_size

    def to_canonical(self, x: Tensor) -> Tensor:
        """[B, *sets, C] -> [B, *axes, C * fold_size] (axes first, then folded sets, then C)."""
        if not self.folded:
            return x
        order = [0]
        order += [1 + self.sets.index(s) for s in self.axes]
        order += [1 + self.sets.index(s) for s in self.folded]
        order.append(x.dim() - 1)
        x = x.permute(order)
        return x.reshape(*x.shape[: 1 + len(self.axes)], -1)

    def from_canonical(self, y: Tensor, fixed: FixedShape) -> Tensor:
        """Inverse of :meth:`to_canonical` for a tensor with any number of channels."""
        if not self.folded:
            return y
        folded_sizes = [fixed.size(s) for s in self.folded]
        lead = y.shape[: 1 + len(self.axes)]
        y = y.reshape(*lead, *folded_sizes, -1)
        current = [None, *self.axes, *self.folded, None]
        order = [0]
        order += [current.index(s, 1) for s in self.sets]
        order.append(y.dim() - 1)
        return y.permute(order)


def _layouts(fixed: FixedShape, mode: FixedMixing) -> list[_TensorLayout]:
    layouts = []
    for kind in ("W", "b"):
        for i in range(fixed.depth):
            sets = (i + 1, i) if kind == "W" else (i + 1,)
            if mode == "full":
                axes = tuple(s for s in sets if fixed.is_hidden(s))
                folded = tuple(s for s in sets if not fixed.is_hidden(s))
            else:
                axes, folded = sets, ()
            fold_size = math.prod(fixed.size(s) or 1 for s in folded)
            layouts.append(_TensorLayout(f"{kind}{i + 1}", sets, axes, folded, fold_size))
    return layouts


def _amax(x: Tensor, dims: list[int]) -> Tensor:
    """``x.amax(dim=dims)``, one dimension at a time from the outermost.

    torch's max reduction over several dimensions (or one with a small contiguous inner size,
    such as channels) is about 10x slower than over a single outer dimension with a large inner
    block; maxima are exact, so the order does not change the result.
    """
    if not dims:
        return x
    reduced = x
    for removed, dim in enumerate(sorted(dims)):
        reduced = reduced.amax(dim=dim - removed)
    return reduced


def _pool(x: Tensor, axes: tuple[int, ...], keep: tuple[int, ...]) -> Tensor:
    """Mean of canonical tensor ``x`` over the set axes not in ``keep``."""
    dims = [1 + i for i, s in enumerate(axes) if s not in keep]
    return x.mean(dim=dims) if dims else x


class DWSLayer(nn.Module):
    """The general linear equivariant layer on an MLP weight space (C_in -> C_out channels).

    Parameters do not depend on hidden widths, so a layer built for width-32 nets runs on
    width-64 nets; depth and the fixed widths d_0, d_L are part of the layer.
    """

    def __init__(
        self,
        fixed: FixedShape,
        in_channels: int,
        out_channels: int,
        *,
        fixed_mixing: FixedMixing = "full",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if fixed_mixing not in FIXED_MIXING_MODES:
            raise DwsError(
                f"unknown fixed_mixing {fixed_mixing!r}", hint="choose 'full' or 'shared'"
            )
        self.fixed = fixed
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.fixed_mixing = fixed_mixing
        self.layouts = _layouts(fixed, fixed_mixing)
        # groups[t] = list of (kept sets K, [source indices s with K ⊆ axes(s)])
        self.groups: list[list[tuple[tuple[int, ...], list[int]]]] = []
        self.maps = nn.ModuleList()
        for target in self.layouts:
            target_groups = []
            target_maps = nn.ModuleList()
            for size in range(len(target.axes) + 1):
                for keep in itertools.combinations(target.axes, size):
                    sources = [
                        s for s, src in enumerate(self.layouts) if set(keep) <= set(src.axes)
                    ]
                    fan_in = sum(self.layouts[s].channels(in_channels) for s in sources)
                    target_groups.append((keep, sources))
                    target_maps.append(nn.Linear(fan_in, target.channels(out_channels), bias=False))
            self.groups.append(target_groups)
            self.maps.append(target_maps)
        self.biases = nn.ParameterList()
        bias_axes = []
        for target in self.layouts:
            varying = tuple(
                s for s in target.axes if not fixed.is_hidden(s) and fixed_mixing == "shared"
            )
            bias_axes.append(varying)
            if bias:
                shape = [fixed.size(s) if s in varying else 1 for s in target.axes]
                self.biases.append(nn.Parameter(torch.zeros(*shape, target.channels(out_channels))))
        self.plan = LayerPlan(
            axes=tuple(layout.axes for layout in self.layouts),
            groups=tuple(
                (keep, tuple(sources))
                for target_groups in self.groups
                for keep, sources in target_groups
            ),
            group_targets=tuple(
                t for t, target_groups in enumerate(self.groups) for _ in target_groups
            ),
            bias_axes=tuple(bias_axes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Scale so that the sum over all contributions to a target keeps unit variance."""
        for target_maps in self.maps:
            total_fan_in = sum(m.in_features for m in target_maps)
            bound = math.sqrt(3.0 / total_fan_in)
            for m in target_maps:
                nn.init.uniform_(m.weight, -bound, bound)
        for b in self.biases:
            nn.init.zeros_(b)

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (
            f"{self.fixed.describe()}, {self.in_channels}->{self.out_channels}, "
            f"fixed_mixing={self.fixed_mixing} | {n} weights"
        )

    def forward(self, features: WSFeatures) -> WSFeatures:
        """Fused forward/backward (see :mod:`dwscli.nn.fused`); same result as
        :meth:`reference_forward`, which plain autograd differentiates."""
        self._check(features)
        canonical = [
            layout.to_canonical(t)
            for layout, t in zip(self.layouts, [*features.weights, *features.biases])
        ]
        weights = [m.weight for target_maps in self.maps for m in target_maps]
        outputs = fused_dws_linear(self.plan, canonical, weights, list(self.biases))
        outputs = [layout.from_canonical(y, self.fixed) for layout, y in zip(self.layouts, outputs)]
        depth = self.fixed.depth
        return WSFeatures(outputs[:depth], outputs[depth:])

    def _check(self, features: WSFeatures) -> None:
        self.fixed.check(features)
        if features.channels != self.in_channels:
            raise DwsError(f"layer expects {self.in_channels} channels, got {features.channels}")

    def reference_forward(self, features: WSFeatures) -> WSFeatures:
        """The same map written plainly with autograd-differentiable ops (for tests)."""
        self.fixed.check(features)
        if features.channels != self.in_channels:
            raise DwsError(f"layer expects {self.in_channels} channels, got {features.channels}")
        canonical = [
            layout.to_canonical(t)
            for layout, t in zip(self.layouts, [*features.weights, *features.biases])
        ]
        pooled: dict[tuple[int, tuple[int, ...]], Tensor] = {}

        def pooled_source(s: int, keep: tuple[int, ...]) -> Tensor:
            key = (s, keep)
            if key not in pooled:
                pooled[key] = _pool(canonical[s], self.layouts[s].axes, keep)
            return pooled[key]

        outputs = []
        for t, target in enumerate(self.layouts):
            out: Tensor | None = None
            for (keep, sources), linear in zip(self.groups[t], self.maps[t]):
                parts = [pooled_source(s, keep) for s in sources]
                mixed = linear(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
                # Broadcast over target axes outside `keep`.
                shape = [mixed.shape[0]]
                position = 1
                for axis in target.axes:
                    if axis in keep:
                        shape.append(mixed.shape[position])
                        position += 1
                    else:
                        shape.append(1)
                mixed = mixed.reshape(*shape, mixed.shape[-1])
                out = mixed if out is None else out + mixed
            assert out is not None
            if len(self.biases):
                out = out + self.biases[t]
            outputs.append(target.from_canonical(out, self.fixed))
        depth = self.fixed.depth
        return WSFeatures(outputs[:depth], outputs[depth:])


# ------------------------------------------------------------------------------------------------
# Pointwise pieces: each acts on every entry's channel vector alone, so it commutes with any
# permutation of entries.


class ChannelNorm(nn.Module):
    """Layer norm over the channels of every entry (weights and biases have their own affine)."""

    def __init__(self, fixed: FixedShape, channels: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(2 * fixed.depth))

    def forward(self, features: WSFeatures) -> WSFeatures:
        # norms[i] is W_{i+1}'s and norms[depth + i] b_{i+1}'s (the order stored in processors)
        depth = len(features.weights)
        weights = [self.norms[i](w) for i, w in enumerate(features.weights)]
        biases = [self.norms[depth + i](b) for i, b in enumerate(features.biases)]
        return WSFeatures(weights, biases)


class Pointwise(nn.Module):
    """Apply an elementwise module (activation, dropout) to every tensor."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, features: WSFeatures) -> WSFeatures:
        return features.map(self.module)


def activation_module(name: str, *, inplace: bool = False) -> nn.Module:
    """A pointwise activation from the one activation table; ``inplace`` where torch offers it."""
    return activations.activation_module(name, inplace=inplace)


class InvariantPooling(nn.Module):
    """Pool every tensor over its hidden axes, giving a permutation-invariant vector.

    Fixed axes are kept (flattened into the vector) in ``full`` mode, which lets the head see
    each input pixel / output unit, and averaged in ``shared`` mode, where d_0 may be 784.
    ``stats="mean+max"`` adds max pooling next to mean pooling.
    """

    def __init__(
        self,
        fixed: FixedShape,
        channels: int,
        *,
        fixed_mixing: FixedMixing = "full",
        stats: str = "mean",
    ) -> None:
        super().__init__()
        if stats not in ("mean", "mean+max"):
            raise DwsError(f"unknown pooling {stats!r}", hint="choose 'mean' or 'mean+max'")
        self.fixed = fixed
        self.fixed_mixing = fixed_mixing
        self.stats = stats
        self.layouts = _layouts(fixed, "full")
        per_stat = sum(
            layout.channels(channels) if fixed_mixing == "full" else channels
            for layout in self.layouts
        )
        self.out_features = per_stat * (2 if stats == "mean+max" else 1)

    def forward(self, features: WSFeatures) -> Tensor:
        self.fixed.check(features)
        pieces = []
        # layouts are W_1..W_L then b_1..b_L; the pooled vector keeps that order
        for layout, t in zip(self.layouts, [*features.weights, *features.biases]):
            pieces += self.pool_tensor(layout, t)
        return torch.cat(pieces, dim=1)

    def pool_tensor(self, layout: _TensorLayout, t: Tensor) -> list[Tensor]:
        """The pooled pieces ``[B, n]`` (mean, and max with ``mean+max``) of one tensor in its
        natural layout ``[B, *sets, C]``."""
        x = layout.to_canonical(t)  # [B, *hidden axes, C * folded]
        dims = list(range(1, 1 + len(layout.axes)))
        if self.fixed_mixing == "shared" and layout.fold_size > 1:
            x = x.reshape(*x.shape[:-1], layout.fold_size, -1)
            dims.append(x.dim() - 2)
        mean = x.mean(dim=dims) if dims else x
        pieces = [mean.reshape(mean.shape[0], -1)]
        if self.stats == "mean+max":
            if torch.is_grad_enabled() and x.requires_grad:
                peak = x.amax(dim=dims) if dims else x  # ties share the gradient as before
            else:
                peak = _amax(x, dims)
            pieces.append(peak.reshape(peak.shape[0], -1))
        return pieces
