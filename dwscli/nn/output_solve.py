"""A closed-form output layer for INR editors (``model.output_solve``).

An image INR's output layer is linear in what its last hidden layer computes. Once the editor
has changed the hidden layers, the output layer that draws the edited image best on the pixel
grid is a ridge least-squares fit, which needs no learning: render the input INR on its grid,
apply the edit to those pixels (the target every editor is trained against), and solve the
``(d + 1) x (d + 1)`` normal equations of each net, where ``d`` is the last hidden width. The
DWSNet then only has to make the hidden layers *able* to draw the edit; the solve finds how.

It stays one forward pass (a render of the input, the hidden layers of the output on the same
grid, and one small linear solve per net), and it is exactly equivariant: permuting the last
hidden layer's neurons permutes the columns of the least-squares system, so the solution's
weights permute with them and its bias is unchanged.

**The guard.** Each net also gets the solve on its *input's* hidden layers: the input's own
output layer is one candidate of that fit (up to the small ridge), so it is almost always
closer than no edit. The fit minimises the error before clamping to [0, 1], and a user sees
the clamped image, so for a net that draws outside [0, 1] the unchanged input can still be
closer; it is the third candidate. Whichever of the three draws the target best on the grid
(clamped, with the weights in the output's dtype) is the output, so no net comes out farther
from the edit than unedited, as the model computes it. A net whose hidden layers the trunk
would make worse (one from a recipe unlike any it was trained on) still gets the best output
layer for the hidden layers it has. The choice is per net and reads only what the candidates
draw, so it is invariant to permutations.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.weights.functional import layer_outputs
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

#: Order of the numbers in :attr:`OutputSolve.grid`.
GRID_FIELDS = ("height", "width", "coord_min", "coord_max", "output_scale", "output_offset")


def check_output_solve(edit: Any, ridge: float) -> dict[str, Any] | None:
    """``model.output_solve`` checked: ``{op: NAME, **parameters}`` of an image edit, or
    None; the ridge is checked either way."""
    from dwscli.image_edits import describe_edit

    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge > 0:
        raise DwsError(f"model.output_solve_ridge must be a positive number, got {ridge!r}")
    if edit is None:
        return None
    if not isinstance(edit, dict) or not isinstance(edit.get("op"), str):
        raise DwsError(
            f"model.output_solve must name an edit, e.g. {{op: dilate, size: 3}}; got {edit!r}"
        )
    params = {k: v for k, v in edit.items() if k != "op"}
    try:
        described = describe_edit(edit["op"], params)
    except DwsError as error:
        raise DwsError(f"model.output_solve: {error.message}", hint=error.hint) from None
    return described


class OutputSolve(nn.Module):
    """Replaces an edited INR's output layer by the ridge least-squares fit, on the pixel grid,
    of the edit of the input INR's rendering (see the module docstring)."""

    def __init__(self, spec: MLPSpec, edit: dict[str, Any], ridge: float) -> None:
        super().__init__()
        if spec.input_dim != 2 or spec.output_dim != 1 or spec.depth < 2:
            raise DwsError(
                f"model.output_solve edits image INRs (2 coordinates in, 1 value out, at least "
                f"one hidden layer); these nets are {spec}"
            )
        checked = check_output_solve(edit, ridge)
        if checked is None:
            raise DwsError("model.output_solve must name an edit, got None")
        self.edit = checked
        self.ridge = float(ridge)
        # the zoo's INR conventions (GRID_FIELDS), set by the trainer and kept in the weights
        self.register_buffer("grid", torch.zeros(len(GRID_FIELDS), dtype=torch.float64))

    def set_conventions(self, conventions: Any) -> None:
        """The pixel grid and output scaling of the nets (an ``InrConventions``)."""
        values = [float(getattr(conventions, name)) for name in GRID_FIELDS]
        with torch.no_grad():
            self.grid.copy_(torch.tensor(values, dtype=torch.float64))

    def conventions(self) -> Any:
        """The stored grid as ``InrConventions``; a one-line error when it is unset (never
        trained on a zoo) or not a grid at all (a damaged weights file)."""
        from dwscli.weights.inr import InrConventions

        values = self.grid.tolist()
        height, width, low, high, scale, offset = values
        if (
            not all(math.isfinite(v) for v in values)
            or height != int(height)
            or width != int(width)
        ):
            raise DwsError(f"this editor's output solve has no valid pixel grid: {values}")
        if height < 1 or width < 1:
            raise DwsError(
                "this editor's output solve has no pixel grid (it was never trained on a zoo)"
            )
        return InrConventions(int(height), int(width), low, high, scale, offset)

    def target(self, space: WeightSpace, c: Any) -> tuple[Tensor, Tensor]:
        """``[B, P]`` each: the edit of each input net's rendering on the grid of conventions
        ``c``, in output units, and each net's error unedited (its image against that edit,
        per pixel)."""
        from dwscli.image_edits import edit_images
        from dwscli.weights.inr import render

        params = {k: v for k, v in self.edit.items() if k != "op"}
        images = render(space, c)
        with torch.no_grad():
            edited = edit_images(images, self.edit["op"], **params).reshape(space.batch_size, -1)
        unedited = (images.reshape(space.batch_size, -1).double() - edited.double()).square()
        return c.to_target(edited), unedited

    def fit(self, hidden: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Ridge fit of ``target [B, P]`` on ``hidden [B, P, d]`` plus a constant, in float64:
        (weights ``[B, 1, d]``, bias ``[B, 1]``). The penalty is ``ridge`` times the mean
        diagonal of each net's Gram matrix, so it means the same at any scale of activations."""
        features = torch.cat([hidden.double(), hidden.new_ones(*hidden.shape[:2], 1).double()], 2)
        gram = features.transpose(1, 2) @ features
        scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        gram = gram + (self.ridge * scale)[:, None, None] * eye
        rhs = features.transpose(1, 2) @ target.double()[..., None]
        solution = torch.linalg.solve(gram, rhs)[..., 0]
        return solution[:, None, :-1], solution[:, -1:]

    def solved(self, space: WeightSpace, c: Any, target: Tensor):
        """``space`` with its output layer solved for ``target`` on the grid of conventions
        ``c``, and each net's error there (clamped image against the edited image, as a user
        sees it)."""
        coordinates = c.coordinates(space.dtype).to(space.device)
        hidden = layer_outputs(space, coordinates)[-2]
        weight, bias = self.fit(hidden, target)
        weight, bias = weight.to(space.dtype), bias.to(space.dtype)  # what the output holds
        drawn = torch.baddbmm(
            bias.double()[:, None, :], hidden.double(), weight.double().transpose(1, 2)
        )[..., 0]
        error = (c.to_image(drawn).clamp(0.0, 1.0) - c.to_image(target.double())).square()
        weights = [*space.weights[:-1], weight]
        biases = [*space.biases[:-1], bias]
        return WeightSpace(weights, biases, space.spec), error.mean(1)

    def forward(self, inputs: WeightSpace, edited: WeightSpace) -> WeightSpace:
        """Per net, the best of three (the guard): ``edited`` with its output layer solved,
        the input's hidden layers with theirs solved, or the input unchanged. Training sees
        the guard too: the trunk learns to improve the nets where its change can beat the
        input's own hidden layers, and is not pulled towards the ones where it cannot."""
        c = self.conventions()
        target, unedited_error = self.target(inputs, c)
        candidates = [
            self.solved(edited, c, target),
            self.solved(inputs, c, target),
            (inputs, unedited_error.mean(1)),
        ]
        errors = torch.stack([error for _, error in candidates], 1)
        # a NaN error counts as worse than any other; the input unchanged is always finite
        best = errors.nan_to_num(math.inf).argmin(1)

        def choose(tensors: list[Tensor]) -> Tensor:
            out = tensors[0]
            for k in range(1, len(tensors)):
                out = torch.where((best == k).reshape(-1, *[1] * (out.dim() - 1)), tensors[k], out)
            return out

        spaces = [space for space, _ in candidates]
        depth = len(inputs.weights)
        return WeightSpace(
            [choose([s.weights[i] for s in spaces]) for i in range(depth)],
            [choose([s.biases[i] for s in spaces]) for i in range(depth)],
            inputs.spec,
        )

    def bytes_per_net(self, spec: MLPSpec) -> int:
        """About the memory the solve adds to a forward, per net: the hidden layers' outputs
        on the grid for two candidates, their float64 design matrices, and the renderings."""
        try:
            c = self.conventions()
        except DwsError:  # no grid yet: the forward refuses to run
            return 0
        pixels = c.height * c.width
        hidden = sum(spec.widths[1:-1])
        return 3 * pixels * (2 * (hidden + 2) * 4 + (spec.widths[-2] + 2) * 8)


__all__ = ["GRID_FIELDS", "OutputSolve", "check_output_solve"]
