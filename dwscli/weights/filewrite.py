"""The file level of writing checkpoints: output names, and safetensors bytes.

Written files have their JSON header in sorted order, so the same tensors and metadata always
give the same bytes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.weights.fileformat import (
    SAFETENSORS_DTYPE_NAMES,
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    first_line,
)


def output_path(path: str | os.PathLike[str]) -> Path:
    """The file to write for ``path``: ``.safetensors`` added when there is no suffix; an
    existing directory, a ``.pt`` name or an unknown suffix refused."""
    target = Path(path)
    try:
        is_directory = target.is_dir()
    except OSError:  # the checks before writing name the problem
        is_directory = False
    if is_directory:
        raise DwsError(
            f"{target}: is a directory; give an output file name",
            hint=f"for example {target / ('out' + SAFETENSORS_SUFFIX)}",
        )
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


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name (kept by Python as surrogates)
    become ``\\xNN`` escapes, so that they can be stored in metadata."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` with its JSON header re-written with sorted keys.

    safetensors writes the metadata map in hash order, which changes from run to run; sorted,
    the same tensors and metadata give the same bytes. The header stays padded with spaces to a
    multiple of 8 bytes, as the format requires for aligned data; the data offsets are relative
    to the data start and unchanged.
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


def serialize(target: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """Canonical safetensors bytes (sorted header) of ``tensors`` and ``metadata``."""
    import safetensors
    import safetensors.torch

    clean = _clean_metadata(metadata)
    try:
        return canonical_safetensors(safetensors.torch.save(tensors, metadata=clean))
    except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise DwsError(f"{target}: cannot serialise the checkpoint ({first_line(exc)})") from exc


def _clean_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {utf8_text(str(k)): utf8_text(str(v)) for k, v in sorted(metadata.items())}


def serialize_chunks(
    target: Path, tensors: dict[str, Tensor], metadata: dict[str, str]
) -> list[bytes | memoryview]:
    """:func:`serialize`'s bytes as pieces to write one after the other: the header, then a
    view of each tensor's own memory (no copy).

    ``serialize`` holds the file's bytes up to three times over (safetensors' buffer, then the
    slice and the concatenation that sort its header): for a large net, more than the forward
    that made the weights. Here safetensors lays out only one-element stand-ins of the same
    names and dtypes (its order of the data: by dtype, then name), and the data offsets follow
    from the real sizes, so the bytes are the same as ``serialize``'s.
    """
    import safetensors
    import safetensors.torch

    if sys.byteorder != "little":  # pragma: no cover - safetensors data is little-endian
        return [serialize(target, tensors, metadata)]
    contiguous = {key: tensor.detach().cpu().contiguous() for key, tensor in tensors.items()}
    header = _single_dtype_layout(contiguous, metadata)
    if header is None:
        stand_ins = {key: torch.zeros(1, dtype=tensor.dtype) for key, tensor in contiguous.items()}
        try:
            layout = safetensors.torch.save(stand_ins, metadata=_clean_metadata(metadata))
        except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError) as exc:
            raise DwsError(
                f"{target}: cannot serialise the checkpoint ({first_line(exc)})"
            ) from exc
        length = int.from_bytes(layout[:8], "little")
        header = json.loads(layout[8 : 8 + length])
    pieces: list[bytes | memoryview] = []
    offset = 0
    for key in sorted(contiguous, key=lambda name: header[name]["data_offsets"][0]):
        tensor = contiguous[key]
        size = tensor.numel() * tensor.element_size()
        header[key]["shape"] = list(tensor.shape)
        header[key]["data_offsets"] = [offset, offset + size]
        offset += size
        if size:
            pieces.append(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return [len(text).to_bytes(8, "little") + text, *pieces]


def _single_dtype_layout(
    tensors: Mapping[str, Tensor], metadata: Mapping[str, str]
) -> dict[str, Any] | None:
    """The header safetensors lays out for tensors of one floating dtype (their data in name
    order; offsets filled in by the caller), without calling it: for a small checkpoint that
    call is a third of the time it takes to write it. None for mixed or other dtypes, which
    safetensors orders by its own dtype ranking."""
    dtypes = {tensor.dtype for tensor in tensors.values()}
    name = SAFETENSORS_DTYPE_NAMES.get(next(iter(dtypes))) if len(dtypes) == 1 else None
    if name is None or not all(isinstance(key, str) and _utf8(key) for key in tensors):
        return None  # safetensors' own checks give the message for a name it cannot store
    header: dict[str, Any] = {"__metadata__": _clean_metadata(metadata)}
    for position, key in enumerate(sorted(tensors)):
        header[key] = {"dtype": name, "shape": [1], "data_offsets": [position, position + 1]}
    return header


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
