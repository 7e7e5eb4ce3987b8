"""Pixel-space image edits: what ``task: inr-edit`` teaches a processor to do in weight space.

:func:`edit_images` takes grey images ``[B, H, W]`` in [0, 1] and returns the edited images, the
same shape, in [0, 1]. Every op is deterministic and differentiable (plain torch ops), so it can
serve as a training target and as the ``--preview`` of ``dws edit``:

- ``dilate`` (``size``, odd, default 3): grey morphological dilation with a ``size`` x ``size``
  square, i.e. a max-pool with stride 1 and ``size // 2`` padding (pixels outside the image do
  not count). Strokes get thicker; a single bright pixel becomes a ``size`` x ``size`` block.
- ``erode`` (``size``): grey erosion, the min-pool; strokes get thinner.
- ``contrast`` (``factor``, default 2.0): ``0.5 + factor * (x - 0.5)``, clamped to [0, 1].
- ``sharpen`` (``amount``, default 1.0): unsharp mask ``x + amount * (x - box3(x))``, clamped,
  where ``box3`` is the 3 x 3 mean with replicated borders (a flat image stays unchanged).
- ``invert`` (no parameters): ``1 - x``, the negative. For an INR whose image is
  ``offset + scale * f(x)`` with offset 0.5 this is exact in weight space (negate the output
  layer's weights and bias), so it is the edit a linear, equivariant change can learn exactly.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch.nn.functional as F
from torch import Tensor

from dwscli.errors import DwsError

EditOp = Literal["dilate", "erode", "contrast", "sharpen", "invert"]
#: The ops :func:`edit_images` knows, in the order messages list them.
EDIT_OPS: tuple[str, ...] = get_args(EditOp)
#: Each op's parameters and their defaults.
EDIT_PARAMS: dict[str, dict[str, float | int]] = {
    "dilate": {"size": 3},
    "erode": {"size": 3},
    "contrast": {"factor": 2.0},
    "sharpen": {"amount": 1.0},
    "invert": {},
}


def check_op(op: str) -> None:
    """Refuse an unknown op with the list of known ones."""
    if op not in EDIT_OPS:
        raise DwsError(f"unknown edit op {op!r}; choose one of {', '.join(EDIT_OPS)}")


def edit_params(op: str, params: dict[str, Any] | None = None) -> dict[str, float | int]:
    """``op``'s parameters: the defaults updated by ``params``, checked (one-line errors)."""
    check_op(op)
    given = dict(params or {})
    defaults = EDIT_PARAMS[op]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DwsError(
            f"edit op {op}: unknown parameter {unknown[0]!r}; "
            + (
                "it takes " + ", ".join(f"{k} (default {v})" for k, v in defaults.items())
                if defaults
                else "it takes none"
            )
        )
    out: dict[str, float | int] = dict(defaults)
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DwsError(f"edit op {op}: {key} must be a number, got {value!r}")
        out[key] = value
    if "size" in out:
        size = out["size"]
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise DwsError(f"edit op {op}: size must be an odd positive integer, got {size!r}")
    if "factor" in out and out["factor"] < 0:
        raise DwsError(f"edit op {op}: factor must be at least 0, got {out['factor']}")
    if "amount" in out and out["amount"] < 0:
        raise DwsError(f"edit op {op}: amount must be at least 0, got {out['amount']}")
    return out


def _dilate(images: Tensor, size: int) -> Tensor:
    return F.max_pool2d(images[:, None], size, stride=1, padding=size // 2)[:, 0]


def _box3(images: Tensor) -> Tensor:
    padded = F.pad(images[:, None], (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(padded, 3, stride=1)[:, 0]


def edit_images(images: Tensor, op: str, **params: Any) -> Tensor:
    """``op`` applied to every image of ``images`` ``[B, H, W]`` (values in [0, 1])."""
    values = edit_params(op, params)
    if images.dim() != 3 or not images.is_floating_point():
        raise DwsError(
            f"edit_images expects float images [B, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    if op == "dilate":
        return _dilate(images, int(values["size"]))
    if op == "erode":
        return -_dilate(-images, int(values["size"]))
    if op == "contrast":
        return (0.5 + float(values["factor"]) * (images - 0.5)).clamp(0.0, 1.0)
    if op == "invert":
        return 1.0 - images
    # sharpen
    return (images + float(values["amount"]) * (images - _box3(images))).clamp(0.0, 1.0)


def describe_edit(op: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{op: ..., **params}``: the card's ``edit`` section (all parameters, defaults filled)."""
    return {"op": op, **edit_params(op, params)}


__all__ = [
    "EDIT_OPS",
    "EDIT_PARAMS",
    "EditOp",
    "check_op",
    "describe_edit",
    "edit_images",
    "edit_params",
]
