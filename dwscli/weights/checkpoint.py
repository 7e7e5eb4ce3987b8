"""Read and write MLP checkpoints: safetensors (and read-only ``.pt``) state dicts in torch layout.

Reading
    A checkpoint is a state dict of linear layers: ``<module>.weight`` ``[out, in]`` and an
    optional ``<module>.bias`` ``[out]``. Common layouts all work: ``nn.Sequential`` (``0.weight``,
    ``2.weight``), nested modules (``net.layers.3.weight``, ``layers.0.linear.weight``) and named
    layers (``fc1.weight``, ``fc2.weight``). Layers are ordered by *natural* sort of the module path
    (``net.2`` before ``net.10``) and the order is then checked by chaining shapes. A linear layer
    without a bias is supported: it gets a zero bias in the :class:`WeightSpace` and is written back
    without one. Anything else (conv kernels, normalisation layers, integer tensors, NaN/Inf unless
    allowed) is refused with a one-line :class:`DwsError` that names the file and the tensor.

    safetensors files are validated by hand first (the 8-byte header length and every tensor's data
    offsets against the file size) so that a truncated or foreign file gets a precise message;
    ``.pt``/``.pth`` files are only ever read with ``torch.load(weights_only=True)``.

Writing
    :func:`save_checkpoint` writes the same keys, shapes, dtypes and metadata as the input, plus
    provenance metadata under ``dws.`` keys. A tensor the operation did not change is written from
    the original tensor object, so it is byte-identical to the input. Outputs are always
    safetensors, written atomically, and never replace an existing file (the input included)
    unless ``force``.

Metadata keys (all strings) that dws reads and writes:

``dws.spec``
    full spec string such as ``2-32-32-1:sine;w0=30``; wins over everything else on load.
``activation`` (+ ``w0``, ``w0_hidden``, ``negative_slope``)
    the plain-key way other tools record the activation and its options.
``dws.version``, ``dws.source`` and ``dws.<anything>`` from ``provenance``
    written by :func:`save_checkpoint` / :func:`save_space`.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dwscli import __version__
from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_write_bytes, check_writable_target
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import ACTIVATIONS, MLPSpec

__all__ = [
    "METADATA_ACTIVATION_KEY",
    "METADATA_OPTION_KEYS",
    "METADATA_SPEC_KEY",
    "PROVENANCE_PREFIX",
    "Checkpoint",
    "CheckpointLayout",
    "LayerLayout",
    "load_checkpoint",
    "natural_key",
    "save_checkpoint",
    "save_space",
]

METADATA_SPEC_KEY = "dws.spec"
METADATA_ACTIVATION_KEY = "activation"
#: Plain metadata keys that become spec options when ``dws.spec`` is absent (all numeric).
METADATA_OPTION_KEYS = ("w0", "w0_hidden", "negative_slope")
PROVENANCE_PREFIX = "dws."

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
SAFETENSORS_SUFFIX = ".safetensors"

# safetensors dtype names -> torch dtypes (floating types only: anything else is refused).
_SAFETENSORS_FLOAT_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
# Names of the other safetensors dtypes, for messages.
_SAFETENSORS_OTHER_DTYPES = {
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
}
_MAX_HEADER_BYTES = 100_000_000  # the limit safetensors itself enforces
_BITS_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_ACTIVATION_ALIASES = {
    "sin": "sine",
    "siren": "sine",
    "linear": "identity",
    "none": "identity",
    "leakyrelu": "leaky_relu",
    "lrelu": "leaky_relu",
}
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------------------------
# data model
# --------------------------------------------------------------------------------------------
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


@dataclass
class Checkpoint:
    """A loaded MLP checkpoint.

    ``space`` (batch 1) is what operations work on: float32, or float64 when the file holds any
    float64 tensor, so that no stored value loses precision. ``tensors`` are the tensors exactly
    as stored, kept so that :func:`save_checkpoint` can write untouched ones back byte-identical.
    ``activation_source`` says where the spec's activation came from: ``metadata:dws.spec``,
    ``metadata:activation``, ``argument`` or ``default``.
    """

    path: Path
    space: WeightSpace
    layout: CheckpointLayout
    tensors: dict[str, Tensor]
    activation_source: str = "default"

    @property
    def spec(self) -> MLPSpec:
        return self.space.spec

    @property
    def metadata(self) -> dict[str, str]:
        return self.layout.metadata

    @property
    def stored_dtypes(self) -> list[torch.dtype]:
        """The distinct dtypes the tensors are stored in, in network order."""
        return list(dict.fromkeys(self.layout.dtypes.values()))

    def constrain(self, space: WeightSpace) -> WeightSpace:
        """``space`` with the biases of bias-free layers set to zero, so that it can be saved.

        An operation that produces biases (say an equivariant processor) for a layer that has
        none in the file cannot be written back in the input's layout; call this to drop them.
        """
        biases = list(space.biases)
        for i in self.layout.bias_free_layers:
            biases[i] = torch.zeros_like(biases[i])
        return WeightSpace(list(space.weights), biases, space.spec)

    def __repr__(self) -> str:
        dtypes = ",".join(str(d).removeprefix("torch.") for d in self.stored_dtypes)
        return f"Checkpoint({self.path.name}: {self.spec}, stored {dtypes})"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)  # the same few keys recur in every file of a run
def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders digit runs by value: ``net.2`` < ``net.10``, ``fc2`` < ``fc10``.

    ``re.split`` with a capturing group alternates text, number, text, … so keys of different
    strings always compare str with str and int with int.
    """
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text)))


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """A library exception's message cut to its first line (and first sentence, if long)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if len(text) > limit and ". " in text:
        text = text[: text.index(". ") + 1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checkable(t: Tensor) -> Tensor:
    """``t`` in a dtype that isnan/isinf support, without overflowing float64 values."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _bits(t: Tensor) -> Tensor:
    return t.contiguous().view(_BITS_VIEW[t.element_size()])


