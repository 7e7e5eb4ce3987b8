"""How much each corruption, at each severity, costs a classifier zoo's test nets.

The severities of the shipped adaptation domains were chosen with this table: the smallest
severity on the grid at which the unadapted test nets lose at least the required points
(30 for a fixed rotation, 20 for noise and blur), so the domain is hard but the images still carry
their class. Scores are on the data set's 10,000 test images, corrupted with the seed the adapt
task scores test nets with.

    python scripts/domain_severity.py zoos/fmnist-clf-da [--nets 300] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from dwscli.data.classifier_train import ImageData, preprocess
from dwscli.data.corruptions import corrupt
from dwscli.data.datasets import load_dataset
from dwscli.data.zoo import Zoo
from dwscli.train.tasks.adapt import TEST_CORRUPTION_SEED, score_nets

GRID: dict[str, list[float]] = {
    "rotation": [15, 20, 25, 30, 35, 40, 45],
    "gaussian-noise": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0],
    "blur": [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
    "contrast": [0.5, 0.8],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--nets", type=int, default=300, help="test-split nets to score")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    zoo = Zoo.open(args.zoo)
    space = zoo.load("test").space.to(torch.float32)[: args.nets]
    conventions = zoo.conventions
    pool, mean, std = int(conventions["pool"]), conventions["mean"], conventions["std"]
    images = load_dataset(str(zoo.meta.dataset), "test")
    pixels = images.float_images()

    def accuracy(x: torch.Tensor) -> float:
        acc, _ = score_nets(space, ImageData(preprocess(x, pool, mean, std), images.labels))
        return 100.0 * float(acc.double().mean())

    clean = accuracy(pixels)
    print(f"zoo {args.zoo}: {space.batch_size} test nets, clean accuracy {clean:.1f} %")
    print("| corruption | severity | accuracy (%) | drop (points) |")
    print("|---|---:|---:|---:|")
    for name, severities in GRID.items():
        for severity in severities:
            shifted = accuracy(corrupt(pixels, f"{name}:{severity:g}", TEST_CORRUPTION_SEED))
            print(f"| {name} | {severity:g} | {shifted:.1f} | {clean - shifted:.1f} |")


if __name__ == "__main__":
    main()
