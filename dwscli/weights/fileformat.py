"""The file level of checkpoints: reading safetensors and ``.pt`` files without trusting them
(writing is :mod:`~dwscli.weights.filewrite`).

safetensors files are validated by hand first (the 8-byte header length, the header's size, the
tensor count, and every tensor's byte range against its shape and the file size, all before any
data is read) so that a truncated, padded or foreign file gets a precise message and costs no
memory. ``.pt``/``.pth`` files are only ever read with ``torch.load(weights_only=True)``: dws never
unpickles anything else.
"""

from __future__ import annotations

import json
import math
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dwscli import limits
from dwscli.errors import DwsError, describe_os_error

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
#: torch dtype -> its safetensors name, for the floating dtypes dws writes.
SAFETENSORS_DTYPE_NAMES = {dtype: name for name, dtype in _SAFETENSORS_FLOAT_DTYPES.items()}
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


def shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def torch_dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def first_line(exc: BaseException, limit: int = 160) -> str:
    """A library exception's message cut to its first line (and first sentence, if long)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if len(text) > limit and ". " in text:
        text = text[: text.index(". ") + 1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def looks_like_text(head: bytes) -> bool:
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


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype | None  # None when not a floating type dws accepts
    dtype_name: str
    #: Absolute byte range of the tensor's data in the file (safetensors only).
    span: tuple[int, int] = (0, 0)


def check_input_path(path: Path) -> int:
    """Existence checks; returns the file size."""
    try:
        info = path.stat()
    except OSError as exc:
        raise DwsError(f"{path}: {describe_os_error(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DwsError(f"{path}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(info.st_mode):
        raise DwsError(f"{path}: not a regular file")
    size = info.st_size
    if size == 0:
        raise DwsError(f"{path}: is empty (0 bytes), not a checkpoint")
    limits.CHECKPOINT_BYTES.check(size, str(path))
    return size


def read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError as exc:
        raise DwsError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def sniff_format(path: Path, head: bytes, size: int) -> str:
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


def read_safetensors_header(
    path: Path, size: int, head: bytes = b""
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and check the header without trusting it: lengths and offsets vs the file size.

    ``head``: the file's first bytes when the caller has read them already; the header is taken
    from them when they hold it all (one read of a small file instead of three).
    """
    if len(head) < 8:
        head = read_head(path, 8)
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
    limits.HEADER_BYTES.check(header_len, f"{path}: safetensors")
    raw = (head if len(head) >= 8 + header_len else read_head(path, 8 + header_len))[
        8 : 8 + header_len
    ]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DwsError(
            f"{path}: not a safetensors file (its header is not valid JSON: {first_line(exc)})"
        ) from exc
    except RecursionError:
        raise DwsError(
            f"{path}: not a safetensors file (its header is JSON nested too deeply)"
        ) from None
    if not isinstance(header, dict):
        raise DwsError(f"{path}: not a safetensors file (its header is not a JSON object)")
    limits.TENSORS.check(len(header) - ("__metadata__" in header), f"{path}: safetensors")

    data_len = size - 8 - header_len
    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise DwsError(f"{path}: safetensors metadata must map strings to strings")
    metadata = dict(metadata_raw)

    infos: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
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
            torch_dtype_name(dtype)
            if dtype is not None
            else _SAFETENSORS_OTHER_DTYPES.get(dtype_name, dtype_name)
        )
        if dtype is not None:
            expected = math.prod(shape) * element_size(dtype)
            if end - begin != expected:
                raise DwsError(
                    f"{path}: header says tensor {key!r} of shape {shape_str(tuple(shape))} "
                    f"({name}) occupies {end - begin} bytes but needs {expected}; not a valid "
                    "safetensors file"
                )
        infos[key] = TensorInfo(
            tuple(shape), dtype, name, (8 + header_len + begin, 8 + header_len + end)
        )
        spans.append((begin, end, key))
    check_coverage(path, spans, data_len)
    return infos, metadata


def element_size(dtype: torch.dtype) -> int:
    return dtype.itemsize


def check_coverage(path: Path, spans: list[tuple[int, int, str]], data_len: int) -> None:
    """The tensors' byte ranges must tile the data exactly: no overlap, no gap, no tail.

    Checked from the header alone, before any data is read, so that a valid header followed by
    a gigabyte of padding costs nothing.
    """
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else "leaves a gap"
            raise DwsError(
                f"{path}: header says tensor {key!r} starts at data byte {begin}, which "
                f"{problem} (expected {position}); not a valid safetensors file"
            )
        position = end
    if position != data_len:
        raise DwsError(
            f"{path}: file not fully covered by its tensors: {data_len - position} bytes after "
            "the last tensor; not a valid safetensors file"
        )


def load_safetensors_tensors(
    path: Path, infos: Mapping[str, TensorInfo], keys: list[str], whole: bytes | None = None
) -> dict[str, Tensor]:
    """Read only the tensors ``keys``, at the byte ranges of the checked header ``infos``.

    Each tensor gets memory of its own (nothing stays mapped to the file). Read by hand rather
    than with ``safe_open``, which needs the path to be valid UTF-8. ``whole``: the entire file,
    when the caller has read it already (a small file), to take the tensors from.
    """
    if whole is not None:
        return {
            key: _tensor_from(bytearray(whole[slice(*infos[key].span)]), infos[key]) for key in keys
        }
    tensors: dict[str, Tensor] = {}
    try:
        with open(path, "rb") as handle:
            for key in keys:
                info = infos[key]
                begin, end = info.span
                handle.seek(begin)
                raw = bytearray(end - begin)  # read into it: no second, transient copy
                if handle.readinto(raw) != end - begin:
                    raise DwsError(f"{path}: file shrank while being read (tensor {key!r})")
                tensors[key] = _tensor_from(raw, info)
    except OSError as exc:
        raise DwsError(f"{path}: cannot read ({describe_os_error(exc)})") from exc
    return tensors


def _tensor_from(raw: bytearray, info: TensorInfo) -> Tensor:
    """The tensor stored little-endian in ``raw`` (which it keeps as its memory)."""
    assert info.dtype is not None  # the layout accepts floating tensors only
    if not raw:
        return torch.empty(info.shape, dtype=info.dtype)
    flat = torch.frombuffer(raw, dtype=info.dtype)
    if sys.byteorder != "little":  # pragma: no cover - safetensors is little-endian
        flat = flat.view(torch.uint8).view(-1, flat.element_size()).flip(1)
        flat = flat.reshape(-1).view(info.dtype)
    return flat.reshape(info.shape)


def load_torch_state_dict(path: Path) -> dict[str, Tensor]:
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
        raise DwsError(f"{path}: not a torch checkpoint ({first_line(exc)})") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, … on bad files
        raise DwsError(f"{path}: not a readable torch checkpoint ({first_line(exc)})") from exc

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
        if not isinstance(key, str):
            raise DwsError(
                f"{path}: key {key!r} is a {type(key).__name__}, not a string; "
                "dws reads plain state dicts of linear layers (string keys)"
            )
        if not isinstance(value, Tensor):
            raise DwsError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "dws reads plain state dicts of linear layers"
            )
        if value.is_meta:
            raise DwsError(
                f"{path}: tensor {key!r} is on the meta device (a shape without values); "
                "save the state dict of a model with real weights"
            )
        if value.layout != torch.strided:
            raise DwsError(
                f"{path}: tensor {key!r} is {value.layout}; dws reads dense tensors only"
            )
        # Own, contiguous memory: tied or sliced storages cannot be written to safetensors.
        state[key] = value.detach().clone(memory_format=torch.contiguous_format)
    return state
