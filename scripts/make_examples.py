#!/usr/bin/env python
"""Regenerate the example checkpoints shipped in ``dwscli/examples/`` (deterministic).

    python scripts/make_examples.py            # refuses to replace existing files
    python scripts/make_examples.py --force

- ``tiny-relu.safetensors``: a 4-16-16-3 ReLU classifier-shaped MLP, ``nn.Sequential`` keys
  (``0.weight``, ``2.weight``, ``4.weight``), PyTorch's default ``nn.Linear`` initialisation scale.
- ``tiny-siren.safetensors``: a 2-16-16-1 SIREN (sine, w0 = 30) with SIREN's initialisation
  (Sitzmann et al. 2020), ``layers.N`` keys.

Both are seeded, untrained networks of a few KB: enough for ``dws inspect`` and ``dws permute``
demos and tests. Trained with the zoo machinery (the same code and settings as the zoos):

- ``mnist-inr.safetensors``: a 2-32-32-32-1 SIREN fitted to MNIST test image 0 (a 7), with the
  INR conventions in its metadata (``dws render example:mnist-inr -o seven.png``);
- ``fmnist-inr.safetensors``: the same for Fashion-MNIST test image 0 (an ankle boot), with
  ``dataset: fashion-mnist`` in its metadata so ``dws classify`` picks the Fashion-MNIST model;
- ``sine-inr.safetensors``: a 1-32-32-1 SIREN fitted to 3·sin(2x) on [-π, π];
- ``fmnist-mlp.safetensors``: a 196-32-32-10 ReLU classifier of 14×14 average-pooled
  Fashion-MNIST images, with its test accuracy in its metadata.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from dwscli.errors import DwsError
from dwscli.weights.checkpoint import save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

EXAMPLES = Path(__file__).resolve().parents[1] / "dwscli" / "examples"


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(1, *shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def tiny_relu(seed: int = 0) -> WeightSpace:
    """nn.Linear's default init: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    spec = MLPSpec((4, 16, 16, 3), "relu")
    generator = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for out_dim, in_dim in spec.weight_shapes:
        bound = 1 / math.sqrt(in_dim)
        weights.append(_uniform((out_dim, in_dim), bound, generator))
        biases.append(_uniform((out_dim,), bound, generator))
    return WeightSpace(weights, biases, spec).to(torch.float32)


def tiny_siren(seed: int = 0, w0: float = 30.0) -> WeightSpace:
    """SIREN init: first layer U(-1/d_0, 1/d_0), later ones U(-sqrt(6/fan_in)/w0, +)."""
    spec = MLPSpec((2, 16, 16, 1), "sine", (("w0", f"{w0:g}"),))
    generator = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for layer, (out_dim, in_dim) in enumerate(spec.weight_shapes):
        bound = 1 / in_dim if layer == 0 else math.sqrt(6 / in_dim) / w0
        weights.append(_uniform((out_dim, in_dim), bound, generator))
        biases.append(_uniform((out_dim,), 1 / math.sqrt(in_dim), generator))
    return WeightSpace(weights, biases, spec).to(torch.float32)


def mnist_inr() -> tuple[WeightSpace, dict[str, str]]:
    return image_inr("mnist", "MNIST")


def fmnist_inr() -> tuple[WeightSpace, dict[str, str]]:
    space, metadata = image_inr("fashion-mnist", "Fashion-MNIST")
    return space, {**metadata, "dataset": "fashion-mnist"}  # picks the Fashion-MNIST classifier


