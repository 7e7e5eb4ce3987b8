"""How much of (a, b) a sine zoo's nets carry in their function, per split.

A net of ``dws zoo sines`` was fitted to a·sin(b·t) on t ∈ [-π, π]; with a recipe-diverse zoo
many nets stop far from their target (small SGD learning rates, short budgets), and then no
processor can read (a, b) from what the net computes. For every net of the named splits this
prints how well it fits its own target (relative fit error: the recorded fit MSE over a²/2, the
target's mean square) and what a reader that sees the function exactly gets: it samples the
net on the zoo's 200 points, picks the frequency b on a 0.005 grid in [0, 10] whose sine best
matches in least squares, and takes a from that fit.

    python scripts/sine_function_fit.py zoos/sines-diverse test test_heldout_recipe
"""

from __future__ import annotations

import argparse
import math

import torch

from dwscli.data.zoo_loader import Zoo
from dwscli.weights.functional import mlp_forward

FITTED = 0.05  # relative fit error below which a net counts as drawing its sine
POINTS = 200


def read_function(zoo: Zoo, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) fitted to each net's outputs, by grid search over b and least squares for a."""
    space = zoo.get(zoo.ids(split))
    inputs = torch.linspace(-1.0, 1.0, POINTS)
    outputs = mlp_forward(space, inputs.view(1, -1, 1).expand(space.batch_size, -1, -1))
    outputs = outputs.squeeze(-1)
    frequencies = torch.linspace(0.0, 10.0, 2001)
    basis = torch.sin(frequencies[:, None] * (math.pi * inputs)[None, :])
    norms = (basis**2).sum(1).clamp_min(1e-9)
    projections = outputs @ basis.T
    best = (projections**2 / norms).argmax(1)
    rows = torch.arange(len(best))
    return projections[rows, best] / norms[best], frequencies[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("splits", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoo = Zoo.open(args.zoo)
    print(
        "| split | nets | fitted (relative error < 5 %) | exact reader: mean MSE (median) "
        "| on fitted | on the rest |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for split in args.splits:
        records = zoo.records(split)
        a = torch.tensor([r["labels"]["a"] for r in records])
        b = torch.tensor([r["labels"]["b"] for r in records])
        fit_mse = torch.tensor([r["metrics"]["mse"] for r in records])
        fitted = fit_mse / (a * a / 2).clamp_min(1e-6) < FITTED
        a_read, b_read = read_function(zoo, split)
        error = ((a_read - a) ** 2 + (b_read - b) ** 2) / 2
        rest = error[~fitted].mean().item() if (~fitted).any() else float("nan")
        print(
            f"| {split} | {len(records)} | {fitted.float().mean().item():.0%} | "
            f"{error.mean().item():.2f} ({error.median().item():.3f}) | "
            f"{error[fitted].mean().item():.2f} | {rest:.2f} |"
        )


if __name__ == "__main__":
    main()
