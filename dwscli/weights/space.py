"""WeightSpace: a batch of MLPs that share one architecture, as stacked tensors.

``weights[i]`` has shape ``[B, d_{i+1}, d_i]`` (torch layout, batch first) and ``biases[i]`` has
shape ``[B, d_{i+1}]``. The batch is what every operation of dws works on: symmetry ops,
processors, functional forward passes and zoo training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.weights.spec import MLPSpec


@dataclass
class WeightSpace:
    """Batched weights and biases of MLPs with a common :class:`MLPSpec`."""

    weights: list[Tensor]
    biases: list[Tensor]
    spec: MLPSpec

    def __post_init__(self) -> None:
        self.weights = list(self.weights)
        self.biases = list(self.biases)
        if len(self.weights) != self.spec.depth or len(self.biases) != self.spec.depth:
            raise DwsError(
                f"weight space has {len(self.weights)} weights and {len(self.biases)} biases "
                f"but spec {self.spec} has {self.spec.depth} layers"
            )
        batch = self.weights[0].shape[0]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            expected_w = (batch, *self.spec.weight_shapes[i])
            expected_b = (batch, *self.spec.bias_shapes[i])
            if tuple(w.shape) != expected_w or tuple(b.shape) != expected_b:
                raise DwsError(
                    f"layer {i + 1}: weight {tuple(w.shape)} / bias {tuple(b.shape)} do not match "
                    f"spec {self.spec} (expected {expected_w} / {expected_b})"
                )

    # ----------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.weights[0].shape[0])

    def __len__(self) -> int:
        return self.batch_size

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def __repr__(self) -> str:
        return (
            f"WeightSpace({self.spec} | batch={self.batch_size}, "
            f"{self.spec.num_parameters} params/net, "
            f"dtype={str(self.dtype).removeprefix('torch.')})"
        )

    # ----------------------------------------------------------------------------------------
    def tensors(self) -> list[Tensor]:
        """All tensors in order W_1, b_1, …, W_L, b_L."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def map(self, fn) -> WeightSpace:
        return WeightSpace([fn(w) for w in self.weights], [fn(b) for b in self.biases], self.spec)

    def to(self, *args, **kwargs) -> WeightSpace:
        return self.map(lambda t: t.to(*args, **kwargs))

    def clone(self) -> WeightSpace:
        return self.map(torch.clone)

    def detach(self) -> WeightSpace:
        return self.map(torch.Tensor.detach)

    def __getitem__(self, index: int | slice | Tensor) -> WeightSpace:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return self.map(lambda t: t[index])

    def flatten(self) -> Tensor:
        """``[B, P]``: every net's parameters as one vector (W_1, b_1, …, W_L, b_L order)."""
        return torch.cat([t.reshape(self.batch_size, -1) for t in self.tensors()], dim=1)

    @classmethod
    def unflatten(cls, flat: Tensor, spec: MLPSpec) -> WeightSpace:
        """Inverse of :meth:`flatten`."""
        weights, biases, offset = [], [], 0
        for w_shape, b_shape in zip(spec.weight_shapes, spec.bias_shapes):
            n_w, n_b = w_shape[0] * w_shape[1], b_shape[0]
            weights.append(flat[:, offset : offset + n_w].reshape(-1, *w_shape))
            offset += n_w
            biases.append(flat[:, offset : offset + n_b].reshape(-1, *b_shape))
            offset += n_b
        if offset != flat.shape[1]:
            raise DwsError(f"flat vector has {flat.shape[1]} entries, spec {spec} needs {offset}")
        return cls(weights, biases, spec)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def stack(cls, spaces: Sequence[WeightSpace]) -> WeightSpace:
        """Concatenate batches of MLPs with identical specs into one batch."""
        if not spaces:
            raise DwsError("cannot stack an empty list of weight spaces")
        spec = spaces[0].spec
        for other in spaces[1:]:
            if other.spec.widths != spec.widths:
                raise DwsError(f"cannot stack MLPs of spec {other.spec} with {spec}")
        return cls(
            [torch.cat([s.weights[i] for s in spaces]) for i in range(spec.depth)],
            [torch.cat([s.biases[i] for s in spaces]) for i in range(spec.depth)],
            spec,
        )

    def unbind(self) -> list[WeightSpace]:
        """Split the batch into single-network weight spaces (batch size 1 each)."""
        return [self[i : i + 1] for i in range(self.batch_size)]

    @classmethod
    def random(
        cls,
        spec: MLPSpec,
        batch_size: int = 1,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        scale: float | None = None,
    ) -> WeightSpace:
        """Random weights, U(-s, s) with s = 1/sqrt(fan_in) unless given (tests and demos)."""
        weights, biases = [], []
        for out_dim, in_dim in spec.weight_shapes:
            bound = scale if scale is not None else in_dim**-0.5
            w = torch.rand(batch_size, out_dim, in_dim, generator=generator, dtype=dtype) * 2 - 1
            b = torch.rand(batch_size, out_dim, generator=generator, dtype=dtype) * 2 - 1
            weights.append(w * bound)
            biases.append(b * bound)
        return cls(weights, biases, spec)
