"""INR conventions and rendering: how an MLP maps pixel coordinates to intensities.

An INR of an H×W grey image takes the coordinates (x, y) of each pixel centre, scaled to
``coord_range`` (x along the width, y along the height, row-major pixel order), and outputs a
value v; the pixel intensity in [0, 1] is ``output_offset + output_scale * v``. The conventions
are written into every INR checkpoint's metadata (``inr.*`` keys) so any tool can render it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dwscli import limits
from dwscli.errors import DwsError
from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace


@dataclass(frozen=True)
class InrConventions:
    height: int = 28
    width: int = 28
    coord_min: float = -1.0
    coord_max: float = 1.0
    output_scale: float = 0.5
    output_offset: float = 0.5

    def __post_init__(self) -> None:
        """Refuse conventions no image can have, before anything is allocated for them."""
        if self.height < 1 or self.width < 1:
            raise DwsError(f"INR grid {self.height}x{self.width} must be at least 1x1")
        limits.INR_PIXELS.check(self.height * self.width, f"inr.grid {self.height}x{self.width}")
        values = {
            "coord_range": (self.coord_min, self.coord_max),
            "output_scale": (self.output_scale,),
            "output_offset": (self.output_offset,),
        }
        for name, numbers in values.items():
            if not all(math.isfinite(v) for v in numbers):
                shown = ",".join(repr(v) for v in numbers)
                raise DwsError(f"INR {name} {shown} must be finite")
        if self.output_scale == 0:
            raise DwsError("INR output_scale must not be 0")

    def coordinates(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``[H*W, 2]`` pixel-centre coordinates (x, y), row-major."""
        ys = torch.linspace(self.coord_min, self.coord_max, self.height, dtype=dtype)
        xs = torch.linspace(self.coord_min, self.coord_max, self.width, dtype=dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)

    def to_target(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> the values an INR is trained to output."""
        return (images - self.output_offset) / self.output_scale

    def to_image(self, values: Tensor) -> Tensor:
        return values * self.output_scale + self.output_offset

    def to_metadata(self) -> dict[str, str]:
        return {
            "inr.grid": f"{self.height}x{self.width}",
            "inr.coord_range": f"{self.coord_min},{self.coord_max}",
            "inr.output_scale": repr(self.output_scale),
            "inr.output_offset": repr(self.output_offset),
        }

    @classmethod
    def from_metadata(
        cls, metadata: dict[str, str], *, source: str = "checkpoint"
    ) -> InrConventions:
        try:
            height, width = (int(v) for v in metadata.get("inr.grid", "28x28").split("x"))
            low, high = (float(v) for v in metadata.get("inr.coord_range", "-1,1").split(","))
            return cls(
                height,
                width,
                low,
                high,
                float(metadata.get("inr.output_scale", "0.5")),
                float(metadata.get("inr.output_offset", "0.5")),
            )
        except ValueError as error:
            raise DwsError(f"{source}: malformed INR metadata ({error})") from error
        except DwsError as error:
            raise DwsError(f"{source}: metadata: {error.message}", hint=error.hint) from error


def render(space: WeightSpace, conventions: InrConventions, *, chunk: int = 256) -> Tensor:
    """Decode INRs to images ``[B, H, W]`` in [0, 1] (clamped)."""
    if space.spec.input_dim != 2 or space.spec.output_dim != 1:
        raise DwsError(f"an image INR maps 2 coordinates to 1 value; this net is {space.spec}")
    coords = conventions.coordinates(space.dtype).to(space.device)
    out = []
    with torch.no_grad():
        for start in range(0, space.batch_size, chunk):
            values = mlp_forward(space[start : start + chunk], coords)[..., 0]
            out.append(conventions.to_image(values))
    images = torch.cat(out).reshape(-1, conventions.height, conventions.width)
    return images.clamp(0.0, 1.0)


def psnr(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR in dB for images in [0, 1] (peak 1), over all but the first dim."""
    mse = (reconstruction - target).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))
