"""Batch order, rank slices and permutation augmentation, as pure functions of the seed.

Everything random in the data path is drawn from generators seeded by ``(seed, purpose, epoch,
step)``, never from a process's global RNG, so that

- a resumed run sees exactly the batches the uninterrupted run would have seen, and
- under torchrun every rank computes the same global batch and the same augmentation
  permutations, then keeps its own slice: rank r of N takes positions r, r+N, r+2N, … of each
  global batch (as ``DistributedSampler`` does), so the union of the ranks' slices is exactly
  the single-process batch.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from dwscli.weights.space import WeightSpace
from dwscli.weights.symmetry import Permutation, apply_permutation


def derived_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and a purpose/epoch/step path (stable across runs)."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, *parts))


def epoch_batches(
    count: int, batch_size: int, seed: int, epoch: int, world_size: int
) -> list[Tensor]:
    """The global batches of one epoch: a uniform shuffle of ``range(count)`` cut into
    ``batch_size`` pieces. A last piece smaller than ``world_size`` is dropped (every rank must
    take part in every step); with one process nothing is dropped."""
    order = torch.randperm(count, generator=generator(seed, "order", epoch))
    batches = list(order.split(batch_size))
    if batches and len(batches[-1]) < world_size:
        batches.pop()
    return batches


def steps_per_epoch(count: int, batch_size: int, world_size: int) -> int:
    full, rest = divmod(count, batch_size)
    return full + (1 if rest and rest >= world_size else 0)


def rank_slice(global_batch: Tensor, rank: int, world_size: int) -> Tensor:
    return global_batch[rank::world_size]


def batch_permutation(
    hidden_widths: tuple[int, ...], size: int, seed: int, epoch: int, step: int
) -> Permutation:
    """Random hidden-neuron permutations for every net of a global batch of ``size``."""
    g = generator(seed, "permute", epoch, step)
    return [torch.argsort(torch.rand(size, width, generator=g), dim=1) for width in hidden_widths]


def augment(space: WeightSpace, perm: Permutation, rank: int, world_size: int) -> WeightSpace:
    """``space`` (this rank's slice) permuted by its rows of the global batch's ``perm``."""
    mine = [p[rank::world_size] for p in perm]
    return apply_permutation(space, mine)


__all__ = [
    "augment",
    "batch_permutation",
    "derived_seed",
    "epoch_batches",
    "generator",
    "rank_slice",
    "steps_per_epoch",
]
