"""Zoo-making throughput: batched SIREN fitting vs one net at a time, and its FLOP rate.

Fits SIRENs 2-32-32-32-1 (w0 = 30) to MNIST images (784 pixels, full-batch Adam) for a fixed
number of steps, three ways, alternating them after warm-up, fixed threads:

* ``loop``: one net at a time in a Python loop, the way one fits a single SIREN
  (``nn.Module`` + autograd + ``torch.optim.Adam``);
* ``batched``: dws' vectorised fitting of a chunk of nets (hand-written backward, stacked AdamW),
  eager;
* ``batched+compile``: the same step through ``torch.compile``.

Prints nets/s and the ratio to the loop, and the achieved FLOP rate (matmul FLOPs of forward and
backward) next to what one large fp32 matmul (2048×2048) reaches in the same run.

    python benchmarks/bench_zoo.py [--threads 2] [--chunk 128] [--steps 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from dwscli.data.datasets import load_dataset
from dwscli.data.inr_fit import fit_sines
from dwscli.data.stacked import siren_init
from dwscli.runtime import tune_allocator
from dwscli.weights.inr import InrConventions
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SPEC = MLPSpec.parse("2-32-32-32-1:sine;w0=30")
PIXELS = 28 * 28


def flops_per_net_step() -> int:
    """Matmul FLOPs of one forward+backward step of one net on all pixels (2 per MAC; the
    backward computes weight and input gradients, except the input gradient of layer 1)."""
    macs = sum(o * i for o, i in SPEC.weight_shapes) * PIXELS
    first = SPEC.weight_shapes[0][0] * SPEC.weight_shapes[0][1] * PIXELS
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
            layers.append(Sine(30.0))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--loop-nets", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)

    conventions = InrConventions()
    coords = conventions.coordinates()
    images = load_dataset("mnist", "train").float_images()[: args.chunk]
    targets = conventions.to_target(images.reshape(args.chunk, -1))
    inits = siren_init(SPEC, args.chunk, torch.Generator().manual_seed(0))
    lr = 1e-3

    def run_batched(compiled: bool) -> float:
        start = time.perf_counter()
        fit_sines(targets, coords, SPEC, steps=args.steps, lr=lr, init=inits, compiled=compiled)
        return args.chunk / (time.perf_counter() - start)

    def run_loop() -> float:
        n = args.loop_nets
        start = time.perf_counter()
        fit_loop(inits[:n], coords, targets[:n], args.steps, lr)
        return n / (time.perf_counter() - start)

    runners = {
        "loop": run_loop,
        "batched": lambda: run_batched(False),
        "batched+compile": lambda: run_batched(True),
    }
    for runner in runners.values():  # warm-up (and compilation)
        runner()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    matmul: list[float] = []
    for _ in range(args.repeats):  # alternate
        for name, runner in runners.items():
            rates[name].append(runner())
        matmul.append(matmul_rate())
    peak = statistics.median(matmul)
    print(
        f"# bench_zoo: SIREN {SPEC} on {PIXELS} MNIST pixels, {args.steps} full-batch Adam "
        f"steps, chunk {args.chunk}, {args.threads} threads, median of {args.repeats}, "
        f"torch {torch.__version__}"
    )
    print()
    print(f"2048x2048 fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    print()
    print("| method | nets/s | vs loop | achieved GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|")
    loop = statistics.median(rates["loop"])
    for name, values in rates.items():
        nets_per_s = statistics.median(values)
        achieved = nets_per_s * args.steps * flops_per_net_step()
        print(
            f"| {name} | {nets_per_s:.2f} | {nets_per_s / loop:.1f}x | {achieved / 1e9:.1f} | "
            f"{100 * achieved / peak:.0f}% |"
        )


if __name__ == "__main__":
    main()
