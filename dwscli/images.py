"""Writing images (rendered INRs, before/after previews) as PNG files, via pillow."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_path


def image_grid(images: Tensor, *, columns: int | None = None, pad: int = 2) -> Tensor:
    """Tile ``[N, H, W]`` images in [0, 1] into one ``[rows*(H+pad)-pad, cols*(W+pad)-pad]``."""
    n, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.ones(rows * (height + pad) - pad, columns * (width + pad) - pad)
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = r * (height + pad), c * (width + pad)
        canvas[top : top + height, left : left + width] = images[k]
    return canvas


def save_png(image: Tensor, path: str | Path, *, scale: int = 1, force: bool = False) -> Path:
    """Write a ``[H, W]`` grey image in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    picture = Image.fromarray(pixels, mode="L")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DwsError(f"{path}: images are written as PNG; use a .png file name")
    with atomic_path(path, force=force) as temporary:
        picture.save(temporary, format="PNG")
    return path
