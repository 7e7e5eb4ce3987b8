"""The key level of checkpoints: which tensors form which linear layer, in which order.

A checkpoint is a state dict of linear layers: ``<module>.weight`` ``[out, in]`` and an optional
``<module>.bias`` ``[out]``. Common layouts all work: ``nn.Sequential`` (``0.weight``,
``2.weight``), nested modules (``net.layers.3.weight``, ``layers.0.linear.weight``) and named
layers (``fc1.weight``, ``fc2.weight``). Layers are ordered by *natural* sort of the module path
(``net.2`` before ``net.10``) and the order is then checked by chaining shapes. A linear layer
without a bias is supported: it gets a zero bias in the :class:`WeightSpace` and is written back
without one. Anything else (conv kernels, normalisation layers, integer tensors) is refused with a
one-line :class:`DwsError` that names the file and the tensor.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dwscli.errors import DwsError
from dwscli.weights.fileformat import TensorInfo, shape_str

_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class LayerLayout:
    """Where one linear layer lives in the state dict, and the dtypes it was stored in."""

    module: str
    weight_key: str
    bias_key: str | None
    weight_dtype: torch.dtype
    bias_dtype: torch.dtype | None = None

    @property
    def has_bias(self) -> bool:
        return self.bias_key is not None


@dataclass
class CheckpointLayout:
    """The linear layers of a checkpoint in network order, plus the file's metadata."""

    layers: list[LayerLayout]
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = "safetensors"  # or "torch" for a .pt/.pth state dict

    def tensor_keys(self) -> list[str]:
        """Every tensor key, in network order (W_1, b_1, W_2, …; missing biases skipped)."""
        out: list[str] = []
        for layer in self.layers:
            out.append(layer.weight_key)
            if layer.bias_key is not None:
                out.append(layer.bias_key)
        return out

    @property
    def dtypes(self) -> dict[str, torch.dtype]:
        """Stored dtype of every tensor, by key."""
        out: dict[str, torch.dtype] = {}
        for layer in self.layers:
            out[layer.weight_key] = layer.weight_dtype
            if layer.bias_key is not None and layer.bias_dtype is not None:
                out[layer.bias_key] = layer.bias_dtype
        return out

    @property
    def bias_free_layers(self) -> list[int]:
        """0-based indices of the linear layers stored without a bias."""
        return [i for i, layer in enumerate(self.layers) if layer.bias_key is None]


@functools.lru_cache(maxsize=4096)  # the same few keys recur in every file of a run
def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders digit runs by value: ``net.2`` < ``net.10``, ``fc2`` < ``fc10``.

    ``re.split`` with a capturing group alternates text, number, text, … so keys of different
    strings always compare str with str and int with int.
    """
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text)))


def not_linear_reason(param: str) -> str:
    if param in _NORM_STATS:
        return " (a BatchNorm running statistic)"
    if param in ("weight_g", "weight_v") or param.startswith("original"):
        return " (weight normalisation or a parametrization; remove it before saving)"
    return ""


def plan_layout(path: Path, infos: Mapping[str, TensorInfo]) -> list[LayerLayout]:
    """Group keys into linear layers, order them, and check that their shapes chain."""
    if not infos:
        raise DwsError(f"{path}: contains no tensors, so no linear layers")
    keys = sorted(infos, key=natural_key)

    # Pass 1: names. Done over all keys first so that, e.g., a BatchNorm layer is reported by
    # its running statistics rather than by its 1-D weight.
    groups: dict[str, dict[str, str]] = {}
    for key in keys:
        module, _, param = key.rpartition(".")
        if param not in ("weight", "bias"):
            raise DwsError(
                f"{path}: tensor {key!r} is not a linear-layer weight or bias"
                f"{not_linear_reason(param)}; dws reads MLPs (linear layers) only"
            )
        groups.setdefault(module, {})[param] = key

    # Pass 2: each tensor's rank, size and dtype.
    for key in keys:
        info = infos[key]
        shape = shape_str(info.shape)
        is_weight = key.endswith("weight")
        if is_weight and len(info.shape) != 2:
            extra = " (a normalisation layer?)" if len(info.shape) == 1 else ""
            raise DwsError(
                f"{path}: tensor {key!r} has shape {shape}{extra}; "
                "dws reads MLPs (2-D linear weights) only"
            )
        if not is_weight and len(info.shape) != 1:
            raise DwsError(f"{path}: bias {key!r} has shape {shape}; a linear bias is 1-D")
        if any(s == 0 for s in info.shape):
            raise DwsError(f"{path}: tensor {key!r} has shape {shape}, with no entries")
        if info.dtype is None:
            raise DwsError(
                f"{path}: tensor {key!r} has dtype {info.dtype_name}; "
                "dws reads floating-point weights (float16/bfloat16/float32/float64) only"
            )

    # Pass 3: layers in natural order of the module path, chained by shapes.
    layers: list[LayerLayout] = []
    for module in sorted(groups, key=natural_key):
        group = groups[module]
        if "weight" not in group:
            raise DwsError(
                f"{path}: bias {group['bias']!r} has no weight "
                f"{(module + '.weight') if module else 'weight'!r} next to it"
            )
        w_key, b_key = group["weight"], group.get("bias")
        w_info = infos[w_key]
        if b_key is not None and infos[b_key].shape != (w_info.shape[0],):
            raise DwsError(
                f"{path}: bias {b_key!r} has shape {shape_str(infos[b_key].shape)} but weight "
                f"{w_key!r} has shape {shape_str(w_info.shape)} (expected bias "
                f"{shape_str((w_info.shape[0],))})"
            )
        layers.append(
            LayerLayout(
                module=module,
                weight_key=w_key,
                bias_key=b_key,
                weight_dtype=w_info.dtype,  # type: ignore[arg-type]  # checked in pass 2
                bias_dtype=infos[b_key].dtype if b_key is not None else None,
            )
        )
    for prev, cur in itertools.pairwise(layers):
        p_shape, c_shape = infos[prev.weight_key].shape, infos[cur.weight_key].shape
        if c_shape[1] != p_shape[0]:
            raise DwsError(
                f"{path}: tensors do not chain: {prev.weight_key!r} has shape "
                f"{shape_str(p_shape)} ({p_shape[0]} outputs) but the next layer "
                f"{cur.weight_key!r} has shape {shape_str(c_shape)} ({c_shape[1]} inputs); "
                "layers are ordered by natural sort of their module path"
            )
    return layers


KEY_STYLES = {
    # nn.Sequential(Linear, act, Linear, act, …, Linear): the activations take the odd slots,
    # so the file loads straight into such a module with load_state_dict.
    "sequential": lambda i: str(2 * i),
    "layers": lambda i: f"layers.{i}",  # nn.ModuleList of Linear named `layers`
    "fc": lambda i: f"fc{i + 1}",  # named layers fc1, fc2, …
}
