"""``task: inr-edit``: INR weights -> INR weights whose rendering is the edited image.

An equivariant DWSNet (residual: output = input + predicted change) learns an image edit
(:func:`dwscli.image_edits.edit_images`: ``dilate``, ``erode``, ``contrast``, ``sharpen``,
``invert``) in weight space, so that editing an INR needs one forward pass instead of render ->
edit pixels -> fit a new SIREN.

**The target** of a net is the edit of *its own rendering*: the input INR is rendered on the
zoo's pixel grid (no gradient, clamped to [0, 1] as a viewer would see it) and the edit is
applied to those pixels. This needs no image data set at training time, it is exactly what a
user of ``dws edit`` gets compared against (the INR they have, edited), and it stays right under
any augmentation: a rotated or noisy input INR (``train.augment``) gets the edit of *its*
rendering as target, since the trainer hands the task the nets as the model saw them.

**The loss** per net is the mean squared error, in image units ([0, 1] intensities), between the
rendering of the OUTPUT INR, computed differentiably with
:func:`~dwscli.weights.functional.mlp_forward` on the grid (not clamped, so that pixels beyond
[0, 1] still get a gradient), and the target.

**Evaluation** per net: ``mse``, the output's clamped rendering vs the target (what a user sees);
``mse_no_edit``, the input's own rendering vs the target (the "do nothing" reference); and
``loss``, as in training. The split's metrics are their means plus ``improved_fraction``, the
share of nets whose output is closer to the target than the input is. The best checkpoint has
the lowest validation ``mse``.

**Baseline** (:meth:`InrEditTask.baselines`, run once at the end): the slow route the processor
exists to avoid, on the first ``refit_nets`` test nets: render, edit the pixels, fit a new SIREN
from scratch with :func:`dwscli.data.inr_fit.fit_sines` at the zoo's settings (steps, learning
rate, PSNR target; the uncompiled kernel, since compiling costs more than it saves on a few dozen
nets), then the same ``mse`` against the same target, and the wall-clock ``seconds_per_net`` of
that batched fit on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dwscli.data.zoo import Zoo, ZooBatch, conventions_metadata
from dwscli.errors import DwsError
from dwscli.image_edits import EDIT_PARAMS, EditOp, describe_edit, edit_images, edit_params
from dwscli.train.tasks.base import BaselineMetrics, Task
from dwscli.weights.functional import mlp_forward
from dwscli.weights.inr import InrConventions, render
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

if TYPE_CHECKING:
    from dwscli.train.netstore import SplitNets


@dataclass(frozen=True)
class InrEditOptions:
    """The ``task:`` section of ``task: inr-edit`` (op parameters: see dwscli.image_edits)."""

    op: EditOp = "dilate"
    size: int = 3  # dilate, erode: the square's side (odd)
    factor: float = 2.0  # contrast
    amount: float = 1.0  # sharpen
    refit_nets: int = 64  # test nets of the render-edit-refit baseline (0: skip it)
    refit_steps: int | None = None  # that baseline's step budget; default the zoo's


def zoo_conventions(zoo: Zoo) -> InrConventions:
    """The zoo's INR conventions (grid, coordinate range, output scaling)."""
    return InrConventions.from_metadata(
        conventions_metadata(zoo.conventions), source=str(zoo.path / "zoo.json")
    )


def check_zoo(zoo: Zoo, options: InrEditOptions) -> None:
    spec = zoo.spec
    if zoo.kind != "inr" or spec.input_dim != 2 or spec.output_dim != 1:
        raise DwsError(
            f"{zoo.path}: task inr-edit needs a zoo of 2-D image INRs (dws zoo inrs), "
            f"not a {zoo.kind} zoo of {spec}"
        )
    if options.refit_nets < 0:
        raise DwsError(f"task.refit_nets: must be at least 0, got {options.refit_nets}")
    if options.refit_steps is not None and options.refit_steps < 1:
        raise DwsError(f"task.refit_steps: must be at least 1, got {options.refit_steps}")


def prepare_output_solve(model: Any, task: Task, source: str) -> None:
    """Give an editor's closed-form output layer (``model.output_solve``) the zoo's pixel grid,
    after checking that it solves for the task's own edit."""
    solve = getattr(model, "output_solve", None)
    if solve is None:
        return
    if not isinstance(task, InrEditTask):
        raise DwsError(
            f"{source}: model.output_solve solves an INR edit's output layer; it needs "
            f"task inr-edit, not {task.name}",
            hint="drop model.output_solve",
        )
    wanted = describe_edit(task.options.op, task.params)
    if dict(solve.edit) != wanted:
        raise DwsError(
            f"{source}: model.output_solve is {solve.edit}, but the task's edit is {wanted}",
            hint="make model.output_solve the task's edit",
        )
    solve.set_conventions(task.conventions)


