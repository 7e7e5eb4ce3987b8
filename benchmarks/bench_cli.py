"""End-to-end throughput of ``dws predict-accuracy`` over many checkpoint files.

Writes N classifier checkpoints (196-32-32-10 ReLU, the shipped accuracy processor's input) to a
temporary directory, then times, alternately, in fresh processes:

* ``dws predict-accuracy DIR --json`` from process start to the last row;
* a Python process that merely reads the same files with ``safetensors.torch.load_file``
  (torch imported, as dws needs it).

Prints both, checkpoints per second, and the ratio.

    python benchmarks/bench_cli.py [--count 2000] [--repeats 3] [--processor NAME_OR_CARD]

Without a shipped ``fmnist-accuracy`` processor, a randomly initialised one of the same
architecture is written beside the checkpoints (the cost of a forward does not depend on the
weights' values).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SPEC = "196-32-32-10:relu"
READ_ONLY = (
    "import sys, pathlib, torch, safetensors.torch\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.safetensors')):\n"
    "    safetensors.torch.load_file(str(p))\n"
)


def make_checkpoints(directory: Path, count: int) -> None:
    from dwscli.weights.checkpoint import save_space
    from dwscli.weights.space import WeightSpace
    from dwscli.weights.spec import MLPSpec

    spec = MLPSpec.parse(SPEC)
    generator = torch.Generator().manual_seed(0)
    for k in range(count):
        save_space(
            directory / f"net{k:05d}.safetensors", WeightSpace.random(spec, 1, generator=generator)
        )


def fallback_processor(directory: Path) -> str:
    """A random processor with the architecture of the shipped one (same cost per forward)."""
    import safetensors.torch
    import yaml

    from dwscli.nn.models import DWSNetConfig, InvariantDWSNet
    from dwscli.weights.spec import MLPSpec

    config = DWSNetConfig(hidden_channels=32, num_layers=4, fixed_mixing="shared")
    model = InvariantDWSNet(MLPSpec.parse(SPEC), config)
    safetensors.torch.save_file(model.state_dict(), str(directory / "random-accuracy.safetensors"))
    card = {
        "name": "random-accuracy",
        "task": "accuracy",
        "model": {"kind": "invariant", "config": config.to_dict()},
        "input": {"spec": SPEC},
    }
    path = directory / "random-accuracy.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processor", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    work = Path(tempfile.mkdtemp(prefix="dws-bench-cli-"))
    try:
        nets = work / "nets"
        nets.mkdir()
        make_checkpoints(nets, args.count)
        processor = args.processor
        if processor is None:
            from dwscli.processors.registry import list_processors

            shipped = any(card.name == "fmnist-accuracy" for card in list_processors())
            processor = "fmnist-accuracy" if shipped else fallback_processor(work)
        dws = [
            sys.executable,
            "-m",
            "dwscli",
            "predict-accuracy",
            str(nets),
            "-p",
            processor,
            "--json",
        ]
        read = [sys.executable, "-c", READ_ONLY, str(nets)]
        timed(dws)  # warm the page cache and any import caches
        timed(read)
        samples: dict[str, list[float]] = {"dws": [], "read": []}
        for _ in range(args.repeats):
            samples["dws"].append(timed(dws))
            samples["read"].append(timed(read))
        ours, baseline = statistics.median(samples["dws"]), statistics.median(samples["read"])
        print(
            f"# bench_cli: {args.count} checkpoints ({SPEC}), processor {Path(processor).stem}, "
            f"median of {args.repeats} alternating runs, process start to exit"
        )
        print()
        print("| what | seconds | checkpoints/s |")
        print("|---|---|---|")
        print(f"| dws predict-accuracy (end to end) | {ours:.2f} | {args.count / ours:.0f} |")
        print(f"| read the files with safetensors | {baseline:.2f} | {args.count / baseline:.0f} |")
        print(
            f"\npredict-accuracy takes {ours / baseline:.2f}x the time of merely reading the files"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
