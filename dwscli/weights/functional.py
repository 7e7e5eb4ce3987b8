"""Run a batch of MLPs on inputs, functionally (one batched matmul per layer).

This is how processors are trained through the networks they produce (domain adaptation, INR
editing), how INRs are rendered, and how symmetry ops are checked to preserve the function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dwscli.weights import activations
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def sine_frequencies(spec: MLPSpec) -> tuple[float, float]:
    """``(w0_first, w0_hidden)`` of a sine MLP; SIREN's convention uses w0 = 30 for both."""
    return activations.sine_frequencies(dict(spec.options))


def activate(x: Tensor, spec: MLPSpec, layer: int) -> Tensor:
    """Activation after linear layer ``layer`` (0-based); never applied after the last layer."""
    return activations.apply_activation(spec.activation, x, dict(spec.options), layer)


def mlp_forward(space: WeightSpace, inputs: Tensor) -> Tensor:
    """Outputs ``[B, N, d_L]`` of every net in ``space`` on ``inputs``.

    ``inputs`` is ``[N, d_0]`` (the same points for every net, e.g. an INR's pixel grid) or
    ``[B, N, d_0]`` (each net its own inputs).
    """
    return layer_outputs(space, inputs)[-1]


def layer_outputs(space: WeightSpace, inputs: Tensor) -> list[Tensor]:
    """Every layer's outputs ``[B, N, d_l]`` on ``inputs`` (as :func:`mlp_forward`), after the
    activation but for the last layer: what each neuron computes there."""
    h = inputs.to(space.dtype)
    depth = space.spec.depth
    layers = []
    for i, (w, b) in enumerate(zip(space.weights, space.biases)):
        if h.dim() == 2:  # shared inputs: one matmul against all nets' first layers at once
            h = torch.einsum("nd,bod->bno", h, w) + b[:, None, :]
        else:
            h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
        if i < depth - 1:
            h = activate(h, space.spec, i)
        layers.append(h)
    return layers
