"""``task: adapt``: zero-shot domain adaptation of classifiers.

An equivariant DWSNet (residual: output = input + predicted change) maps a classifier trained on
clean images to a classifier for a *target domain*, a named corruption
(:func:`dwscli.data.corruptions.corrupt`). No target labels are used at adaptation time; the
processor learns the map from a zoo of source classifiers.

Training loss per net: cross-entropy of the *output* network, run functionally on the generated
weights (:func:`~dwscli.weights.functional.mlp_forward`), on corrupted training images. The whole
training set is corrupted once (seed :data:`TRAIN_CORRUPTION_SEED`), preprocessed as the zoo's
``conventions`` say (pool, mean, std) and kept in memory; each step draws ``images_per_step`` of
them, shared by every net of the step, from ``(seed, epoch, step)`` (:meth:`Task.start_step`), so
torchrun ranks agree and a resumed run draws the same images.

With ``clean_weight`` > 0 the loss adds that multiple of the cross-entropy on the *clean* versions
of the same images, so an adapted net keeps working on the source domain (a user rarely knows
that every future input is corrupted).

Evaluation per net: target-domain accuracy of the adapted net and of the unadapted input net, and
the same two on the clean (source-domain) images: ``clean_drop_points`` is how much clean accuracy
the adaptation cost.
The images are split like the nets, so that the test number is on images the processor never
touched, neither in its loss nor in model selection:

- test-split nets: the corrupted *test* images (seed :data:`TEST_CORRUPTION_SEED`, the seed
  :func:`~dwscli.data.zoo_make.make_classifier_zoo` records ``test_acc_<corruption>`` with, so the
  unadapted accuracy over all 10k equals the manifest's);
- every other split (validation, the training sample): ``val_images`` corrupted *training*
  images held out from the loss (the last ones of the training set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dwscli.data.classifier_train import ImageData
from dwscli.data.zoo import Zoo, ZooBatch
from dwscli.data.zoo_format import HELDOUT_SPLIT
from dwscli.errors import DwsError
from dwscli.train.data import generator
from dwscli.train.tasks.base import Task
from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace

#: Seed of the one corruption of the training images (the loss and validation draw from them).
TRAIN_CORRUPTION_SEED = 0
#: Seed of the corruption of the test images; the zoo maker's, and different from training's.
TEST_CORRUPTION_SEED = 1
#: Images per forward pass in evaluation (bounds memory: nets x images x width activations).
EVAL_CHUNK = 2000


@dataclass(frozen=True)
class AdaptOptions:
    """The ``task:`` section of ``task: adapt``."""

    corruption: str | None = None  # the target domain; default: the zoo's config.eval_corruption
    images_per_step: int = 256  # corrupted training images per step, shared by the step's nets
    eval_images: int | None = None  # corrupted test images the test split is scored on (all)
    val_images: int = 5000  # training images held out of the loss to validate on
    clean_weight: float = 0.0  # weight of the clean-image cross-entropy in the loss


@dataclass
class DomainImages:
    """The target-domain images of a run, preprocessed as the zoo's nets expect, and the same
    images uncorrupted (``clean``: the source domain), split alike."""

    train: ImageData  # the loss draws from these
    val: ImageData  # held out of the loss: validation and the training sample
    test: ImageData  # the test split is scored on these
    clean: dict[str, ImageData]  # "train" | "val" | "test" -> the uncorrupted images


def target_domain(options: AdaptOptions, zoo: Zoo) -> str:
    """The corruption to adapt to: the option, else the one the zoo measured accuracy on."""
    from dwscli.data.corruptions import parse_corruption

    name = options.corruption or zoo.meta.config.get("eval_corruption")
    if not isinstance(name, str) or not name:
        raise DwsError(
            f"{zoo.path}: task adapt needs a target domain, and the zoo records no "
            "config.eval_corruption",
            hint="set task.corruption, e.g. {name: adapt, corruption: contrast}",
        )
    parse_corruption(name)  # unknown names and bad severities fail here, before any work
    return name


def check_zoo(zoo: Zoo, options: AdaptOptions) -> None:
    """Refuse a zoo or options the task cannot work with, naming what is wrong."""
    if zoo.kind != "classifier":
        raise DwsError(
            f"{zoo.path}: task adapt needs a classifier zoo (dws zoo classifiers), "
            f"not a {zoo.kind} zoo"
        )
    missing = [k for k in ("pool", "mean", "std") if k not in zoo.conventions]
    if missing or not zoo.meta.dataset:
        what = ", ".join(f"conventions.{k}" for k in missing) or "dataset"
        raise DwsError(f"{zoo.path}: zoo.json lacks {what}; the images cannot be preprocessed")
    for key in ("images_per_step", "eval_images", "val_images"):
        value = getattr(options, key)
        if value is not None and value < 1:
            raise DwsError(f"task.{key}: must be at least 1, got {value}")
    weight = options.clean_weight
    if not isinstance(weight, (int, float)) or not 0.0 <= float(weight) < float("inf"):
        raise DwsError(f"task.clean_weight: must be a number >= 0, got {weight!r}")


def load_domain_images(zoo: Zoo, corruption: str, options: AdaptOptions) -> DomainImages:
    """Corrupt the data set's training and test images once and preprocess them (in memory)."""
    from dwscli.data.classifier_train import preprocess
    from dwscli.data.corruptions import corrupt
    from dwscli.data.datasets import load_dataset

    conventions = zoo.conventions
    pool, mean, std = (
        int(conventions["pool"]),
        float(conventions["mean"]),
        float(conventions["std"]),
    )
    dataset = str(zoo.meta.dataset)

    def domain(split: str, seed: int) -> tuple[ImageData, ImageData]:
        images = load_dataset(dataset, split)
        pixels = images.float_images()
        corrupted = corrupt(pixels, corruption, seed)
        return (
            ImageData(preprocess(corrupted, pool, mean, std), images.labels),
            ImageData(preprocess(pixels, pool, mean, std), images.labels),
        )

    (train, clean_train), (test, clean_test) = (
        domain("train", TRAIN_CORRUPTION_SEED),
        domain("test", TEST_CORRUPTION_SEED),
    )
    if train.inputs.shape[1] != zoo.spec.input_dim:
        raise DwsError(
            f"{zoo.path}: preprocessed images have {train.inputs.shape[1]} inputs, the zoo's "
            f"nets take {zoo.spec.input_dim}"
        )
    cut = len(train.labels) - options.val_images
    if cut < 1:
        raise DwsError(
            f"task.val_images: {options.val_images} leaves no training images "
            f"({len(train.labels)} in {dataset})"
        )
    count = len(test.labels) if options.eval_images is None else options.eval_images

    def split(data: ImageData, test_data: ImageData) -> dict[str, ImageData]:
        return {
            "train": ImageData(data.inputs[:cut], data.labels[:cut]),
            "val": ImageData(data.inputs[cut:], data.labels[cut:]),
            "test": ImageData(test_data.inputs[:count], test_data.labels[:count]),
        }

    target, clean = split(train, test), split(clean_train, clean_test)
    return DomainImages(train=target["train"], val=target["val"], test=target["test"], clean=clean)


