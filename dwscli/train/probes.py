"""Starting points for a model's functional probes (:class:`dwscli.nn.probes.FunctionalProbes`).

Probes learn faster and generalise better when they start on the input distribution the zoo's
nets were trained for. For classifier zoos these are training images of the zoo's data set,
preprocessed exactly as the zoo's ``conventions`` say (pool, mean, std, row-major flattening);
the test images are never used, so test metrics stay on data the processor never saw. For INR
and sine zoos they are coordinates spread uniformly over the nets' input range: a learned,
sparse set of points where the processor looks at what each INR draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dwscli.data.zoo import Zoo
from dwscli.errors import DwsError


def probe_inputs(zoo: Zoo, count: int, seed: int) -> tuple[Tensor, Tensor | None] | None:
    """Starting probes for a zoo: ``(inputs [count, d_0], labels or None)``, or None.

    Classifier zoos: preprocessed training images and their labels. INR and sine zoos:
    coordinates drawn uniformly over the range the nets were fitted on (no labels).
    """
    conventions = zoo.conventions
    generator = torch.Generator().manual_seed(seed)
    if zoo.kind in ("inr", "sine"):
        low, high = _input_range(conventions)
        points = torch.rand(count, zoo.spec.input_dim, generator=generator)
        return low + (high - low) * points, None
    if zoo.kind != "classifier" or not {"pool", "mean", "std"} <= set(conventions):
        return None
    from dwscli.data.classifier_train import preprocess
    from dwscli.data.datasets import load_dataset

    dataset = load_dataset(zoo.meta.dataset, "train")
    images = dataset.float_images()
    picks = torch.randperm(len(images), generator=generator)[:count]
    pool, mean, std = int(conventions["pool"]), conventions["mean"], conventions["std"]
    inputs = preprocess(images[picks], pool, float(mean), float(std))
    return inputs, dataset.labels[picks].long()


def _input_range(conventions: dict) -> tuple[float, float]:
    """The range of the nets' inputs: ``net_input_range`` (sines) or ``coord_range`` (INRs)."""
    low, high = conventions.get("net_input_range") or conventions.get("coord_range") or (-1, 1)
    return float(low), float(high)


def init_probes(model: nn.Module, zoo: Zoo, seed: int) -> bool:
    """Start ``model.probes`` (if it has any) from the zoo's training inputs; True if done."""
    probes = getattr(model, "probes", None)
    if probes is None or not hasattr(probes, "init_from"):
        return False
    found = probe_inputs(zoo, probes.inputs.shape[0], seed)
    if found is None:
        if probes.labelled:
            raise DwsError(
                f"{zoo.path}: model.probe_labels needs a classifier zoo with a data set "
                f"(this is a {zoo.kind} zoo)"
            )
        return False
    probes.init_from(*found)
    if getattr(probes, "grid", False):
        set_probe_grid(probes, zoo)
    return True


def set_probe_grid(probes: nn.Module, zoo: Zoo) -> None:
    """Give grid-snapped probes (``model.probe_grid``) the grid the zoo's nets were fitted on:
    an INR zoo's pixel centres, or a sine zoo's ``points`` evenly spaced inputs."""
    conventions = zoo.conventions
    low, high = _input_range(conventions)
    if zoo.kind == "sine" and conventions.get("points") and zoo.spec.input_dim == 1:
        count = torch.tensor([float(conventions["points"])])
        probes.set_grid(torch.full((1,), low), torch.full((1,), high), count)
        return
    grid = conventions.get("grid")
    if zoo.kind != "inr" or not grid or zoo.spec.input_dim != 2:
        raise DwsError(
            f"{zoo.path}: model.probe_grid needs an INR zoo of 2-D coordinates on a pixel grid "
            f"or a sine zoo of 1-D inputs (this is a {zoo.kind} zoo)"
        )
    height, width = (int(n) for n in grid)
    # the nets read (x, y): x runs over the grid's width, y over its height
    points = torch.tensor([width, height], dtype=torch.float32)
    probes.set_grid(torch.full((2,), low), torch.full((2,), high), points)


__all__ = ["init_probes", "probe_inputs", "set_probe_grid"]
