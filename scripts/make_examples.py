#!/usr/bin/env python
"""Regenerate the example checkpoints shipped in ``dwscli/examples/`` (deterministic).

    python scripts/make_examples.py            # refuses to replace existing files
    python scripts/make_examples.py --force

- ``tiny-relu.safetensors``: a 4-16-16-3 ReLU classifier-shaped MLP, ``nn.Sequential`` keys
  (``0.weight``, ``2.weight``, ``4.weight``), PyTorch's default ``nn.Linear`` initialisation scale.
- ``tiny-siren.safetensors``: a 2-16-16-1 SIREN (sine, w0 = 30) with SIREN's initialisation
  (Sitzmann et al. 2020), ``layers.N`` keys.

Both are seeded, untrained networks of a few KB: enough for ``dws inspect`` and ``dws permute``
demos and tests. Trained examples come with the model zoos.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="output folder")
    args = parser.parse_args()
    jobs = [
        ("tiny-relu", tiny_relu(), "sequential", "seeded 4-16-16-3 ReLU MLP (untrained)"),
        ("tiny-siren", tiny_siren(), "layers", "seeded 2-16-16-1 SIREN, w0=30 (untrained)"),
    ]
    for name, space, key_style, description in jobs:
        try:
            path = save_space(
                args.out / f"{name}.safetensors",
                space,
                metadata={"dws.example": description},
                key_style=key_style,
                force=args.force,
            )
        except DwsError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{path}  {space.spec}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
