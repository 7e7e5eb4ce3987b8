"""MLP baselines on the flattened weight vector (DWSNets paper, Tables 1–3).

* ``mlp``: an MLP on the normalised flat vector W_1, b_1, …, W_L, b_L. It ignores the
  neuron-permutation symmetry entirely, which is why it generalises badly.
* ``mlp-aug``: the same model; the trainer applies random hidden-neuron permutations to every
  training batch whatever ``train.permutation_augmentation`` says (the arch asks for it).
* ``mlp-align``: the same model after weight matching every input net to one reference net
  (Ainsworth et al.'s coordinate-ascent Hungarian matching,
  :func:`dwscli.weights.symmetry.weight_matching`). The reference is the first net of the
  training sample the normaliser is fitted on; it is kept in the model's buffers
  (``reference.*``), so a saved processor aligns its inputs by itself.

For equivariant (weight-to-weight) tasks the MLP outputs a change of the flat vector that is
added to the input (residual); ``mlp-align`` predicts it in the aligned frame and permutes it
back, so its output follows the input's neuron order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dwscli.nn.baselines.common import (
    BaselineModel,
    interleaved_flat,
    mlp,
    scale_parameters_,
    split_flat,
)
from dwscli.nn.heads import invariant_head
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import (
    apply_permutation,
    invert_permutation,
    weight_matching,
)


@dataclass
class MLPOptions:
    """Options of ``mlp``, ``mlp-aug`` and ``mlp-align`` (the ``model:`` section)."""

    hidden_features: int = 64
    num_layers: int = 3  # hidden layers of the MLP
    activation: str = "relu"
    dropout: float = 0.0
    # invariant tasks: normalisation of the flattened weights before the MLP (dwscli.nn.heads)
    head_norm: str = "batch"
    output_init_scale: float = 1e-2  # equivariant tasks: start near the identity


class FlatMLP(BaselineModel):
    """MLP on the flattened normalised weights; a residual flat change for equivariant tasks."""

    arch_name = "mlp"

    def __init__(self, spec: MLPSpec, kind: str, options: MLPOptions, out_features: int) -> None:
        super().__init__(spec, kind, out_features, options)
        outputs = out_features if self.invariant else spec.num_parameters
        sizes = [spec.num_parameters, *[options.hidden_features] * options.num_layers, outputs]
        if self.invariant:
            self.net = invariant_head(
                sizes, options.activation, options.dropout, norm=options.head_norm
            )
        else:
            self.net = mlp(sizes, options.activation, options.dropout)
        if not self.invariant:
            scale_parameters_(self.net[-1], options.output_init_scale)

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        weights, biases = self.normalized(space)
        out = self.net(interleaved_flat(weights, biases))
        if self.invariant:
            return out
        return self.residual(space, *split_flat(out, space.spec))


class AugmentedMLP(FlatMLP):
    """``mlp-aug``: the same model; the trainer permutes every training batch (the registry's
    ``force_permutation_augmentation``)."""

    arch_name = "mlp-aug"


class AlignedMLP(FlatMLP):
    """``mlp-align``: weight-match each input net to the stored reference net, then the MLP."""

    arch_name = "mlp-align"

    def __init__(self, spec: MLPSpec, kind: str, options: MLPOptions, out_features: int) -> None:
        super().__init__(spec, kind, options, out_features)
        for i, ((o, n), (b,)) in enumerate(zip(spec.weight_shapes, spec.bias_shapes)):
            self.register_buffer(f"reference_w{i + 1}", torch.zeros(1, o, n))
            self.register_buffer(f"reference_b{i + 1}", torch.zeros(1, b))

    @property
    def reference(self) -> WeightSpace:
        depth = self.spec.depth
        return WeightSpace(
            [getattr(self, f"reference_w{i + 1}") for i in range(depth)],
            [getattr(self, f"reference_b{i + 1}") for i in range(depth)],
            self.spec,
        )

    @torch.no_grad()
    def fit(self, space: WeightSpace) -> None:
        super().fit(space)
        first = space[0]
        for i in range(self.spec.depth):
            getattr(self, f"reference_w{i + 1}").copy_(first.weights[i])
            getattr(self, f"reference_b{i + 1}").copy_(first.biases[i])

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        self.check_input(space)
        with torch.no_grad():
            perm = weight_matching(space.detach(), self.reference)
        out = super().forward(apply_permutation(space, perm))
        if isinstance(out, WeightSpace):
            return apply_permutation(out, invert_permutation(perm))
        return out


def build_mlp(spec: MLPSpec, kind: str, options: MLPOptions, out_features: int) -> nn.Module:
    return FlatMLP(spec, kind, options, out_features)


def build_mlp_aug(spec: MLPSpec, kind: str, options: MLPOptions, out_features: int) -> nn.Module:
    return AugmentedMLP(spec, kind, options, out_features)


def build_mlp_align(spec: MLPSpec, kind: str, options: MLPOptions, out_features: int) -> nn.Module:
    return AlignedMLP(spec, kind, options, out_features)


__all__ = [
    "AlignedMLP",
    "AugmentedMLP",
    "FlatMLP",
    "MLPOptions",
    "build_mlp",
    "build_mlp_align",
    "build_mlp_aug",
]
