"""Weight-space augmentations (the ``train.augment:`` section), applied to each training batch.

Beyond hidden-neuron permutations (which an equivariant or invariant DWSNet already ignores),
what helps weight-space models generalise is changing the *function* a little (Shamsian et al.,
"Improved generalization of weight space networks via augmentations", 2024):

- **input-space transforms** of INRs, pushed into the first layer. An INR f whose first layer
  computes ``W1 x + b1`` (the sine's w0 multiplies the whole pre-activation in our convention,
  :func:`dwscli.weights.functional.activate`, so it needs no correction) becomes
  ``f'(x) = f(A (x - c) + c + t)`` exactly by ``W1' = W1 A`` and ``b1' = b1 + W1 (c - A c + t)``,
  where c is the centre of the net's input range. A is ``s R(theta)``: ``rotate`` draws theta
  uniformly in degrees from ``[-rotate, rotate]`` (2-D inputs only), ``scale`` draws s from
  ``[1 - scale, 1 + scale]``, and ``translate`` draws each coordinate of t from
  ``[-translate, translate]`` times the width of the input range. The new INR draws the old
  image resampled at ``A (x - c) + c + t``: for an image, moved by ``-t`` and turned by
  ``-theta``; the signs do not matter since the ranges are symmetric.
- **Gaussian weight noise**: every entry of every W_i and b_i gets noise of standard deviation
  ``noise`` times that tensor's root-mean-square in that net (its spread about zero; unlike a
  std it is defined for one-entry tensors such as a 1-output net's last bias, and it does not
  depend on which other nets share the batch).
- **weight dropout**: every entry is zeroed with probability ``dropout`` (no rescaling, so the
  function stays close to the original).

Everything is drawn for the *global* batch from ``(seed, epoch, step)``, then each process
keeps its rows (rank r of N: rows r, r+N, …), exactly like the permutation augmentation
(:mod:`dwscli.train.data`): ranks agree, the union of their slices is the single-process batch,
and a resumed run draws the same. All are off by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.schema import ConfigError
from dwscli.train.data import generator
from dwscli.weights.space import WeightSpace


@dataclass(frozen=True)
class AugmentSettings:
    """The ``train.augment:`` section (every augmentation off by default)."""

    rotate: float = 0.0  # degrees: theta ~ U(-rotate, rotate); 2-D INRs only
    translate: float = 0.0  # fraction of the input range: t ~ U(-translate, translate) per axis
    scale: float = 0.0  # isotropic: s ~ U(1 - scale, 1 + scale)
    noise: float = 0.0  # Gaussian noise std, relative to each tensor's RMS in each net
    dropout: float = 0.0  # probability of zeroing each weight and bias entry

    @property
    def input_space(self) -> bool:
        """True when an input-space transform (rotate, translate, scale) is on."""
        return bool(self.rotate or self.translate or self.scale)

    @property
    def active(self) -> bool:
        return self.input_space or bool(self.noise or self.dropout)

    def check(self, source: str | None) -> None:
        """Refuse values out of range (one line, naming the key)."""
        where = source or "config"
        limits = {
            "rotate": (0.0, 180.0, "between 0 and 180 (degrees)"),
            "translate": (0.0, 1.0, "between 0 and 1 (a fraction of the input range)"),
            "scale": (0.0, 0.999, "at least 0 and below 1"),
            "noise": (0.0, math.inf, "at least 0"),
            "dropout": (0.0, 0.999, "at least 0 and below 1"),
        }
        for key, (low, high, text) in limits.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"{where}: train.augment.{key}: must be {text}, got {value}")


def input_range(conventions: dict[str, Any]) -> tuple[float, float]:
    """The range of the net's inputs: ``net_input_range`` (sine zoos, where the net sees x/pi)
    or ``coord_range`` (image INRs), else [-1, 1]."""
    value = conventions.get("net_input_range") or conventions.get("coord_range") or [-1.0, 1.0]
    low, high = (float(v) for v in value)
    return low, high


def check_zoo(settings: AugmentSettings, kind: str, input_dim: int, source: str) -> None:
    """Refuse input-space transforms for nets whose inputs are not coordinates."""
    if not settings.input_space:
        return
    if kind not in ("inr", "sine"):
        raise DwsError(
            f"{source}: train.augment rotate/translate/scale transform an INR's input "
            f"coordinates; this is a {kind} zoo (set them to 0)"
        )
    if settings.rotate and input_dim != 2:
        raise DwsError(
            f"{source}: train.augment.rotate needs 2-D inputs; this zoo's nets take "
            f"{input_dim} (use translate/scale, or set rotate to 0)"
        )


# ------------------------------------------------------------------------------------------------
# the transforms (pure functions of their arguments)


def transform_inputs(space: WeightSpace, matrix: Tensor, shift: Tensor) -> WeightSpace:
    """Nets computing ``f(A x + t)`` for the nets ``f`` of ``space``: ``W1 A``, ``b1 + W1 t``.

    ``matrix`` is ``[B, d0, d0]`` and ``shift`` ``[B, d0]`` (one per net).
    """
    w1, b1 = space.weights[0], space.biases[0]
    matrix, shift = matrix.to(w1), shift.to(w1)
    weights = [torch.bmm(w1, matrix), *space.weights[1:]]
    biases = [b1 + torch.bmm(w1, shift[..., None])[..., 0], *space.biases[1:]]
    return WeightSpace(weights, biases, space.spec)


def affine(angles: Tensor, scales: Tensor, shifts: Tensor, centre: float) -> tuple[Tensor, Tensor]:
    """``(A, t')`` with ``A = s R(theta)`` and ``t' = c - A c + t`` (transforms about the centre
    ``c`` of the input range, in every coordinate). ``angles`` (radians) must be zero for
    inputs that are not 2-D."""
    size, dim = shifts.shape
    dtype = shifts.dtype
    matrix = torch.eye(dim, dtype=dtype).expand(size, dim, dim).clone()
    if dim == 2:
        cos, sin = torch.cos(angles), torch.sin(angles)
        matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    matrix = matrix * scales[:, None, None]
    centre_vec = torch.full((size, dim), centre, dtype=dtype)
    shift = centre_vec - torch.bmm(matrix, centre_vec[..., None])[..., 0] + shifts
    return matrix, shift


def rms(t: Tensor) -> Tensor:
    """Root-mean-square of each net's tensor ``[B, ...] -> [B, 1, ...]`` (broadcastable)."""
    value = t.pow(2).flatten(1).mean(1).sqrt()
    return value.reshape(-1, *([1] * (t.dim() - 1)))


def add_noise(space: WeightSpace, relative: float, draws: list[Tensor]) -> WeightSpace:
    """Each tensor plus ``relative * rms * draw`` (``draws``: standard normals, W's then b's)."""
    tensors = [t + relative * rms(t) * d.to(t) for t, d in zip(_wb(space), draws)]
    return _from_wb(space, tensors)


def drop_entries(space: WeightSpace, keep: list[Tensor]) -> WeightSpace:
    """Each tensor times its 0/1 mask ``keep`` (W's then b's)."""
    tensors = [t * k.to(t) for t, k in zip(_wb(space), keep)]
    return _from_wb(space, tensors)


def weight_noise(space: WeightSpace, relative: float, g: torch.Generator) -> WeightSpace:
    """Gaussian noise of std ``relative`` x RMS on every tensor, drawn from ``g``."""
    draws = [torch.randn(t.shape, generator=g) for t in _wb(space)]
    return add_noise(space, relative, draws)


def weight_dropout(space: WeightSpace, p: float, g: torch.Generator) -> WeightSpace:
    """Every entry zeroed with probability ``p``, drawn from ``g``."""
    keep = [(torch.rand(t.shape, generator=g) >= p) for t in _wb(space)]
    return drop_entries(space, keep)


def _wb(space: WeightSpace) -> list[Tensor]:
    """W_1 … W_L, then b_1 … b_L (the order of the draws)."""
    return [*space.weights, *space.biases]


def _from_wb(space: WeightSpace, tensors: list[Tensor]) -> WeightSpace:
    depth = space.spec.depth
    return WeightSpace(tensors[:depth], tensors[depth:], space.spec)


# ------------------------------------------------------------------------------------------------
# the training-batch augmentation


def augment_batch(
    space: WeightSpace,
    settings: AugmentSettings,
    *,
    global_size: int,
    seed: int,
    epoch: int,
    step: int,
    rank: int = 0,
    world_size: int = 1,
    input_range: tuple[float, float] = (-1.0, 1.0),
) -> WeightSpace:
    """``space`` (this rank's rows of a global batch of ``global_size``) augmented as
    ``settings`` say, every draw made for the global batch from ``(seed, epoch, step)``."""
    if not settings.active:
        return space
    g = generator(seed, "augment", epoch, step)
    mine = slice(rank, None, world_size)
    spec = space.spec
    if settings.input_space:
        dim = spec.input_dim
        low, high = input_range
        angles = torch.zeros(global_size, dtype=torch.float64)
        if settings.rotate:
            angles = _uniform(global_size, settings.rotate, g) * (math.pi / 180.0)
        scales = torch.ones(global_size, dtype=torch.float64)
        if settings.scale:
            scales = 1.0 + _uniform(global_size, settings.scale, g)
        shifts = torch.zeros(global_size, dim, dtype=torch.float64)
        if settings.translate:
            shifts = _uniform((global_size, dim), settings.translate, g) * (high - low)
        matrix, shift = affine(angles[mine], scales[mine], shifts[mine], (low + high) / 2)
        space = transform_inputs(space, matrix, shift)
    shapes = [(global_size, *s) for s in [*spec.weight_shapes, *spec.bias_shapes]]
    if settings.noise:
        draws = [torch.randn(shape, generator=g)[mine] for shape in shapes]
        space = add_noise(space, settings.noise, draws)
    if settings.dropout:
        keep = [torch.rand(shape, generator=g)[mine] >= settings.dropout for shape in shapes]
        space = drop_entries(space, keep)
    return space


def _uniform(shape: int | tuple[int, ...], half_width: float, g: torch.Generator) -> Tensor:
    """Uniform on ``[-half_width, half_width]`` (float64)."""
    size = (shape,) if isinstance(shape, int) else shape
    return (2.0 * torch.rand(size, generator=g, dtype=torch.float64) - 1.0) * half_width


__all__ = [
    "AugmentSettings",
    "add_noise",
    "affine",
    "augment_batch",
    "check_zoo",
    "drop_entries",
    "input_range",
    "rms",
    "transform_inputs",
    "weight_dropout",
    "weight_noise",
]
