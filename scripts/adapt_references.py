"""What other ways of adapting a zoo's classifiers reach on a target domain, for orientation.

Two references for an adaptation processor's gain, on the first ``--nets`` test nets of a
classifier zoo, scored on the corrupted and the clean test images:

* **fine-tuning with labels**: every net trained further with Adam (lr 1e-3, 256 images a step)
  on the corrupted training images plus their clean versions, the processor's own loss, scored
  after each of ``--steps``. A processor sees no labels at adaptation time, so this is a
  generous reference, and the zoo's nets are undertrained, so its later steps also improve them
  on clean images.
* **re-normalising the first layer** (no labels, no training; as AdaBN does for batch norm):
  each first-layer unit's weights and bias are rescaled and shifted so that its pre-activation
  has on corrupted images the mean and spread it has on clean ones (2,000 training images).

    python scripts/adapt_references.py gaussian-noise:0.8 [--zoo zoos/fmnist-clf-da] [--nets 64]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from dwscli.data.zoo import Zoo
from dwscli.train.tasks.adapt import AdaptOptions, DomainImages, load_domain_images, score_nets
from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace


def as_space(tensors: list[torch.Tensor], spec) -> WeightSpace:
    """Tensors in :meth:`WeightSpace.tensors` order (W_1, b_1, …) back into a weight space."""
    return WeightSpace(list(tensors[0::2]), list(tensors[1::2]), spec)


def percent(space: WeightSpace, images: DomainImages) -> tuple[float, float]:
    """Mean accuracy (%) on the corrupted and on the clean test images."""
    target, _ = score_nets(space, images.test)
    clean, _ = score_nets(space, images.clean["test"])
    return 100 * float(target.mean()), 100 * float(clean.mean())


def fine_tune(space: WeightSpace, images: DomainImages, steps: list[int], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    params = [t.clone().requires_grad_(True) for t in space.tensors()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    train, clean = images.train, images.clean["train"]
    for step in range(1, max(steps) + 1):
        rows = torch.randint(0, len(train.labels), (256,), generator=generator)
        net = as_space(params, space.spec)
        labels = train.labels[rows].expand(space.batch_size, -1)
        loss = sum(
            F.cross_entropy(mlp_forward(net, inputs[rows]).transpose(1, 2), labels)
            for inputs in (train.inputs, clean.inputs)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in steps:
            tuned = as_space([p.detach() for p in params], space.spec)
            target, clean_acc = percent(tuned, images)
            print(f"| fine-tuning with labels, {step} steps | {target:.1f} | {clean_acc:.1f} |")


def renormalise_first_layer(space: WeightSpace, images: DomainImages) -> WeightSpace:
    w, b = space.weights[0], space.biases[0]
    pre_clean = torch.einsum("ni,boi->bno", images.clean["train"].inputs[:2000], w) + b[:, None]
    pre_shift = torch.einsum("ni,boi->bno", images.train.inputs[:2000], w) + b[:, None]
    scale = pre_clean.std(1) / pre_shift.std(1).clamp_min(1e-6)
    bias = pre_clean.mean(1) - scale * (pre_shift.mean(1) - b)
    return WeightSpace(
        [w * scale[..., None], *space.weights[1:]], [bias, *space.biases[1:]], space.spec
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", help="a corruption, e.g. gaussian-noise:0.8")
    parser.add_argument("--zoo", default="zoos/fmnist-clf-da")
    parser.add_argument("--nets", type=int, default=64)
    parser.add_argument("--steps", default="100,500,1500", help="fine-tuning steps to score at")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    zoo = Zoo.open(args.zoo)
    images = load_domain_images(zoo, args.domain, AdaptOptions())
    space = zoo.load("test").space.to(torch.float32)[: args.nets]
    print(f"{args.domain}: first {space.batch_size} test nets of {args.zoo}")
    print("| adaptation | target-domain accuracy (%) | clean accuracy (%) |")
    print("|---|---:|---:|")
    target, clean = percent(space, images)
    print(f"| none | {target:.1f} | {clean:.1f} |")
    target, clean = percent(renormalise_first_layer(space, images), images)
    print(f"| first layer re-normalised (no labels) | {target:.1f} | {clean:.1f} |")
    fine_tune(space, images, sorted(int(s) for s in args.steps.split(",")), seed=0)


if __name__ == "__main__":
    main()
