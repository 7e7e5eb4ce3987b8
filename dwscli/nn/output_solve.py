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

**The guard.** Each net also gets the solve on its *input's* hidden layers, which can only bring
it closer than no edit: the input's own output layer is one candidate of that fit (up to the
small ridge). Whichever of the two draws the target better on the grid is the output. A net
whose hidden layers the trunk would make worse (one from a recipe unlike any it was trained on)
then still gets the best output layer for the hidden layers it has. The choice is per net and
reads only what the two candidates draw, so it is invariant to permutations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.weights.functional import layer_outputs
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

#: Order of the numbers in :attr:`OutputSolve.grid`.
GRID_FIELDS = ("height", "width", "coord_min", "coord_max", "output_scale", "output_offset")


def check_output_solve(edit: Any, ridge: float) -> dict[str, Any]:
    """``model.output_solve`` checked: ``{op: NAME, **parameters}`` of an image edit."""
    from dwscli.image_edits import describe_edit

    if not isinstance(edit, dict) or not isinstance(edit.get("op"), str):
        raise DwsError(
            f"model.output_solve must name an edit, e.g. {{op: dilate, size: 3}}; got {edit!r}"
        )
    params = {k: v for k, v in edit.items() if k != "op"}
    try:
        described = describe_edit(edit["op"], params)
    except DwsError as error:
        raise DwsError(f"model.output_solve: {error.message}", hint=error.hint) from None
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge > 0:
        raise DwsError(f"model.output_solve_ridge must be a positive number, got {ridge!r}")
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
        self.edit = check_output_solve(edit, ridge)
        self.ridge = float(ridge)
        # the zoo's INR conventions (GRID_FIELDS), set by the trainer and kept in the weights
        self.register_buffer("grid", torch.zeros(len(GRID_FIELDS), dtype=torch.float64))

    def set_conventions(self, conventions: Any) -> None:
        """The pixel grid and output scaling of the nets (an ``InrConventions``)."""
        values = [float(getattr(conventions, name)) for name in GRID_FIELDS]
        with torch.no_grad():
            self.grid.copy_(torch.tensor(values, dtype=torch.float64))

    def conventions(self) -> Any:
        from dwscli.weights.inr import InrConventions

        values = self.grid.tolist()
        if values[0] < 1 or values[1] < 1:
            raise DwsError(
                "this editor's output solve has no pixel grid (it was never trained on a zoo)"
            )
        height, width, low, high, scale, offset = values
        return InrConventions(int(height), int(width), low, high, scale, offset)

    def target(self, space: WeightSpace, coordinates: Tensor) -> Tensor:
        """``[B, P]``: the edit of each input net's clamped rendering, in output units."""
        from dwscli.image_edits import edit_images
        from dwscli.weights.functional import mlp_forward

        c = self.conventions()
        params = {k: v for k, v in self.edit.items() if k != "op"}
        with torch.no_grad():
            images = c.to_image(mlp_forward(space, coordinates)[..., 0]).clamp(0.0, 1.0)
            edited = edit_images(images.reshape(-1, c.height, c.width), self.edit["op"], **params)
        return c.to_target(edited.reshape(space.batch_size, -1))

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

    def solved(self, space: WeightSpace, coordinates: Tensor, target: Tensor):
        """``space`` with its output layer solved for ``target``, and each net's error on the
        grid (clamped image against the edited image, as a user sees it)."""
        c = self.conventions()
        hidden = layer_outputs(space, coordinates)[-2]
        weight, bias = self.fit(hidden, target)
        drawn = torch.baddbmm(bias[:, None, :], hidden.double(), weight.transpose(1, 2))[..., 0]
        error = (c.to_image(drawn).clamp(0.0, 1.0) - c.to_image(target.double())).square()
        weights = [*space.weights[:-1], weight.to(space.dtype)]
        biases = [*space.biases[:-1], bias.to(space.dtype)]
        return WeightSpace(weights, biases, space.spec), error.mean(1)

    def forward(self, inputs: WeightSpace, edited: WeightSpace) -> WeightSpace:
        """``edited`` with its output layer solved or, per net, the input's hidden layers with
        theirs where that draws the edit better (the guard). Training sees the guard too: the
        trunk learns to improve the nets where its change can beat the input's own hidden
        layers, and is not pulled towards the ones where it cannot."""
        coordinates = self.conventions().coordinates(inputs.dtype).to(inputs.device)
        target = self.target(inputs, coordinates)
        output, error = self.solved(edited, coordinates, target)
        kept, kept_error = self.solved(inputs, coordinates, target)
        use_input = (kept_error < error) | error.isnan()  # a NaN error counts as worse

        def choose(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(use_input.reshape(-1, *[1] * (a.dim() - 1)), b, a)

        return WeightSpace(
            [choose(a, b) for a, b in zip(output.weights, kept.weights)],
            [choose(a, b) for a, b in zip(output.biases, kept.biases)],
            output.spec,
        )


__all__ = ["GRID_FIELDS", "OutputSolve", "check_output_solve"]
