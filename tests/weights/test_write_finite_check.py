"""Writing refuses non-finite weights, counting them, and accepts large finite ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint, save_checkpoint, save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _checkpoint(tmp_path: Path, dtype: torch.dtype = torch.float32):
    space = WeightSpace.random(MLPSpec.parse("3-4-2:relu"), 1)
    return load_checkpoint(save_space(tmp_path / "in.safetensors", space, dtype=dtype))


def test_nan_weights_are_refused_with_their_count(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path)
    new = checkpoint.space.clone()
    new.weights[0][0, 0, :2] = float("nan")
    with pytest.raises(DwsError, match=r"2 non-finite values \(the operation produced NaN/Inf\)"):
        save_checkpoint(tmp_path / "out.safetensors", checkpoint, space=new)
    assert not (tmp_path / "out.safetensors").exists()


def test_overflow_when_cast_back_is_refused(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, torch.float16)
    new = checkpoint.space.to(torch.float32)
    new.weights[1][0, 1, 1] = 1e6  # finite in float32, inf in float16
    with pytest.raises(DwsError, match=r"1 non-finite values \(overflow when cast back"):
        save_checkpoint(tmp_path / "out.safetensors", checkpoint, space=new)


def test_large_finite_weights_whose_sum_overflows_are_written(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path)
    new = checkpoint.space.clone()
    new.weights[0].fill_(3e38)  # every value finite, their float32 sum is not
    written = save_checkpoint(tmp_path / "out.safetensors", checkpoint, space=new)
    assert torch.equal(load_checkpoint(written).space.weights[0], new.weights[0])