def _bit_equal(a: Tensor, b: Tensor) -> bool:
    """Exact equality of the stored bits (NaN == NaN, and -0.0 != 0.0)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # the sample may cut a multi-byte character at its end
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\r\n\f\v" for ch in text)


# --------------------------------------------------------------------------------------------
# reading: the file level
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype | None  # None when not a floating type dws accepts
    dtype_name: str


def _check_input_path(path: Path) -> int:
    """Existence checks (one ``stat``); returns the file size."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise DwsError(f"{path}: no such file") from exc
    except OSError as exc:
        raise DwsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise DwsError(f"{path}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(info.st_mode):
        raise DwsError(f"{path}: not a regular file")
    size = info.st_size
    if size == 0:
        raise DwsError(f"{path}: is empty (0 bytes), not a checkpoint")
    return size


def _read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError as exc:
        raise DwsError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _sniff_format(path: Path, head: bytes, size: int) -> str:
    """``safetensors`` or ``torch``: by the ``.safetensors`` suffix, else by content."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return "safetensors"
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if header_len + 8 <= size and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":  # torch.save's zip format
        return "torch"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"  # legacy torch.save: a bare pickle stream
    if path.suffix.lower() in TORCH_SUFFIXES:
        return "torch"
    return "safetensors"  # its checks give the most precise message for everything else


def _read_safetensors_header(
    path: Path, size: int
) -> tuple[dict[str, _TensorInfo], dict[str, str]]:
    """Parse and check the header without trusting it: lengths and offsets vs the file size."""
    head = _read_head(path, 8)
    if size < 8:
        raise DwsError(f"{path}: only {size} bytes, too short to be a safetensors file")
    if head[:4] == b"PK\x03\x04":
        raise DwsError(
            f"{path}: is a torch.save (zip) file, not safetensors",
            hint=f"rename it to {path.stem}.pt to read it with torch.load(weights_only=True)",
        )
    header_len = int.from_bytes(head[:8], "little")
    if header_len + 8 > size:
        raise DwsError(
            f"{path}: header claims {header_len} bytes but the file has only {size - 8} bytes "
            "after the 8-byte length (truncated, or not a safetensors file)"
        )
    if header_len > _MAX_HEADER_BYTES:
        raise DwsError(f"{path}: header of {header_len} bytes is implausibly large")
    raw = _read_head(path, 8 + header_len)[8:]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DwsError(
            f"{path}: not a safetensors file (its header is not valid JSON: {_first_line(exc)})"
        ) from exc
    if not isinstance(header, dict):
        raise DwsError(f"{path}: not a safetensors file (its header is not a JSON object)")

    data_len = size - 8 - header_len
    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise DwsError(f"{path}: safetensors metadata must map strings to strings")
    metadata = dict(metadata_raw)

    infos: dict[str, _TensorInfo] = {}
    for key, entry in header.items():
        if not isinstance(entry, dict):
            raise DwsError(f"{path}: header entry {key!r} is not a tensor description")
        dtype_name = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if (
            not isinstance(dtype_name, str)
            or not isinstance(shape, list)
            or not all(isinstance(s, int) and s >= 0 for s in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
        ):
            raise DwsError(f"{path}: header entry for tensor {key!r} is malformed")
        begin, end = offsets
        if end > data_len or begin > end:
            raise DwsError(
                f"{path}: header says tensor {key!r} occupies data bytes {begin}..{end} but the "
                f"file has only {data_len} data bytes (truncated?)"
            )
        dtype = _SAFETENSORS_FLOAT_DTYPES.get(dtype_name)
        name = (
            _dtype_name(dtype)
            if dtype is not None
            else _SAFETENSORS_OTHER_DTYPES.get(dtype_name, dtype_name)
        )
        infos[key] = _TensorInfo(tuple(shape), dtype, name)
    return infos, metadata


def _load_safetensors_tensors(path: Path, keys: list[str]) -> dict[str, Tensor]:
    import safetensors
    import safetensors.torch

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DwsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # frombuffer on read-only bytes; we copy right away
            loaded = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise DwsError(f"{path}: not a valid safetensors file ({_first_line(exc)})") from exc
    return {key: loaded[key].clone() for key in keys}


def _load_torch_state_dict(path: Path) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)``, then unwrap a ``{"state_dict": …}`` container."""
    import pickle

    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if text.startswith("Weights only load failed"):
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            what = f" (it contains {found.group(1)})" if found else ""
            raise DwsError(
                f"{path}: refused: not a plain state dict of tensors{what}; dws reads .pt files "
                "only with torch.load(weights_only=True) and never runs pickled code",
                hint="save model.state_dict(), or better, use safetensors",
            ) from exc
        raise DwsError(f"{path}: not a torch checkpoint ({_first_line(exc)})") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, … on bad files
        raise DwsError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from exc

    if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise DwsError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise DwsError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "dws reads plain state dicts of linear layers"
            )
        if value.layout != torch.strided:
            raise DwsError(
                f"{path}: tensor {key!r} is {value.layout}; dws reads dense tensors only"
            )
        # Own, contiguous memory: tied or sliced storages cannot be written to safetensors.
        state[key] = value.detach().clone(memory_format=torch.contiguous_format)
    return state


