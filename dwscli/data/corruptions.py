"""Image corruptions that define a target domain: noise, rotation, blur, contrast (pure torch).

One entry point, :func:`corrupt`, takes a float batch in [0, 1] (``[N, H, W]`` or
``[N, C, H, W]``), a corruption name and a seed, and returns a batch of the same shape and dtype,
clamped to [0, 1]. Names compose with ``+`` and are applied left to right
(``rotation+gaussian-noise``); each part may carry its own severity after a colon
(``rotation:30+gaussian-noise:0.2``).

Default severities (larger is always stronger; 0 leaves the images unchanged). They were chosen
so that an MLP trained on clean Fashion-MNIST loses clearly but stays well above chance, the regime
domain adaptation is about. Accuracies below: a 784-256-10 ReLU MLP, 5 epochs of Adam on the clean
training set (86.3 % on the clean test set), evaluated on the corrupted 10k test set, seed 0; they
are orientation, not a contract.

=================== ======= =============================================== ===============
name                default severity means                                  F-MNIST MLP acc
=================== ======= =============================================== ===============
``gaussian-noise``  0.3     std of additive N(0, σ²) noise per pixel         57.8 %
``rotation``        30      fixed angle in degrees, counter-clockwise        35.1 %
``random-rotation`` 45      per-image angle ~ U(−a, a) degrees               45.5 %
``blur``            3.0     σ of the Gaussian kernel in pixels               55.6 %
``contrast``        0.5     fraction of contrast removed around the          46.4 %
                            per-image mean (1 = flat image)
``none``            –       identity (the clean source domain)               86.3 %
=================== ======= =============================================== ===============

Rotation is bilinear (``affine_grid`` + ``grid_sample``) about the image centre with a black
fill; blur is a separable Gaussian (two depthwise ``conv2d``, replicated edges, radius ⌈3σ⌉).
Composition compounds: ``rotation+gaussian-noise`` at the defaults leaves that MLP at 20.5 %.

Random corruptions are deterministic for a seed: every step of a composed corruption draws from
its own :class:`torch.Generator` seeded from ``(seed, position, name)``. The draws are made for the
whole batch at once, so the same batch with the same seed gives identical output; a single image
corrupted alone gets different noise than it does inside a batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dwscli.errors import DwsError

__all__ = ["CORRUPTIONS", "Corruption", "corrupt", "corruption_names", "parse_corruption"]

Transform = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """One named corruption: ``fn(images [N, C, H, W], severity, generator) -> images``."""

    name: str
    fn: Transform
    default_severity: float
    severity_meaning: str
    max_severity: float = math.inf
    random: bool = False


# ------------------------------------------------------------------------------------------------
# the transforms (inputs are float [N, C, H, W]; outputs are clamped by the caller)


def _identity(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    return x


def _gaussian_noise(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float32)
    return x + severity * noise.to(device=x.device, dtype=x.dtype)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle (degrees, counter-clockwise as displayed), bilinear.

    ``affine_grid`` maps each *output* pixel to the input location it samples; with y pointing
    down in image coordinates, sampling at ``R(θ)·p`` turns the picture counter-clockwise by θ.
    Pixels that come from outside the image are 0 (the black background of (F-)MNIST).
    """
    theta = torch.deg2rad(degrees.to(device=x.device, dtype=x.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    matrix = torch.stack(
        [torch.stack([cos, -sin, zero], dim=-1), torch.stack([sin, cos, zero], dim=-1)], dim=1
    )
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotation(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    return _rotate(x, torch.full((x.shape[0],), float(severity)))


def _random_rotation(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(x.shape[0], generator=gen, dtype=torch.float64)
    return _rotate(x, (2.0 * u - 1.0) * severity)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def _blur(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, one depthwise conv per axis, edges replicated."""
    if severity <= 0:
        return x
    channels = x.shape[1]
    k = _gaussian_kernel(severity, x.dtype, x.device)
    r = (k.numel() - 1) // 2
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _contrast(x: torch.Tensor, severity: float, gen: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (1.0 - severity) * (x - mean)


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian-noise", _gaussian_noise, 0.3, "noise std", random=True),
        Corruption("rotation", _rotation, 30.0, "angle in degrees", max_severity=360.0),
        Corruption(
            "random-rotation",
            _random_rotation,
            45.0,
            "maximum |angle| in degrees",
            max_severity=180.0,
            random=True,
        ),
        Corruption("blur", _blur, 3.0, "Gaussian sigma in pixels", max_severity=10.0),
        Corruption("contrast", _contrast, 0.5, "fraction of contrast removed", max_severity=1.0),
        Corruption("none", _identity, 0.0, "unused"),
    )
}

_ALIASES = {
    "noise": "gaussian-noise",
    "gaussian-blur": "blur",
    "rotate": "rotation",
    "identity": "none",
}


def corruption_names() -> list[str]:
    """The valid corruption names (compose them with ``+``)."""
    return list(CORRUPTIONS)


# ------------------------------------------------------------------------------------------------
# parsing and applying


def parse_corruption(name: str, severity: float | None = None) -> list[tuple[Corruption, float]]:
    """``"rotation:30+gaussian-noise"`` → ``[(rotation, 30.0), (gaussian-noise, 0.4)]``.

    ``severity`` replaces the default of a single corruption; for a composed name give each part
    its own severity after a colon instead.
    """
    parts = [p.strip() for p in name.split("+")]
    if not name.strip() or any(not p for p in parts):
        raise DwsError(f"empty corruption name in {name!r}", hint=_valid_hint())
    if severity is not None and len(parts) > 1:
        raise DwsError(
            f"severity={severity} is ambiguous for the composed corruption {name!r}",
            hint="give each part its own severity, e.g. 'rotation:30+gaussian-noise:0.2'",
        )
    steps = []
    for part in parts:
        key, _, level = part.partition(":")
        corruption = _lookup(key)
        value = _parse_level(part, level) if level else severity
        steps.append((corruption, _check_severity(corruption, value)))
    return steps


def corrupt(
    images: torch.Tensor, name: str, seed: int, *, severity: float | None = None
) -> torch.Tensor:
    """Corrupt a float batch in [0, 1]; same shape and dtype out, clamped to [0, 1].

    Args:
        images: ``[N, H, W]`` or ``[N, C, H, W]`` floats in [0, 1] (use
            :meth:`dwscli.data.datasets.ImageSet.float_images` for uint8 data sets).
        name: one of :data:`CORRUPTIONS`, or several joined by ``+`` (applied left to right),
            each optionally with ``:severity``.
        seed: seeds every random draw; the same batch, name and seed give identical output.
        severity: replaces the default severity of a single (not composed) corruption.
    """
    steps = parse_corruption(name, severity)
    x = _as_nchw(images)
    for position, (corruption, level) in enumerate(steps):
        gen = _generator(seed, position, corruption.name)
        x = corruption.fn(x, level, gen).clamp_(0.0, 1.0)
    return x.reshape(images.shape).to(images.dtype)


def _lookup(key: str) -> Corruption:
    norm = key.strip().lower().replace("_", "-")
    norm = _ALIASES.get(norm, norm)
    if norm not in CORRUPTIONS:
        raise DwsError(f"unknown corruption {key!r}", hint=_valid_hint())
    return CORRUPTIONS[norm]


def _valid_hint() -> str:
    return f"valid corruptions: {', '.join(CORRUPTIONS)}; compose with '+', e.g. rotation+blur:1"


def _parse_level(part: str, level: str) -> float:
    try:
        return float(level)
    except ValueError:
        raise DwsError(
            f"bad severity {level!r} in corruption {part!r}", hint="write e.g. 'blur:1.5'"
        ) from None


def _check_severity(corruption: Corruption, value: float | None) -> float:
    level = corruption.default_severity if value is None else float(value)
    if not math.isfinite(level) or level < 0 or level > corruption.max_severity:
        top = corruption.max_severity
        bound = "" if math.isinf(top) else f" and at most {top:g}"
        raise DwsError(
            f"severity {value} out of range for {corruption.name} "
            f"({corruption.severity_meaning}): must be >= 0{bound}"
        )
    return level


def _as_nchw(images: torch.Tensor) -> torch.Tensor:
    """A float working copy shaped ``[N, C, H, W]`` (half precision is computed in float32)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        dtype = getattr(images, "dtype", type(images).__name__)
        raise DwsError(
            f"corrupt() needs a float tensor of images in [0, 1], got {dtype}",
            hint="convert uint8 images with ImageSet.float_images() or images.float() / 255",
        )
    if images.dim() not in (3, 4):
        raise DwsError(
            f"corrupt() needs images shaped [N, H, W] or [N, C, H, W], got {tuple(images.shape)}"
        )
    x = images if images.dim() == 4 else images.unsqueeze(1)
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    return x.to(work, copy=True)


def _generator(seed: int, position: int, name: str) -> torch.Generator:
    """A CPU generator for one step, seeded stably from (seed, position, name)."""
    digest = hashlib.sha256(f"dws-corrupt/{int(seed)}/{position}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
