"""Functional probes: the stored inputs where a DWSNet runs each input net, and the features it
reads there (what the net computes, which a permutation of its hidden neurons does not change, or
permutes with them).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.layers import activation_module
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


class ProbeOptions(Protocol):
    """The model options the probes read (a :class:`dwscli.nn.models.DWSNetConfig`)."""

    hidden_channels: int
    activation: str
    probes: int
    probe_features: int
    probe_labels: bool | None
    probe_grid: bool
    probe_edit: str | None
    probe_edit_size: int


#: The edits :class:`NeuronProbes` can read at its probes (``model.probe_edit``).
PROBE_EDITS = ("dilate", "erode")


class ProbePoints(nn.Module):
    """``count`` stored inputs where a model runs each input net, learned or fixed, and snapped
    to the pixel centres of the zoo's grid with ``probe_grid``. The trainer starts them from
    real training inputs (:meth:`init_from`) and gives them the grid (:meth:`set_grid`)."""

    def __init__(self, spec: MLPSpec, count: int, grid: bool, learned: bool) -> None:
        super().__init__()
        self.inputs = nn.Parameter(torch.randn(count, spec.input_dim), learned)
        self.register_buffer("labels", torch.full((count,), -1, dtype=torch.long))
        self.grid = grid
        if self.grid:
            # per input coordinate: the grid's first and last pixel centre and their number,
            # set from the zoo by set_grid (kept in the processor's weights)
            for name in ("grid_low", "grid_high", "grid_points"):
                self.register_buffer(name, torch.zeros(spec.input_dim))

    labelled = False

    @torch.no_grad()
    def init_from(self, inputs: Tensor, labels: Tensor | None = None) -> None:
        """Start the probes from real (preprocessed) inputs ``[n, input_dim]``, n >= probes."""
        count = self.inputs.shape[0]
        if inputs.shape[0] < count or inputs.shape[1] != self.inputs.shape[1]:
            raise DwsError(
                f"probe initialisation needs at least {count} inputs of dimension "
                f"{self.inputs.shape[1]}, got {tuple(inputs.shape)}"
            )
        if self.labelled and labels is None:
            raise DwsError("labelled probes need the labels of their inputs")
        self.inputs.copy_(inputs[:count].to(self.inputs))
        if labels is not None:
            self.labels.copy_(labels[:count].to(self.labels))

    @torch.no_grad()
    def set_grid(self, low: Tensor, high: Tensor, points: Tensor) -> None:
        """The pixel grid ``probe_grid`` snaps to: per input coordinate, the first and last
        pixel centre and the number of pixels."""
        self.grid_low.copy_(low)
        self.grid_high.copy_(high)
        self.grid_points.copy_(points)

    def coordinates(self) -> Tensor:
        """Where the nets are read: the learned inputs, snapped to the nearest pixel centre
        with ``probe_grid`` (a straight-through gradient keeps them learning)."""
        if not self.grid or bool((self.grid_points < 2).any()):
            return self.inputs
        span = self.grid_high - self.grid_low
        steps = self.grid_points - 1
        index = ((self.inputs - self.grid_low) / span * steps).round()
        index = torch.minimum(index.clamp_min(0), steps)
        snapped = self.grid_low + index / steps * span
        return self.inputs + (snapped - self.inputs).detach()


class NeuronProbes(ProbePoints):
    """What each neuron of an input net computes on ``probes`` stored inputs, as features of
    that neuron, for equivariant models (editors, adaptation).

    An editor that sees only weights has to work out from them what image an INR draws and
    where each neuron acts in it. Here each net is run on the probes (for an INR: pixels); the
    outputs of layer l's neurons there, ``[probes, d_l]``, scaled by their RMS, are mapped to C
    channels by a learned ``[probes, C]`` matrix, giving each neuron a C-vector that says where
    it is active. A hidden-neuron permutation permutes these vectors with the neurons, so the
    model stays exactly equivariant. The trunk adds them, after its first block, to the
    features of the neuron's bias and of the weights into it and out of it.
    """

    def __init__(self, spec: MLPSpec, config: ProbeOptions) -> None:
        super().__init__(spec, config.probes, config.probe_grid, learned=True)
        channels, count = config.hidden_channels, config.probes
        self.maps = nn.ParameterList(
            nn.Parameter(torch.randn(count, channels) / count**0.5) for _ in range(spec.depth)
        )
        self.edit, self.edit_size = config.probe_edit, config.probe_edit_size
        self.edit_maps = (
            nn.ParameterList(
                nn.Parameter(torch.randn(count, channels) / count**0.5) for _ in range(spec.depth)
            )
            if self.edit is not None
            else None
        )

    def outputs(self, space: WeightSpace) -> list[Tensor]:
        """Each layer's outputs at the probes, ``[B, N, d_l]`` (after the activation, but for
        the last layer)."""
        from dwscli.weights.functional import layer_outputs

        return layer_outputs(space, self.coordinates().to(space.dtype))

    def edit_residual(self, space: WeightSpace, output: Tensor) -> Tensor:
        """``[B, N]``: how far the ``probe_edit`` would move each net's output at each probe:
        the max (dilate) or min (erode) over the ``probe_edit_size`` square of pixel centres
        around it, inside the grid, minus the output there. A pixel's value rises with the
        net's output (a positive scale), so this is the edit of the image, in output units
        (before any clamping of the image to [0, 1])."""
        from dwscli.weights.functional import mlp_forward

        points = self.coordinates().to(space.dtype)  # [N, 2], on pixel centres
        step = (self.grid_high - self.grid_low) / (self.grid_points - 1).clamp_min(1)
        reach = self.edit_size // 2
        shifts = torch.arange(-reach, reach + 1, dtype=space.dtype, device=points.device)
        offsets = torch.cartesian_prod(*[shifts] * points.shape[1]) * step.to(space.dtype)
        around = points[:, None, :] + offsets[None]  # [N, K, 2]
        low, high = self.grid_low.to(space.dtype), self.grid_high.to(space.dtype)
        around = torch.maximum(torch.minimum(around, high), low)  # outside counts as the edge
        values = mlp_forward(space, around.reshape(-1, points.shape[1])).mean(-1)
        values = values.reshape(space.batch_size, *around.shape[:2])  # [B, N, K]
        edited = values.amax(2) if self.edit == "dilate" else values.amin(2)
        return edited - output.mean(-1)

    def forward(self, space: WeightSpace) -> list[Tensor]:
        layers = self.outputs(space)
        residual = None
        if self.edit_maps is not None:
            output_scale = layers[-1].square().mean(dim=(1, 2), keepdim=True).add(1e-12).sqrt()
            residual = self.edit_residual(space, layers[-1])[..., None] / output_scale
        features = []
        for layer, h in enumerate(layers):
            scale = h.square().mean(dim=(1, 2), keepdim=True).add(1e-12).sqrt()
            neurons = h / scale  # [B, N, d_l]
            out = torch.einsum("bnd,nc->bdc", neurons.to(self.maps[layer].dtype), self.maps[layer])
            if self.edit_maps is not None and residual is not None:
                lined_up = (neurons * residual).to(self.edit_maps[layer].dtype)
                out = out + torch.einsum("bnd,nc->bdc", lined_up, self.edit_maps[layer])
            features.append(out)
        return features


class FunctionalProbes(ProbePoints):
    """Features of what each input net *computes*: its outputs on ``probes`` stored inputs.

    A net's function does not change when its hidden neurons are permuted, so these features
    are exactly invariant, whatever the probes are. They complement the DWS trunk where the
    weights say little on their own (accuracy prediction: two nets with alike weight statistics
    can generalise very differently; their answers on a few hundred inputs tell them apart).

    The probes are part of the processor (no data is needed to run it). The trainer starts them
    from real training inputs (:meth:`init_from`). With ``probe_labels`` the probes also carry
    their labels, and the features include, per probe, the probability the net gives the right
    class and whether its top class is right, and their means (an accuracy estimate on the
    probes, handed straight to the head); labelled probes stay fixed, so a label keeps
    describing its input. Without labels the inputs are learned with the rest of the model.
    """

    def __init__(self, spec: MLPSpec, config: ProbeOptions) -> None:
        count, outputs = config.probes, spec.output_dim
        labelled = outputs > 1 if config.probe_labels is None else config.probe_labels
        super().__init__(spec, count, config.probe_grid, learned=not labelled)
        self.labelled = labelled
        self.softmax = outputs > 1  # class logits: compare them as probabilities (bounded)
        if self.labelled and not self.softmax:
            raise DwsError("labelled probes need classifier nets (more than one output)")
        encoded = count * outputs + (2 * count if self.labelled else 0)
        self.encode = nn.Sequential(
            nn.Linear(encoded, config.probe_features), activation_module(config.activation)
        )
        self.out_features = config.probe_features + (2 if self.labelled else 0)

    def forward(self, space: WeightSpace) -> Tensor:
        from dwscli.weights.functional import mlp_forward

        outputs = mlp_forward(space, self.coordinates().to(space.dtype))  # [B, probes, out]
        if self.softmax:
            outputs = outputs.softmax(dim=-1)
        features = [outputs.flatten(1)]
        summary: list[Tensor] = []
        if self.labelled:
            labels = self.labels.clamp_min(0).expand(outputs.shape[0], -1)
            right = outputs.gather(2, labels[..., None])[..., 0]  # [B, probes]
            top_right = (outputs.argmax(dim=2) == labels).to(outputs.dtype)
            features += [right, top_right]
            summary = [right.mean(1, keepdim=True), top_right.mean(1, keepdim=True)]
        encoded = self.encode(torch.cat(features, dim=1).to(self.inputs.dtype))
        return torch.cat([encoded, *(s.to(encoded.dtype) for s in summary)], dim=1)


__all__ = ["PROBE_EDITS", "FunctionalProbes", "NeuronProbes", "ProbePoints"]