# --------------------------------------------------------------------------------------------
# reading: structure
# --------------------------------------------------------------------------------------------
def _not_linear_reason(param: str) -> str:
    if param in _NORM_STATS:
        return " (a BatchNorm running statistic)"
    if param in ("weight_g", "weight_v") or param.startswith("original"):
        return " (weight normalisation or a parametrization; remove it before saving)"
    return ""


def _plan_layout(path: Path, infos: Mapping[str, _TensorInfo]) -> list[LayerLayout]:
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
                f"{_not_linear_reason(param)}; dws reads MLPs (linear layers) only"
            )
        groups.setdefault(module, {})[param] = key

    # Pass 2: each tensor's rank, size and dtype.
    for key in keys:
        info = infos[key]
        shape = _shape_str(info.shape)
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
                f"{path}: bias {b_key!r} has shape {_shape_str(infos[b_key].shape)} but weight "
                f"{w_key!r} has shape {_shape_str(w_info.shape)} (expected bias "
                f"{_shape_str((w_info.shape[0],))})"
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
                f"{_shape_str(p_shape)} ({p_shape[0]} outputs) but the next layer "
                f"{cur.weight_key!r} has shape {_shape_str(c_shape)} ({c_shape[1]} inputs); "
                "layers are ordered by natural sort of their module path"
            )
    return layers


