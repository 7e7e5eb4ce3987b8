"""How well can *anything* classify INRs from what they draw? A CNN on their renderings.

Renders every net of an INR zoo on its pixel grid, trains a small CNN on the renderings of the
training split (every net: fitted or not), and prints its accuracy each epoch on the training
nets, the val split, the held-out-recipe split (all, the nets that reach ``--psnr`` dB, the
ones that do not, and the ones under 15 dB) and, with ``--extra``, every net of other zoos of
the same conventions. A weight-space classifier that reads an INR's function on the grid has
about this much to go on: a net that never fitted its image does not draw its digit.

    python scripts/render_classifier_bound.py zoos/mnist-inr-diverse-12k \
        --extra zoos/eval/mnist-inr-diverse --epochs 15
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from dwscli.data.zoo import Zoo
from dwscli.train.tasks.inr_edit import zoo_conventions
from dwscli.weights.inr import render


def renderings(path: Path, split: str | None) -> tuple[Tensor, Tensor, Tensor]:
    """(images [N, 1, H, W] in [0, 1], labels [N], PSNR [N]) of one split (None: every net)."""
    zoo = Zoo.open(path)
    conventions = zoo_conventions(zoo)
    records = zoo.records(split)
    images = [
        render(zoo.get([r["id"] for r in records[start : start + 500]]), conventions)
        for start in range(0, len(records), 500)
    ]
    labels = torch.tensor([r["labels"]["label"] for r in records])
    psnr = torch.tensor([r["metrics"]["psnr"] for r in records])
    return torch.nan_to_num(torch.cat(images), 0.5)[:, None], labels, psnr


def small_cnn(height: int, width: int, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), 128),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(128, classes),
    )


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, keep: Tensor | None = None) -> str:
    model.eval()
    with torch.no_grad():
        chunks = [model(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)]
    model.train()
    right = (torch.cat(chunks) == labels).float()
    if keep is not None:
        right = right[keep]
    return f"{right.mean().item():.3f} ({len(right)})" if len(right) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path, help="an INR zoo with a test_heldout_recipe split")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more zoos, every net")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--psnr", type=float, default=25.0, help="dB that count as fitted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_y, _ = renderings(args.zoo, "train")
    val_x, val_y, _ = renderings(args.zoo, "val")
    held_x, held_y, held_psnr = renderings(args.zoo, "test_heldout_recipe")
    extra = {path.name: renderings(path, None) for path in args.extra}
    model = small_cnn(train_x.shape[2], train_x.shape[3], int(train_y.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-4)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        for batch in torch.randperm(len(train_x)).split(64):
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        parts = [
            f"train {accuracy(model, train_x, train_y)}",
            f"val {accuracy(model, val_x, val_y)}",
            f"held-out all {accuracy(model, held_x, held_y)}",
            f"fitted {accuracy(model, held_x, held_y, held_psnr >= args.psnr)}",
            f"not fitted {accuracy(model, held_x, held_y, held_psnr < args.psnr)}",
            f"under 15 dB {accuracy(model, held_x, held_y, held_psnr < 15)}",
        ]
        for name, (x, y, psnr) in extra.items():
            parts.append(f"{name} all {accuracy(model, x, y)}")
            parts.append(f"fitted {accuracy(model, x, y, psnr >= args.psnr)}")
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}: " + ", ".join(parts) + f" ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
