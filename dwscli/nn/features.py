"""WSFeatures: features on a weight space, the data type that DWS layers consume and produce.

Each entry of every weight and bias carries a feature vector of C channels (channels last):
``weights[i]`` is ``[B, d_{i+1}, d_i, C]`` and ``biases[i]`` is ``[B, d_{i+1}, C]``. A raw
:class:`~dwscli.weights.space.WeightSpace` is the special case C = 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import Permutation, permute_tensors


@dataclass
class WSFeatures:
    """Channels-last features on the weights and biases of a batch of MLPs."""

    weights: list[Tensor]
    biases: list[Tensor]

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def channels(self) -> int:
        return int(self.weights[0].shape[-1])

    @property
    def batch_size(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def widths(self) -> tuple[int, ...]:
        return (int(self.weights[0].shape[2]), *(int(w.shape[1]) for w in self.weights))

    def __repr__(self) -> str:
        widths = "-".join(str(w) for w in self.widths)
        return f"WSFeatures({widths} | batch={self.batch_size}, channels={self.channels})"

    def tensors(self) -> list[Tensor]:
        """All tensors in network order W_1, b_1, …, W_L, b_L (as :meth:`WeightSpace.tensors`)."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    @classmethod
    def from_tensors(cls, tensors: Sequence[Tensor]) -> WSFeatures:
        """Inverse of :meth:`tensors`: ``[W_1, b_1, …, W_L, b_L]`` back into features."""
        return cls(list(tensors[0::2]), list(tensors[1::2]))

    def map(self, fn: Callable[[Tensor], Tensor]) -> WSFeatures:
        return WSFeatures([fn(w) for w in self.weights], [fn(b) for b in self.biases])

    def zip_map(self, other: WSFeatures, fn: Callable[[Tensor, Tensor], Tensor]) -> WSFeatures:
        return WSFeatures(
            [fn(a, b) for a, b in zip(self.weights, other.weights)],
            [fn(a, b) for a, b in zip(self.biases, other.biases)],
        )

    def __add__(self, other: WSFeatures) -> WSFeatures:
        return self.zip_map(other, lambda a, b: a + b)

    def add_into(self, other: WSFeatures) -> WSFeatures:
        """``other + self``, written into ``self``'s tensors when no gradient is being recorded
        (inference: saves a full-size allocation and pass per tensor; IEEE addition commutes, so
        the values are the same as ``other + self``)."""
        if torch.is_grad_enabled():
            return other + self
        for mine, theirs in zip(self.tensors(), other.tensors()):
            mine.add_(theirs)
        return self

    def permute(self, perm: Permutation) -> WSFeatures:
        """Apply a hidden-neuron permutation (the group action on features)."""
        weights, biases = permute_tensors(self.weights, self.biases, perm)
        return WSFeatures(weights, biases)

    @classmethod
    def from_space(cls, space: WeightSpace) -> WSFeatures:
        return cls([w[..., None] for w in space.weights], [b[..., None] for b in space.biases])

    def to_space(self, spec: MLPSpec) -> WeightSpace:
        if self.channels != 1:
            raise DwsError(f"features with {self.channels} channels are not a weight space")
        return WeightSpace(
            [w[..., 0] for w in self.weights], [b[..., 0] for b in self.biases], spec
        )