def _check_finite(path: Path, layers: list[LayerLayout], tensors: Mapping[str, Tensor]) -> None:
    keys = CheckpointLayout(layers).tensor_keys()
    # Fast path, one reduction per tensor: a sum is finite only if every value is (a finite sum
    # that overflowed falls through to the exact check below, which then finds nothing).
    if all(math.isfinite(float(_checkable(tensors[key]).sum())) for key in keys):
        return
    bad: list[tuple[str, int, int]] = []
    for key in keys:
        t = _checkable(tensors[key])
        if bool(torch.isfinite(t).all()):  # one pass in the common case; count only on failure
            continue
        n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        bad.append((key, n_nan, n_inf))
    if bad:
        key, n_nan, n_inf = bad[0]
        more = f" (and {len(bad) - 1} more tensor(s) with non-finite values)" if bad[1:] else ""
        raise DwsError(
            f"{path}: tensor {key!r} has {n_nan} NaN and {n_inf} Inf values{more}; "
            "refusing non-finite weights",
            hint="pass --allow-nonfinite (library: allow_nonfinite=True) to load them anyway",
        )


# --------------------------------------------------------------------------------------------
# reading: the spec
# --------------------------------------------------------------------------------------------
def _parse_activation(text: str, where: str) -> tuple[str, dict[str, str]]:
    """``"sine"`` or ``"sine;w0=30"`` -> ``("sine", {"w0": "30"})``, with common aliases."""
    name, *rest = (part.strip() for part in text.split(";"))
    name = name.lower().replace("-", "_")
    name = _ACTIVATION_ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise DwsError(
            f"{where}: unknown activation {text.split(';')[0].strip()!r}",
            hint=f"choose one of {', '.join(ACTIVATIONS)}",
        )
    options: dict[str, str] = {}
    for item in rest:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DwsError(f"{where}: cannot read activation option {item!r} (write key=value)")
        options[key.strip()] = value.strip()
    return name, options


