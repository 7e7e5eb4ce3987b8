"""Run a batch of MLPs on inputs, functionally (one batched matmul per layer).

This is how processors are trained through the networks they produce (domain adaptation, INR
editing), how INRs are rendered, and how symmetry ops are checked to preserve the function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

DEFAULT_SINE_W0 = 30.0


def sine_frequencies(spec: MLPSpec) -> tuple[float, float]:
    """``(w0_first, w0_hidden)`` of a sine MLP; SIREN's convention uses w0 = 30 for both."""
    w0 = spec.float_option("w0", DEFAULT_SINE_W0)
    return w0, spec.float_option("w0_hidden", w0)


def activate(x: Tensor, spec: MLPSpec, layer: int) -> Tensor:
    """Activation after linear layer ``layer`` (0-based); never applied after the last layer."""
    name = spec.activation
    if name == "relu":
        return torch.relu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "sine":
        w0_first, w0_hidden = sine_frequencies(spec)
        return torch.sin((w0_first if layer == 0 else w0_hidden) * x)
    if name == "gelu":
        return torch.nn.functional.gelu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "leaky_relu":
        return torch.nn.functional.leaky_relu(x, float(spec.option("negative_slope", "0.01")))
    return x


def mlp_forward(space: WeightSpace, inputs: Tensor) -> Tensor:
    """Outputs ``[B, N, d_L]`` of every net in ``space`` on ``inputs``.

    ``inputs`` is ``[N, d_0]`` (the same points for every net, e.g. an INR's pixel grid) or
    ``[B, N, d_0]`` (each net its own inputs).
    """
    h = inputs.to(space.dtype)
    depth = space.spec.depth
    for i, (w, b) in enumerate(zip(space.weights, space.biases)):
        if h.dim() == 2:  # shared inputs: one matmul against all nets' first layers at once
            h = torch.einsum("nd,bod->bno", h, w) + b[:, None, :]
        else:
            h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
        if i < depth - 1:
            h = activate(h, space.spec, i)
    return h
