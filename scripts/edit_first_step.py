"""What an untrained editor does to a zoo's nets: the size of its first change, per recipe.

An equivariant editor predicts each tensor's change in units of the zoo's spread of that tensor
(the normaliser's std), starting small (``output_init_scale``). When a zoo holds nets whose
weights are far larger than the rest (fits that diverged), that unit, and so the first change,
is huge for every other net. For the first ``--nets`` val nets of the config's zoo (filtered by
its ``train.where``), this builds the config's model as ``dws train`` would (normaliser fitted
on the training sample), runs it once untrained, and prints per (initialisation, optimiser):
the rendered MSE to the edited image with and without the edit, and the median of
``|change of W_k| / |W_k|`` per layer, with the normaliser's std of every tensor.

    python scripts/edit_first_step.py configs/experiments/mnist-inr-dilate-diverse-neurons.yaml
"""

from __future__ import annotations

import argparse
import collections

import torch

from dwscli.train import distributed
from dwscli.train.config import TrainConfig
from dwscli.train.loop import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--nets", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.from_yaml(args.config)
    trainer = Trainer(config, distributed.env_from_torchrun(), torch.device("cpu"), None)
    model, task, zoo = trainer.model.eval(), trainer.task, trainer.zoo
    ids = trainer.val_nets.ids[: args.nets]
    space = trainer.val_nets.batch(list(range(len(ids)))).space
    with torch.no_grad():
        edited = model(space)
        images, targets = task.targets(space)
        mse = (task.pixels(edited) - targets).square().mean(1)
        no_edit = (images - targets).square().mean(1)
        change = [
            (new - old).flatten(1).norm(dim=1) / old.flatten(1).norm(dim=1).clamp_min(1e-12)
            for new, old in zip(edited.weights, space.weights)
        ]
    print("normaliser std (W_1..W_L, b_1..b_L):", [f"{float(s):.4g}" for s in model.normalizer.std])
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for k, net in enumerate(ids):
        recipe = zoo.record(net).get("hparams", {})
        groups[(str(recipe.get("init")), str(recipe.get("optimizer")))].append(k)
    for (init, optimizer), members in sorted(groups.items()):
        pick = torch.tensor(members)
        ratios = " ".join(f"W{j + 1} {float(c[pick].median()):.3g}" for j, c in enumerate(change))
        print(
            f"{init:20s} {optimizer:5s} {len(members):4d} nets  mse {float(mse[pick].mean()):.4f}"
            f"  no edit {float(no_edit[pick].mean()):.4f}  |dW|/|W| median: {ratios}"
        )


if __name__ == "__main__":
    main()