def _resolve_spec(
    path: Path, widths: tuple[int, ...], metadata: Mapping[str, str], activation: str | None
) -> tuple[MLPSpec, str]:
    requested = _parse_activation(activation, "activation argument") if activation else None

    if METADATA_SPEC_KEY in metadata:
        text = metadata[METADATA_SPEC_KEY]
        try:
            spec = MLPSpec.parse(text)
        except DwsError as exc:
            raise DwsError(f"{path}: metadata {METADATA_SPEC_KEY} = {text!r}: {exc}") from exc
        if spec.widths != widths:
            raise DwsError(
                f"{path}: metadata {METADATA_SPEC_KEY} = {text!r} says widths "
                f"{'-'.join(map(str, spec.widths))} but the tensors give "
                f"{'-'.join(map(str, widths))}"
            )
        source = f"metadata:{METADATA_SPEC_KEY}"
    else:
        options: dict[str, str] = {}
        for key in METADATA_OPTION_KEYS:
            if key in metadata:
                try:
                    float(metadata[key])
                except ValueError:
                    raise DwsError(
                        f"{path}: metadata {key} = {metadata[key]!r} is not a number"
                    ) from None
                options[key] = metadata[key].strip()
        if METADATA_ACTIVATION_KEY in metadata:
            name, extra = _parse_activation(
                metadata[METADATA_ACTIVATION_KEY], f"{path}: metadata {METADATA_ACTIVATION_KEY}"
            )
            options = {**extra, **options}
            source = f"metadata:{METADATA_ACTIVATION_KEY}"
        elif requested is not None:
            name, extra = requested
            for key, value in extra.items():
                if key in options and options[key] != value:
                    raise DwsError(
                        f"{path}: metadata says {key}={options[key]} but {key}={value} was "
                        "requested"
                    )
            options = {**options, **extra}
            source = "argument"
        else:
            name, source = "relu", "default"
        try:
            spec = MLPSpec(widths, name, tuple(options.items()))
        except DwsError as exc:
            raise DwsError(f"{path}: {exc}") from exc

    if requested is not None and source.startswith("metadata"):
        name, extra = requested
        clash = [k for k, v in extra.items() if spec.option(k) not in (None, v)]
        if name != spec.activation or clash:
            raise DwsError(
                f"{path}: the file's metadata ({source.removeprefix('metadata:')}) says "
                f"{spec.activation}{''.join(f';{k}={spec.option(k)}' for k in clash)} "
                f"but {activation!r} was requested",
                hint="drop the activation option; it only fills in what the file does not say",
            )
    return spec, source


# --------------------------------------------------------------------------------------------
# public: load
# --------------------------------------------------------------------------------------------
def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    activation: str | None = None,
    allow_nonfinite: bool = False,
    dtype: torch.dtype | None = None,
) -> Checkpoint:
    """Load an MLP checkpoint (safetensors, or a ``.pt``/``.pth`` state dict).

    ``activation`` (``"relu"``, ``"sine;w0=30"``, …) fills in the activation when the file's
    metadata does not record one; if the metadata does and disagrees, that is an error rather
    than a silent override. ``dtype`` is the processing dtype of ``Checkpoint.space`` (default:
    float32, or float64 when any stored tensor is float64).
    """
    p = Path(path)
    size = _check_input_path(p)
    head = _read_head(p, 512)
    if _looks_like_text(head):  # no checkpoint format starts with 512 printable characters
        raise DwsError(f"{p}: looks like a text file, not a checkpoint (safetensors or .pt)")
    fmt = _sniff_format(p, head, size)

    if fmt == "safetensors":
        infos, metadata = _read_safetensors_header(p, size)
        layers = _plan_layout(p, infos)
        tensors = _load_safetensors_tensors(p, CheckpointLayout(layers).tensor_keys())
    else:
        state = _load_torch_state_dict(p)
        infos = {
            key: _TensorInfo(
                tuple(t.shape),
                t.dtype if t.is_floating_point() else None,
                _dtype_name(t.dtype),
            )
            for key, t in state.items()
        }
        metadata = {}
        layers = _plan_layout(p, infos)
        tensors = {key: state[key] for key in CheckpointLayout(layers).tensor_keys()}

    if not allow_nonfinite:
        _check_finite(p, layers, tensors)

    widths = (
        infos[layers[0].weight_key].shape[1],
        *(infos[layer.weight_key].shape[0] for layer in layers),
    )
    spec, source = _resolve_spec(p, widths, metadata, activation)

    if dtype is None:
        stored = {t.dtype for t in tensors.values()}
        dtype = torch.float64 if torch.float64 in stored else torch.float32
    weights = [tensors[layer.weight_key].to(dtype)[None] for layer in layers]
    biases = [
        tensors[layer.bias_key].to(dtype)[None]
        if layer.bias_key is not None
        else torch.zeros(1, infos[layer.weight_key].shape[0], dtype=dtype)
        for layer in layers
    ]
    space = WeightSpace(weights, biases, spec)
    layout = CheckpointLayout(layers, metadata, fmt)
    return Checkpoint(p, space, layout, tensors, source)


