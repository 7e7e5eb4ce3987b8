"""Checkpoints are written tensor by tensor (no whole-file buffer) with the same bytes."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import torch

from dwscli.weights.checkpoint import load_checkpoint, save_checkpoint, save_space
from dwscli.weights.fileformat import read_safetensors_header
from dwscli.weights.filewrite import serialize, serialize_chunks
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "layers.1.weight": torch.randn(5, 7, generator=generator),
        "0.weight": torch.randn(7, 3, generator=generator).to(torch.float64),
        "0.bias": torch.randn(7, generator=generator).to(torch.float16),
        "layers.1.bias": torch.randn(5, generator=generator).to(torch.bfloat16),
        "scale": torch.tensor(2.5),
        "empty": torch.empty(0, 4),
        "ünïcode": torch.randn(2, 2, generator=generator)[:, 0],  # not contiguous
    }


@pytest.mark.parametrize("metadata", [{}, {"dws.spec": "3-7-5:relu", "é": "ü", "b": "a"}])
def test_serialize_chunks_gives_the_bytes_of_serialize(metadata: dict[str, str]) -> None:
    tensors = _tensors()
    whole = serialize(
        Path("x.safetensors"), {k: t.contiguous() for k, t in tensors.items()}, metadata
    )
    chunks = serialize_chunks(Path("x.safetensors"), tensors, metadata)
    assert b"".join(bytes(chunk) for chunk in chunks) == whole


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("metadata", [{}, {"dws.spec": "3-7-5:relu", "é": "ü", "b": "a"}])
def test_one_dtype_laid_out_without_safetensors_gives_its_bytes(
    dtype: torch.dtype, metadata: dict[str, str]
) -> None:
    """Tensors of one dtype (every checkpoint dws writes) are laid out without calling
    safetensors; the bytes must still be exactly what safetensors writes."""
    tensors = {key: tensor.to(dtype) for key, tensor in _tensors().items()}
    whole = serialize(
        Path("x.safetensors"), {k: t.contiguous() for k, t in tensors.items()}, metadata
    )
    chunks = serialize_chunks(Path("x.safetensors"), tensors, metadata)
    assert b"".join(bytes(chunk) for chunk in chunks) == whole


def test_writing_a_checkpoint_holds_no_copy_of_its_bytes(tmp_path: Path) -> None:
    """Saving a 32 MiB net allocates far less than the file (it held the file's bytes three
    times over: safetensors' buffer, then the slice and the concatenation that sort its
    header), and the file has the same bytes as before."""
    space = WeightSpace.random(MLPSpec.parse("2048-4096-2:relu"), 1)
    size = sum(t.numel() for t in space.tensors()) * 4
    assert size > 32 * 1024**2
    source = save_space(tmp_path / "in.safetensors", space)
    checkpoint = load_checkpoint(source)
    changed = space.map(lambda t: t * 2)
    tracemalloc.start()
    try:
        written = save_checkpoint(tmp_path / "out.safetensors", checkpoint, space=changed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 8
    tensors = {
        key: value
        for key, value in zip(
            checkpoint.layout.tensor_keys(),
            [t[0] for pair in zip(changed.weights, changed.biases) for t in pair],
        )
    }
    _, metadata = read_safetensors_header(written, written.stat().st_size)
    assert written.read_bytes() == serialize(written, tensors, metadata)


def test_a_name_safetensors_cannot_store_is_an_error_not_a_broken_file() -> None:
    from dwscli.errors import DwsError

    tensors = {"ok": torch.zeros(2), "bad\udce9": torch.ones(2)}  # a lone surrogate
    with pytest.raises(DwsError, match=r"x\.safetensors: cannot serialise the checkpoint"):
        serialize_chunks(Path("x.safetensors"), tensors, {})