def image_inr(dataset: str, title: str) -> tuple[WeightSpace, dict[str, str]]:
    """A SIREN fitted to test image 0 of ``dataset`` as the INR zoos fit theirs."""
    from dwscli.data.datasets import load_dataset
    from dwscli.data.inr_fit import fit_sines
    from dwscli.data.stacked import siren_init
    from dwscli.data.zoo_make import InrZooConfig
    from dwscli.weights.inr import InrConventions, psnr, render

    config = InrZooConfig()
    conventions = InrConventions()
    spec = MLPSpec.parse(config.spec)
    test = load_dataset(dataset, "test")
    image = test.float_images()[:1]
    result = fit_sines(
        conventions.to_target(image.reshape(1, -1)),
        conventions.coordinates(),
        spec,
        steps=config.steps,
        lr=config.lr,
        mse_target=10 ** (-config.psnr_target / 10) / conventions.output_scale**2,
        init=siren_init(spec, 1, torch.Generator().manual_seed(0)),
    )
    quality = float(psnr(render(result.space, conventions), image)[0])
    metadata = {
        **conventions.to_metadata(),
        "dws.example": f"SIREN of {title} test image 0",
        "label": str(int(test.labels[0])),
        "psnr": f"{quality:.2f}",
    }
    return result.space, metadata


def sine_inr(a: float = 3.0, b: float = 2.0) -> tuple[WeightSpace, dict[str, str]]:
    from dwscli.data.inr_fit import fit_sines
    from dwscli.data.stacked import siren_init
    from dwscli.data.zoo_make import SineZooConfig

    config = SineZooConfig()
    spec = MLPSpec.parse(config.spec)
    coords = torch.linspace(-1.0, 1.0, config.points)[:, None]
    target = a * torch.sin(b * math.pi * coords[:, 0])[None]
    result = fit_sines(
        target,
        coords,
        spec,
        steps=config.steps,
        lr=config.lr,
        mse_target=config.mse_target,
        init=siren_init(spec, 1, torch.Generator().manual_seed(0)),
    )
    metadata = {
        "dws.example": f"SIREN of {a:g}*sin({b:g}x) on [-pi, pi] (input x/pi)",
        "a": f"{a:g}",
        "b": f"{b:g}",
        "mse": f"{float(result.mse[0]):.2e}",
    }
    return result.space, metadata


def fmnist_mlp() -> tuple[WeightSpace, dict[str, str]]:
    from dwscli.data.classifier_train import ImageData, accuracy, preprocess, train_classifiers
    from dwscli.data.datasets import load_dataset
    from dwscli.data.zoo_make import dataset_statistics

    spec = MLPSpec.parse("196-32-32-10:relu")
    mean, std = dataset_statistics("fashion-mnist")
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    hparams = {
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "init_scale": 1.0,
        "steps": 1000,
        "subset": 60000,
        "label_noise": 0.0,
        "dropout": 0.0,
        "seed": 0,
    }
    data = ImageData(preprocess(train.float_images(), 2, mean, std), train.labels)
    space, _ = train_classifiers([hparams], spec, data)
    test_data = ImageData(preprocess(test.float_images(), 2, mean, std), test.labels)
    test_acc = float(accuracy(space, test_data)[0])
    metadata = {
        "dws.example": "Fashion-MNIST classifier on 14x14 average-pooled images",
        "preprocessing": f"avg_pool 2, (pixels/255 - {mean:.4f}) / {std:.4f}, row-major",
        "test_acc": f"{test_acc:.4f}",
    }
    return space, metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="output folder")
    parser.add_argument("--only", nargs="+", help="make only these examples")
    args = parser.parse_args()
    untrained = {"dws.example": "seeded 4-16-16-3 ReLU MLP (untrained)"}
    untrained_siren = {"dws.example": "seeded 2-16-16-1 SIREN, w0=30 (untrained)"}
    makers = [
        ("tiny-relu", "sequential", lambda: (tiny_relu(), untrained)),
        ("tiny-siren", "layers", lambda: (tiny_siren(), untrained_siren)),
        ("mnist-inr", "sequential", mnist_inr),
        ("fmnist-inr", "sequential", fmnist_inr),
        ("sine-inr", "sequential", sine_inr),
        ("fmnist-mlp", "sequential", fmnist_mlp),
    ]
    wanted = set(args.only or [name for name, _, _ in makers])
    jobs = [(name, *make(), style) for name, style, make in makers if name in wanted]
    for name, space, metadata, key_style in jobs:
        try:
            path = save_space(
                args.out / f"{name}.safetensors",
                space,
                metadata=metadata,
                key_style=key_style,
                force=args.force,
            )
        except DwsError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{path}  {space.spec}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