# --------------------------------------------------------------------------------------------
# public: save
# --------------------------------------------------------------------------------------------
def _output_path(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == "":
        return target.with_name(target.name + SAFETENSORS_SUFFIX)
    if suffix in TORCH_SUFFIXES:
        raise DwsError(
            f"{target}: dws writes safetensors only, never torch pickles",
            hint=f"name the output {target.stem}{SAFETENSORS_SUFFIX}",
        )
    if suffix != SAFETENSORS_SUFFIX:
        raise DwsError(
            f"{target}: unknown output format {suffix!r}",
            hint=f"name the output {target.stem}{SAFETENSORS_SUFFIX}",
        )
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _serialize(target: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    import safetensors
    import safetensors.torch

    try:
        return safetensors.torch.save(tensors, metadata=metadata)
    except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise DwsError(f"{target}: cannot serialise the checkpoint ({_first_line(exc)})") from exc


def _provenance_metadata(provenance: Mapping[str, object] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (provenance or {}).items():
        name = str(key)
        out[name if name.startswith(PROVENANCE_PREFIX) else PROVENANCE_PREFIX + name] = str(value)
    return out


def _write_value(
    target: Path, key: str, new: Tensor, original: Tensor, *, allow_nonfinite: bool
) -> Tensor:
    """The tensor to write for ``key``: the original object when the value is unchanged."""
    new = new.detach().cpu()
    cast = new.to(original.dtype, copy=True).contiguous()
    if _bit_equal(cast, original) or _bit_equal(new, original.to(new.dtype)):
        return original  # unchanged: the stored bytes go back untouched
    if not allow_nonfinite:
        n_bad = int((~torch.isfinite(_checkable(cast))).sum())
        if n_bad:
            was_finite = bool(torch.isfinite(_checkable(new)).all())
            why = (
                f"overflow when cast back to {_dtype_name(original.dtype)}"
                if was_finite
                else "the operation produced NaN/Inf"
            )
            raise DwsError(
                f"{target}: refusing to write tensor {key!r}: {n_bad} non-finite values ({why})"
            )
    return cast


def save_checkpoint(
    path: str | os.PathLike[str],
    checkpoint: Checkpoint,
    space: WeightSpace | None = None,
    *,
    provenance: Mapping[str, object] | None = None,
    force: bool = False,
    allow_nonfinite: bool = False,
) -> Path:
    """Write ``checkpoint`` (with the weights of ``space``, batch 1, if given) to ``path``.

    Same keys, shapes, dtypes and metadata as the input; provenance goes into metadata as
    ``dws.version``, ``dws.source`` (input file name), ``dws.<key>`` for each ``provenance``
    item (which may override the first two) and ``dws.spec`` (unless the activation was only the
    default guess, see :attr:`Checkpoint.activation_source`). Tensors whose values did not change
    are written byte-identical. The output is safetensors (a path without a suffix gets
    ``.safetensors``; ``.pt`` is refused), written atomically, and an existing file (the input
    included) is replaced only with ``force``. Returns the path written.
    """
    target = _output_path(path)
    if not force and _same_file(target, checkpoint.path):
        raise DwsError(f"{target}: is the input checkpoint; pass --force to overwrite it")
    check_writable_target(target, force=force)

    space = checkpoint.space if space is None else space
    if space.batch_size != 1:
        raise DwsError(
            f"{target}: a checkpoint holds one network but the weight space has a batch of "
            f"{space.batch_size}",
            hint="save each network of the batch separately (WeightSpace.unbind)",
        )
    if space.spec.widths != checkpoint.spec.widths:
        raise DwsError(
            f"{target}: weights of spec {space.spec} do not fit the layout of "
            f"{checkpoint.path.name} ({checkpoint.spec})"
        )

    tensors: dict[str, Tensor] = {}
    for i, layer in enumerate(checkpoint.layout.layers):
        w_key = layer.weight_key
        tensors[w_key] = _write_value(
            target,
            w_key,
            space.weights[i][0],
            checkpoint.tensors[w_key],
            allow_nonfinite=allow_nonfinite,
        )
        bias = space.biases[i][0]
        if layer.bias_key is None:
            if bool((bias != 0).any()):
                raise DwsError(
                    f"{target}: layer {layer.module or w_key!r} has no bias in "
                    f"{checkpoint.path.name} but the new weights give it a non-zero one",
                    hint="Checkpoint.constrain(space) drops biases the input layout cannot hold",
                )
            continue
        tensors[layer.bias_key] = _write_value(
            target,
            layer.bias_key,
            bias,
            checkpoint.tensors[layer.bias_key],
            allow_nonfinite=allow_nonfinite,
        )

    metadata = dict(checkpoint.metadata)
    # Record the spec, except when its activation was only dws's default guess: writing that
    # down would turn a guess into what later reads take as the file's own statement.
    if checkpoint.activation_source != "default" or space.spec != checkpoint.spec:
        metadata[METADATA_SPEC_KEY] = str(space.spec)
    metadata[PROVENANCE_PREFIX + "version"] = __version__
    metadata[PROVENANCE_PREFIX + "source"] = checkpoint.path.name
    metadata.update(_provenance_metadata(provenance))
    data = _serialize(target, tensors, metadata)
    return atomic_write_bytes(target, data, force=force)


#: Key styles of :func:`save_space`, as a function of the 0-based linear layer index.
KEY_STYLES = {
    # nn.Sequential(Linear, act, Linear, act, …, Linear): the activations take the odd slots,
    # so the file loads straight into such a module with load_state_dict.
    "sequential": lambda i: str(2 * i),
    "layers": lambda i: f"layers.{i}",  # nn.ModuleList of Linear named `layers`
    "fc": lambda i: f"fc{i + 1}",  # named layers fc1, fc2, …
}


def save_space(
    path: str | os.PathLike[str],
    space: WeightSpace,
    *,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
    key_style: str = "sequential",
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a fresh weight space (batch 1) as a plain safetensors state dict.

    Keys follow ``key_style``: ``sequential`` (default) gives ``0.weight``, ``0.bias``,
    ``2.weight``, … — the state dict of ``nn.Sequential(Linear, act, Linear, …)``; ``layers``
    gives ``layers.0.weight``, …; ``fc`` gives ``fc1.weight``, …. Metadata is ``metadata`` plus
    ``dws.spec`` and ``dws.version``. Tensors are written in ``dtype`` (default: the space's).
    """
    target = _output_path(path)
    check_writable_target(target, force=force)
    if key_style not in KEY_STYLES:
        raise DwsError(f"unknown key style {key_style!r}; choose one of {', '.join(KEY_STYLES)}")
    if space.batch_size != 1:
        raise DwsError(
            f"{target}: a checkpoint holds one network but the weight space has a batch of "
            f"{space.batch_size}",
            hint="save each network of the batch separately (WeightSpace.unbind)",
        )
    name = KEY_STYLES[key_style]
    out_dtype = dtype or space.dtype
    tensors: dict[str, Tensor] = {}
    for i, (w, b) in enumerate(zip(space.weights, space.biases, strict=True)):
        tensors[f"{name(i)}.weight"] = w[0].detach().to("cpu", out_dtype, copy=True).contiguous()
        tensors[f"{name(i)}.bias"] = b[0].detach().to("cpu", out_dtype, copy=True).contiguous()
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[METADATA_SPEC_KEY] = str(space.spec)
    meta[PROVENANCE_PREFIX + "version"] = __version__
    data = _serialize(target, tensors, meta)
    return atomic_write_bytes(target, data, force=force)