class InrEditTask(Task):
    """Equivariant weights -> weights: edit the image an INR draws."""

    name = "inr-edit"
    kind = "equivariant"
    Options = InrEditOptions
    best_metric = "mse"
    higher_is_better = False
    options: InrEditOptions

    def __init__(self, options: InrEditOptions, zoo: Zoo) -> None:
        super().__init__(options, zoo)
        check_zoo(zoo, options)
        self.conventions = zoo_conventions(zoo)
        every = {"size": options.size, "factor": options.factor, "amount": options.amount}
        # the op's own parameters, checked (an even size fails here, before any work)
        self.params = edit_params(options.op, {k: every[k] for k in EDIT_PARAMS[options.op]})
        self._coords: dict[tuple[str, torch.dtype], Tensor] = {}

    @property
    def out_features(self) -> int:
        return 1  # unused by an equivariant model

    def target_keys(self) -> list[tuple[str, str]]:
        return []  # the targets are rendered from the nets themselves

    # rendering and targets ----------------------------------------------------------------------
    def coordinates(self, space: WeightSpace) -> Tensor:
        key = (str(space.device), space.dtype)
        if key not in self._coords:
            self._coords[key] = self.conventions.coordinates(space.dtype).to(space.device)
        return self._coords[key]

    def pixels(self, space: WeightSpace) -> Tensor:
        """Differentiable, unclamped rendering ``[B, H*W]`` in image units."""
        values = mlp_forward(space, self.coordinates(space))[..., 0]
        return self.conventions.to_image(values)

    def edit(self, images: Tensor) -> Tensor:
        """The task's edit of images ``[B, H, W]``."""
        return edit_images(images, self.options.op, **self.params)

    def targets(self, inputs: WeightSpace) -> tuple[Tensor, Tensor]:
        """``(input rendering, edited target)``, both clamped ``[B, H*W]``, no gradient."""
        c = self.conventions
        with torch.no_grad():
            images = self.pixels(inputs).clamp(0.0, 1.0)
            edited = self.edit(images.reshape(-1, c.height, c.width))
        return images, edited.reshape(len(images), -1)

    # training and evaluation --------------------------------------------------------------------
    def loss(self, output: WeightSpace, batch: ZooBatch) -> Tensor:
        _, target = self.targets(batch.space.to(output.device, output.dtype))
        return (self.pixels(output) - target).pow(2).mean(1)

    def evaluate(self, output: WeightSpace, batch: ZooBatch) -> dict[str, Tensor]:
        inputs, target = self.targets(batch.space.to(output.device, output.dtype))
        pixels = self.pixels(output)
        return {
            "mse": (pixels.clamp(0.0, 1.0) - target).pow(2).mean(1).cpu(),
            "mse_no_edit": (inputs - target).pow(2).mean(1).cpu(),
            "loss": (pixels - target).pow(2).mean(1).cpu(),
        }

    def metrics(self, values: Mapping[str, Tensor]) -> dict[str, float]:
        mse, reference = values["mse"].double(), values["mse_no_edit"].double()
        return {
            "mse": float(mse.mean()),
            "mse_no_edit": float(reference.mean()),
            "improved_fraction": float((mse < reference).double().mean()),
            "loss": float(values["loss"].double().mean()),
        }

    # the slow route -----------------------------------------------------------------------------
    def baselines(self, train: SplitNets, test: SplitNets) -> BaselineMetrics:
        count = min(self.options.refit_nets, len(test))
        if count == 0:
            return {}
        batch = test.batch(torch.arange(count))
        return {"refit": {"test": self.refit(batch.space)}}

    def refit(self, space: WeightSpace) -> dict[str, float]:
        """Render, edit, fit new SIRENs at the zoo's settings; their metrics and time."""
        from dwscli.data.inr_fit import fit_sines
        from dwscli.data.stacked import siren_init

        space = space.to(torch.float32)
        c, config = self.conventions, self.zoo.meta.config
        inputs, target = self.targets(space)
        spec = MLPSpec.parse(str(config.get("spec", self.zoo.spec)))
        steps = self.options.refit_steps or int(config.get("steps", 300))
        psnr_target = config.get("psnr_target")
        mse_target = None
        if psnr_target is not None:
            mse_target = 10 ** (-float(psnr_target) / 10) / c.output_scale**2
        chunk = int(config.get("chunk", 128))
        coords = c.coordinates()
        start = time.perf_counter()
        init = siren_init(spec, len(target), torch.Generator().manual_seed(0))
        pieces, step_counts = [], []
        for first in range(0, len(target), chunk):
            last = min(first + chunk, len(target))
            result = fit_sines(
                c.to_target(target[first:last]),
                coords,
                spec,
                steps=steps,
                lr=float(config.get("lr", 3e-3)),
                mse_target=mse_target,
                init=init[first:last],
                check_every=int(config.get("check_every", 10)),
                compiled=False,
            )
            pieces.append(result.space)
            step_counts.append(result.steps)
        seconds = time.perf_counter() - start
        fitted = render(WeightSpace.stack(pieces), c).reshape(len(target), -1)
        mse = (fitted - target).pow(2).mean(1).double()
        return {
            "mse": float(mse.mean()),
            "mse_no_edit": float((inputs - target).pow(2).mean(1).double().mean()),
            "improved_fraction": float((mse < (inputs - target).pow(2).mean(1)).double().mean()),
            "seconds_per_net": seconds / len(target),
            "steps": float(torch.cat(step_counts).double().mean()),
            "nets": float(len(target)),
        }

    # the card -----------------------------------------------------------------------------------
    def card_fields(self) -> dict[str, Any]:
        return {"edit": describe_edit(self.options.op, self.params)}

    def describe_output(self) -> dict[str, Any]:
        return {
            "type": "weights",
            "meaning": "the input INR edited: it renders the edit of the input's rendering "
            "(same spec and conventions)",
            "edit": describe_edit(self.options.op, self.params),
            "metric": "mse: mean squared error of the rendered output vs the edited rendering "
            "of the input, pixel intensities in [0, 1]",
        }


__all__ = [
    "InrEditOptions",
    "InrEditTask",
    "check_zoo",
    "prepare_output_solve",
    "zoo_conventions",
]
