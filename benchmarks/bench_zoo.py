"""Zoo-making throughput: batched SIREN fitting vs one net at a time, and its FLOP rate.

For each INR fitting recipe (``default``: SIREN 2-32-32-32-1 with SIREN's init, lr 3e-3;
``dwsnets``: 2-32-32-1 with the DWSNets authors' init, lr 5e-4; see ``dws zoo inrs --recipe``)
fits SIRENs to MNIST images (784 pixels, full-batch Adam) for a fixed number of steps, three
ways, alternating them after warm-up, fixed threads:

* ``loop``: one net at a time in a Python loop, the way one fits a single SIREN
  (``nn.Module`` + autograd + ``torch.optim.Adam``);
* ``batched``: dws' vectorised fitting of a chunk of nets (hand-written backward, stacked Adam),
  eager;
* ``batched+compile``: the same step through ``torch.compile``.

Prints net-steps/s (one optimisation step of one net) and the ratio to the loop, and the
achieved FLOP rate (matmul FLOPs of forward and backward) next to what one large fp32 matmul
(2048x2048) reaches in the same run. ``--project`` adds how long a 70,000-INR zoo takes at the
measured ``batched+compile`` rate when every net runs the recipe's whole step budget, with one
process per thread (``dws zoo inrs --shard i/N`` parts, merged).

    python benchmarks/bench_zoo.py [--recipe both] [--threads 2] [--chunk 32] [--steps 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from dwscli.data.datasets import load_dataset
from dwscli.data.inr_fit import fit_sines
from dwscli.data.stacked import INITS
from dwscli.data.zoo_make import INR_RECIPES
from dwscli.runtime import tune_allocator
from dwscli.weights.functional import sine_frequencies
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

PIXELS = 28 * 28
ZOO_SIZE = 70_000


def flops_per_net_step(spec: MLPSpec) -> int:
    """Matmul FLOPs of one forward+backward step of one net on all pixels (2 per MAC; the
    backward computes weight and input gradients, except the input gradient of layer 1)."""
    macs = sum(o * i for o, i in spec.weight_shapes) * PIXELS
    first = spec.weight_shapes[0][0] * spec.weight_shapes[0][1] * PIXELS
    return 2 * (3 * macs - first)


class Sine(nn.Module):
    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


def single_siren(space: WeightSpace) -> nn.Module:
    """A plain nn.Sequential SIREN holding the weights of a batch-1 WeightSpace."""
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(zip(space.weights, space.biases)):
        linear = nn.Linear(w.shape[2], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(w[0])
            linear.bias.copy_(b[0])
        layers.append(linear)
        if i < space.spec.depth - 1:
            w0_first, w0_hidden = sine_frequencies(space.spec)
            layers.append(Sine(w0_first if i == 0 else w0_hidden))
    return nn.Sequential(*layers)


def fit_loop(
    inits: WeightSpace, coords: torch.Tensor, targets: torch.Tensor, steps: int, lr: float
) -> None:
    for k in range(inits.batch_size):
        model = single_siren(inits[k])
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = (model(coords) - targets[k][:, None]).pow(2).mean()
            loss.backward()
            optimizer.step()


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def measure_recipe(name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Net-steps/s of the three methods for recipe ``name``, alternated, plus the matmul rate."""
    recipe = INR_RECIPES[name]
    spec = MLPSpec.parse(recipe.spec)
    conventions = recipe.conventions()
    coords = conventions.coordinates()
    images = load_dataset("mnist", "train").float_images()[: args.chunk]
    targets = conventions.to_target(images.reshape(args.chunk, -1))
    inits = INITS[recipe.init](spec, args.chunk, torch.Generator().manual_seed(0))

    def run_batched(compiled: bool) -> float:
        start = time.perf_counter()
        fit_sines(
            targets, coords, spec, steps=args.steps, lr=recipe.lr, init=inits, compiled=compiled
        )
        return args.chunk * args.steps / (time.perf_counter() - start)

    def run_loop() -> float:
        n = args.loop_nets
        start = time.perf_counter()
        fit_loop(inits[:n], coords, targets[:n], args.steps, recipe.lr)
        return n * args.steps / (time.perf_counter() - start)

    runners = {
        "loop": run_loop,
        "batched": lambda: run_batched(False),
        "batched+compile": lambda: run_batched(True),
    }
    for runner in runners.values():  # warm-up (and compilation)
        runner()
    rates: dict[str, list[float]] = {name: [] for name in [*runners, "matmul"]}
    for _ in range(args.repeats):  # alternate
        for method, runner in runners.items():
            rates[method].append(runner())
        rates["matmul"].append(matmul_rate())
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=[*INR_RECIPES, "both"], default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--loop-nets", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--project", action="store_true", help="project the time of a 70,000-INR zoo"
    )
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    names = list(INR_RECIPES) if args.recipe == "both" else [args.recipe]
    print(
        f"# bench_zoo: SIRENs on {PIXELS} MNIST pixels, {args.steps} full-batch Adam steps, "
        f"chunk {args.chunk}, {args.threads} threads, median of {args.repeats}, "
        f"torch {torch.__version__}"
    )
    print()
    print(
        "| recipe | spec | method | net-steps/s | vs loop | achieved GFLOP/s | "
        "matmul GFLOP/s | % of matmul |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    projections = []
    for name in names:
        recipe = INR_RECIPES[name]
        spec = MLPSpec.parse(recipe.spec)
        rates = measure_recipe(name, args)
        peak = statistics.median(rates.pop("matmul"))
        loop = statistics.median(rates["loop"])
        for method, values in rates.items():
            net_steps = statistics.median(values)
            achieved = net_steps * flops_per_net_step(spec)
            print(
                f"| {name} | {spec} | {method} | {net_steps:.0f} | {net_steps / loop:.1f}x | "
                f"{achieved / 1e9:.1f} | {peak / 1e9:.1f} | {100 * achieved / peak:.0f}% |"
            )
        compiled = statistics.median(rates["batched+compile"])
        hours = ZOO_SIZE * recipe.steps / compiled / 3600
        projections.append((name, recipe.steps, compiled, hours))
    if args.project:
        print()
        print(
            f"Projection (every net runs its whole step budget; one process of "
            f"{args.threads} thread(s) at the measured batched+compile rate):"
        )
        for name, steps, rate, hours in projections:
            print(
                f"- {name}: {ZOO_SIZE:,} nets x {steps} steps at {rate:.0f} net-steps/s = "
                f"{hours:.1f} h"
            )


if __name__ == "__main__":
    main()