def per_image_loss(space: WeightSpace, inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Logits-based cross-entropy and correctness ``[nets, images]`` on shared images."""
    logits = mlp_forward(space, inputs)  # [nets, images, classes]
    targets = labels.expand(space.batch_size, -1)
    loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return loss, logits.argmax(-1) == targets


def score_nets(space: WeightSpace, data: ImageData) -> tuple[Tensor, Tensor]:
    """Accuracy and mean cross-entropy ``[nets]`` of every net on every image of ``data``."""
    device = space.device
    correct = torch.zeros(space.batch_size, dtype=torch.float64, device=device)
    loss = torch.zeros_like(correct)
    for start in range(0, len(data.labels), EVAL_CHUNK):
        x = data.inputs[start : start + EVAL_CHUNK].to(device)
        y = data.labels[start : start + EVAL_CHUNK].to(device)
        image_loss, right = per_image_loss(space, x, y)
        loss += image_loss.double().sum(1)
        correct += right.double().sum(1)
    return correct / len(data.labels), loss / len(data.labels)


def clean_metrics(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Source-domain accuracy before and after adaptation, and the points adaptation cost there
    (positive: the adapted net is worse on clean images). Empty for values without them."""
    if "clean_adapted_acc" not in values:
        return {}
    adapted = values["clean_adapted_acc"].double()
    unadapted = values["clean_unadapted_acc"].double()
    return {
        "clean_adapted_acc": float(adapted.mean()),
        "clean_unadapted_acc": float(unadapted.mean()),
        "clean_drop_points": float(100.0 * (unadapted - adapted).mean()),
    }


class AdaptTask(Task):
    """Equivariant weights -> weights: adapt classifiers to a corrupted target domain."""

    name = "adapt"
    kind = "equivariant"
    Options = AdaptOptions
    best_metric = "adapted_acc"
    higher_is_better = True
    options: AdaptOptions

    def __init__(self, options: AdaptOptions, zoo: Zoo) -> None:
        super().__init__(options, zoo)
        check_zoo(zoo, options)
        self.corruption = target_domain(options, zoo)
        self._images: DomainImages | None = None  # loaded on first use (config checks are cheap)
        self._rows: Tensor | None = None  # the current step's training images
        self._train_on: dict[str, tuple[Tensor, Tensor, Tensor | None]] = {}  # per device
        self._unadapted: dict[tuple[str, str], float] = {}  # (images, net id) -> accuracy

    @property
    def images(self) -> DomainImages:
        if self._images is None:
            self._images = load_domain_images(self.zoo, self.corruption, self.options)
        return self._images

    @property
    def out_features(self) -> int:
        return 1  # unused by an equivariant model

    def target_keys(self) -> list[tuple[str, str]]:
        return []  # the targets are the images' labels, not manifest values

    # training -----------------------------------------------------------------------------------
    def start_step(self, seed: int, epoch: int, step: int) -> None:
        count = len(self.images.train.labels)
        order = torch.randperm(count, generator=generator(seed, "adapt-images", epoch, step))
        self._rows = order[: self.options.images_per_step]

    def _train_images(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """Corrupted inputs, labels and (when the loss uses them) clean inputs of the training
        images on ``device`` (copied there once)."""
        key = str(device)
        if key not in self._train_on:
            data, clean = self.images.train, self.images.clean["train"]
            self._train_on[key] = (
                data.inputs.to(device),
                data.labels.to(device),
                clean.inputs.to(device) if self.options.clean_weight > 0 else None,
            )
        return self._train_on[key]

    def loss(self, output: WeightSpace, batch: ZooBatch) -> Tensor:
        if self._rows is None:
            raise DwsError("task adapt: loss() before start_step() drew the step's images")
        inputs, labels, clean_inputs = self._train_images(output.device)
        rows = self._rows.to(output.device)
        image_loss, _ = per_image_loss(output, inputs[rows], labels[rows])
        loss = image_loss.mean(1)
        if clean_inputs is not None:
            clean_loss, _ = per_image_loss(output, clean_inputs[rows], labels[rows])
            loss = loss + self.options.clean_weight * clean_loss.mean(1)
        return loss

    # evaluation ---------------------------------------------------------------------------------
    def _eval_images(self, batch: ZooBatch) -> tuple[str, ImageData]:
        """Test-split nets are scored on the test images, all others on the held-out ones."""
        if batch.ids and self.zoo.split_of(batch.ids[0]) in ("test", HELDOUT_SPLIT):
            return "test", self.images.test
        return "val", self.images.val

    def _unadapted_accuracy(
        self, batch: ZooBatch, which: str, data: ImageData, device: torch.device
    ) -> Tensor:
        """Accuracy of the input nets (fixed for a net and images, so computed once); ``which``
        names the images (e.g. ``test`` or ``clean-test``)."""
        if any((which, net) not in self._unadapted for net in batch.ids):
            accuracy, _ = score_nets(batch.space.to(device), data)
            self._unadapted.update(
                {(which, net): float(a) for net, a in zip(batch.ids, accuracy.tolist())}
            )
        return torch.tensor([self._unadapted[(which, net)] for net in batch.ids])

    def evaluate(self, output: WeightSpace, batch: ZooBatch) -> dict[str, Tensor]:
        which, data = self._eval_images(batch)
        clean = self.images.clean[which]
        adapted, loss = score_nets(output, data)
        clean_adapted, _ = score_nets(output, clean)
        device = output.device
        return {
            "adapted_acc": adapted.cpu(),
            "unadapted_acc": self._unadapted_accuracy(batch, which, data, device),
            "clean_adapted_acc": clean_adapted.cpu(),
            "clean_unadapted_acc": self._unadapted_accuracy(batch, f"clean-{which}", clean, device),
            "loss": loss.cpu(),
        }

    def metrics(self, values: Mapping[str, Tensor]) -> dict[str, float]:
        adapted = values["adapted_acc"].double()
        unadapted = values["unadapted_acc"].double()
        return {
            "adapted_acc": float(adapted.mean()),
            "unadapted_acc": float(unadapted.mean()),
            "gain_points": float(100.0 * (adapted - unadapted).mean()),
            "improved_fraction": float((adapted > unadapted).double().mean()),
            **clean_metrics(values),
            "loss": float(values["loss"].double().mean()),
        }

    # the card -----------------------------------------------------------------------------------
    def card_fields(self) -> dict[str, Any]:
        return {"target_domain": self.corruption}

    def describe_output(self) -> dict[str, Any]:
        images = self.images
        dataset = self.zoo.meta.dataset
        return {
            "type": "weights",
            "meaning": "the input classifier adapted to the target domain (same spec)",
            "target_domain": self.corruption,
            "images": {
                "train": {
                    "dataset": dataset,
                    "split": "train",
                    "count": len(images.train.labels),
                    "corruption_seed": TRAIN_CORRUPTION_SEED,
                    "per_step": self.options.images_per_step,
                },
                "val": {
                    "dataset": dataset,
                    "split": "train",
                    "count": len(images.val.labels),
                    "held_out": "the last ones of the split, never in the loss",
                    "corruption_seed": TRAIN_CORRUPTION_SEED,
                },
                "test": {
                    "dataset": dataset,
                    "split": "test",
                    "count": len(images.test.labels),
                    "corruption_seed": TEST_CORRUPTION_SEED,
                },
            },
        }


__all__ = [
    "TEST_CORRUPTION_SEED",
    "TRAIN_CORRUPTION_SEED",
    "AdaptOptions",
    "AdaptTask",
    "DomainImages",
    "load_domain_images",
    "score_nets",
    "target_domain",
]
