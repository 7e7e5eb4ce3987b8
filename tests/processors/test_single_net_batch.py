"""A chunk of one checkpoint is run from the checkpoint's own tensors (no batch copy)."""

from __future__ import annotations

from pathlib import Path

import torch

from dwscli.processors.pipeline import Item, stack
from dwscli.weights.checkpoint import load_checkpoint, save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _item(tmp_path: Path, name: str, seed: int) -> Item:
    generator = torch.Generator().manual_seed(seed)
    space = WeightSpace.random(MLPSpec.parse("4-6-3:relu"), 1, generator=generator)
    checkpoint = load_checkpoint(save_space(tmp_path / name, space))
    return Item(0, checkpoint, processor=None)  # type: ignore[arg-type]


def test_a_single_float32_net_is_its_checkpoints_tensors(tmp_path: Path) -> None:
    item = _item(tmp_path, "a.safetensors", 0)
    batch = stack([item], torch.device("cpu"))
    for ours, theirs in zip(batch.tensors(), item.checkpoint.space.tensors()):
        assert ours.data_ptr() == theirs.data_ptr()


def test_several_nets_are_stacked_in_order(tmp_path: Path) -> None:
    items = [_item(tmp_path, f"{k}.safetensors", k) for k in range(3)]
    batch = stack(items, torch.device("cpu"))
    assert batch.batch_size == 3
    for k, item in enumerate(items):
        for ours, theirs in zip(batch.tensors(), item.checkpoint.space.tensors()):
            assert torch.equal(ours[k], theirs[0])
