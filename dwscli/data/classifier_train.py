"""Training many MLP classifiers at once, each with its own hyper-parameters.

Nets are stacked (``[N, out, in]``) and trained with batched matmuls; the loss is the sum of the
nets' own losses and :class:`~dwscli.data.stacked.StackedAdamW` applies each net's own learning
rate and weight decay, so every net trains exactly as it would alone. Each net also has its own
training subset, label noise, dropout rate, initialisation scale, number of steps and data order,
all drawn from (zoo seed, net index), so test accuracies spread from chance to good.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dwscli.data.recipes import RecipeSpace
from dwscli.data.stacked import CLASSIFIER_INITS, StackedAdamW, StackedMixed
from dwscli.data.zoo import net_generator
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass(frozen=True)
class HparamRanges:
    """Ranges the per-net hyper-parameters are drawn from (log-uniform where marked)."""

    lr: tuple[float, float] = (1e-4, 3e-2)  # log
    weight_decay: tuple[float, float] = (1e-6, 1e-1)  # log
    init_scale: tuple[float, float] = (0.3, 3.0)  # log
    steps: tuple[int, int] = (30, 1000)  # log
    subset: tuple[int, int] = (100, 60000)  # log
    label_noise: tuple[float, float] = (0.0, 0.8)
    dropout: tuple[float, float] = (0.0, 0.5)


#: Hyper-parameter ranges for the two classifier zoos the shipped processors need.
PRESETS: dict[str, HparamRanges] = {
    # accuracy prediction: test accuracies from chance to good
    "spread": HparamRanges(),
    # domain adaptation: reasonable source classifiers with some variety
    "adaptation": HparamRanges(
        lr=(3e-4, 3e-3),
        weight_decay=(1e-6, 1e-3),
        init_scale=(0.5, 2.0),
        steps=(200, 1000),
        subset=(5000, 60000),
        label_noise=(0.0, 0.1),
        dropout=(0.0, 0.3),
    ),
}


@dataclass(frozen=True)
class ClassifierZooConfig:
    spec: str = "196-32-32-10:relu"
    pool: int = 2  # integer average-pool factor of the 28x28 images (2 -> 14x14 = 196 inputs)
    batch_size: int = 128
    chunk: int = 256
    eval_corruption: str | None = None  # also record accuracy on this corrupted test set
    ranges: HparamRanges = field(default_factory=HparamRanges)
    # a recipe-diverse zoo: optimiser, initialisation and minibatch size drawn per net too
    recipe: RecipeSpace | None = None

    def recorded(self) -> dict[str, Any]:
        """The config as ``zoo.json`` records it; zoos without a diverse recipe record what they
        always did, so they still resume."""
        out = asdict(self)
        out.pop("recipe")
        if self.recipe is not None:
            out["recipe"] = self.recipe.recorded()
        return out


def add_recipe(hp: dict[str, Any], space: RecipeSpace, zoo_seed: int, index: int) -> dict[str, Any]:
    """``hp`` (from :func:`sample_hparams`) with net ``index``'s drawn optimiser, initialisation
    and minibatch size; an SGD net's learning rate is drawn from the recipe's SGD range (the
    preset's range is for Adam)."""
    from dwscli.data.recipes import draw_recipe

    recipe = draw_recipe(space, zoo_seed, index)
    out = dict(hp)
    out["recipe"] = space.name
    out["optimizer"] = recipe.optimizer
    out["init"] = recipe.init
    out["batch_size"] = int(recipe.batch or 128)
    if recipe.optimizer == "sgd":
        out["lr"] = recipe.lr
        out["momentum"] = recipe.momentum
    return out


def _uniform(g: torch.Generator, low: float, high: float, log: bool = False) -> float:
    u = float(torch.rand((), generator=g))
    if log:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def sample_hparams(ranges: HparamRanges, zoo_seed: int, index: int) -> dict[str, float | int]:
    """Net ``index``'s hyper-parameters: a pure function of (zoo seed, index)."""
    g = net_generator(zoo_seed, index)
    return {
        "lr": _uniform(g, *ranges.lr, log=True),
        "weight_decay": _uniform(g, *ranges.weight_decay, log=True),
        "init_scale": _uniform(g, *ranges.init_scale, log=True),
        "steps": round(_uniform(g, *ranges.steps, log=True)),
        "subset": round(_uniform(g, *ranges.subset, log=True)),
        "label_noise": _uniform(g, *ranges.label_noise),
        "dropout": _uniform(g, *ranges.dropout),
        "seed": int(torch.randint(0, 2**31 - 1, (), generator=g)),
    }


@dataclass
class ImageData:
    """Preprocessed inputs ``[M, D]`` and labels ``[M]`` of one split."""

    inputs: Tensor
    labels: Tensor


def preprocess(images: Tensor, pool: int, mean: float, std: float) -> Tensor:
    """``[M, 28, 28]`` floats in [0, 1] -> average-pooled, standardised, row-major ``[M, D]``."""
    x = images.float()
    if pool > 1:
        x = F.avg_pool2d(x[:, None], pool)[:, 0]
    return ((x - mean) / std).reshape(x.shape[0], -1)


def _net_data(hp: dict, train: ImageData, num_classes: int) -> tuple[Tensor, Tensor]:
    """A net's training subset (indices into train) and its labels after label noise."""
    g = torch.Generator().manual_seed(int(hp["seed"]))
    subset = torch.randperm(train.labels.shape[0], generator=g)[: int(hp["subset"])]
    labels = train.labels[subset].clone()
    noisy = torch.rand(subset.shape[0], generator=g) < float(hp["label_noise"])
    labels[noisy] = torch.randint(0, num_classes, (int(noisy.sum()),), generator=g)
    return subset, labels


def forward(space: WeightSpace, x: Tensor, dropout: Tensor | None = None, g=None) -> Tensor:
    """Logits ``[N, B, classes]`` for per-net inputs ``x`` ``[N, B, D]`` (ReLU MLPs)."""
    h = x
    depth = space.spec.depth
    for i, (w, b) in enumerate(zip(space.weights, space.biases)):
        h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
        if i < depth - 1:
            h = torch.relu(h)
            if dropout is not None:
                keep = 1.0 - dropout[:, None, None]
                mask = torch.rand(h.shape, generator=g) < keep
                h = h * mask / keep
    return h


@torch.no_grad()
def accuracy(space: WeightSpace, data: ImageData, *, chunk_images: int = 2000) -> Tensor:
    """Accuracy ``[N]`` of every net on every image of ``data``."""
    correct = torch.zeros(space.batch_size)
    for start in range(0, data.labels.shape[0], chunk_images):
        x = data.inputs[start : start + chunk_images]
        logits = forward(space, x.expand(space.batch_size, *x.shape))
        correct += (logits.argmax(-1) == data.labels[start : start + chunk_images]).sum(1)
    return correct / data.labels.shape[0]


def train_classifiers(
    hparams: list[dict],
    spec: MLPSpec,
    train: ImageData,
    *,
    batch_size: int = 128,
    num_classes: int = 10,
) -> tuple[WeightSpace, Tensor]:
    """Train one net per entry of ``hparams`` (all at once); returns weights and final loss.

    Optional per-net keys (recipe-diverse zoos): ``optimizer`` (``adam``, or ``sgd`` with
    ``momentum``), ``init`` (a key of ``CLASSIFIER_INITS``, default torch's ``nn.Linear``) and
    ``batch_size`` (default ``batch_size``): every step draws the largest batch of the chunk and
    a net's loss averages only its own first ``batch_size`` rows.
    """
    n = len(hparams)
    scale = torch.tensor([float(h["init_scale"]) for h in hparams])
    init = WeightSpace.stack(
        [
            CLASSIFIER_INITS[h.get("init", "torch-linear")](
                spec, 1, torch.Generator().manual_seed(int(h["seed"])), scale[k]
            )
            for k, h in enumerate(hparams)
        ]
    )
    params = [t.clone().requires_grad_() for t in [*init.weights, *init.biases]]
    lr = torch.tensor([float(h["lr"]) for h in hparams])
    weight_decay = torch.tensor([float(h["weight_decay"]) for h in hparams])
    use_sgd = torch.tensor([h.get("optimizer", "adam") == "sgd" for h in hparams])
    optimizer: StackedAdamW | StackedMixed
    if bool(use_sgd.any()):
        momentum = torch.tensor([float(h.get("momentum", 0.0)) for h in hparams])
        optimizer = StackedMixed(
            [p.data for p in params], lr, use_sgd, momentum=momentum, weight_decay=weight_decay
        )
    else:
        optimizer = StackedAdamW([p.data for p in params], lr, weight_decay=weight_decay)
    own_batch = torch.tensor([int(h.get("batch_size", batch_size)) for h in hparams])
    if bool((own_batch != batch_size).any()):
        batch_size = int(own_batch.max())
    in_batch = (torch.arange(batch_size)[None, :] < own_batch[:, None]).float()  # [N, B]
    uniform_batch = bool(in_batch.all())
    data = [_net_data(h, train, num_classes) for h in hparams]
    steps = torch.tensor([int(h["steps"]) for h in hparams])
    dropout = torch.tensor([float(h["dropout"]) for h in hparams])
    g = torch.Generator().manual_seed(int(hparams[0]["seed"]) ^ 0x5EED)
    sizes = torch.tensor([d[0].shape[0] for d in data])
    subsets = torch.nn.utils.rnn.pad_sequence([d[0] for d in data], batch_first=True)
    labels = torch.nn.utils.rnn.pad_sequence([d[1] for d in data], batch_first=True)
    last_loss = torch.zeros(n)
    for step in range(int(steps.max())):
        active = steps > step
        rows = (torch.rand(n, batch_size, generator=g) * sizes[:, None]).long()
        index = torch.gather(subsets, 1, rows)
        x = train.inputs[index]  # [N, B, D]
        y = torch.gather(labels, 1, rows)
        space = WeightSpace(params[: spec.depth], params[spec.depth :], spec)
        logits = forward(space, x, dropout, g)
        loss = F.cross_entropy(logits.reshape(-1, num_classes), y.reshape(-1), reduction="none")
        if uniform_batch:
            per_net = loss.reshape(n, batch_size).mean(1)
        else:
            per_net = (loss.reshape(n, batch_size) * in_batch).sum(1) / own_batch
        grads = torch.autograd.grad(per_net.sum(), params)
        optimizer.step(list(grads), active)
        last_loss = torch.where(active, per_net.detach(), last_loss)
    final = WeightSpace(
        [p.detach() for p in params[: spec.depth]], [p.detach() for p in params[spec.depth :]], spec
    )
    return final, last_loss
