"""End-to-end throughput of ``dws predict-accuracy`` and ``dws adapt`` over many checkpoint files.

Writes N classifier checkpoints (196-32-32-10 ReLU, the shipped processors' input) to a
temporary directory, then times, alternately, in fresh processes, from process start to exit:

* ``dws predict-accuracy DIR --json``;
* ``dws adapt DIR --out-dir OUT --json`` (a fresh OUT each run);
* a Python process that merely reads the same files with ``safetensors.torch.load_file``
  (torch imported, as dws needs it): the floor that the target is measured against.

Then it splits each command's time into start-up (imports, processor), read (load and check
every file), forward and write, from one more fresh process per command that runs the same
library steps with a clock between them. Prints files per second and the ratios.

    python benchmarks/bench_cli.py [--count 2000] [--repeats 3] [--threads 2] [--device cpu]

Without the shipped processors, randomly initialised ones of the same architectures are written
beside the checkpoints (the cost of a forward does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = "196-32-32-10:relu"
TARGET_FILES_PER_S = 1000
TARGET_RATIO_TO_READ = 1.5
READ_ONLY = (
    "import sys, pathlib, torch, safetensors.torch\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.safetensors')):\n"
    "    safetensors.torch.load_file(str(p))\n"
)
PROCESSORS = {"accuracy": "fmnist-accuracy", "adapt": "fmnist-adapt-contrast"}


def make_checkpoints(directory: Path, count: int) -> None:
    import torch

    from dwscli.weights.checkpoint import save_space
    from dwscli.weights.space import WeightSpace
    from dwscli.weights.spec import MLPSpec

    spec = MLPSpec.parse(SPEC)
    generator = torch.Generator().manual_seed(0)
    for k in range(count):
        save_space(
            directory / f"net{k:05d}.safetensors", WeightSpace.random(spec, 1, generator=generator)
        )


def fallback_processor(directory: Path, task: str) -> str:
    """A random processor for ``task`` with the architecture of the shipped one."""
    import safetensors.torch
    import yaml

    from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
    from dwscli.weights.spec import MLPSpec

    spec = MLPSpec.parse(SPEC)
    if task == "accuracy":
        config = DWSNetConfig(
            hidden_channels=16,
            num_layers=3,
            fixed_mixing="shared",
            pooling="mean+max",
            head_hidden=[64],
            probes=512,
            probe_labels=True,
        )
        model, kind = InvariantDWSNet(spec, config), "invariant"
    else:
        config = DWSNetConfig(hidden_channels=16, num_layers=3, fixed_mixing="shared")
        model, kind = EquivariantDWSNet(spec, config), "equivariant"
    name = f"random-{task}"
    safetensors.torch.save_file(model.state_dict(), str(directory / f"{name}.safetensors"))
    card = {
        "name": name,
        "task": task,
        "model": {"kind": kind, "config": config.to_dict()},
        "input": {"spec": SPEC},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


def resolve_processors(work: Path) -> dict[str, str]:
    from dwscli.processors.registry import list_processors

    shipped = {card.name for card in list_processors()}
    return {
        task: name if name in shipped else fallback_processor(work, task)
        for task, name in PROCESSORS.items()
    }


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:4])} failed:\n{done.stderr.decode()}")
    return seconds


# ------------------------------------------------------------------------------------------------
# Time split: the library steps of a command, in a fresh process, with a clock between them.

PHASES_CHILD = r"""
import json, sys, time
start = float(sys.argv[1])
task, nets, processor, out_dir, device, batch = sys.argv[2:8]
from pathlib import Path
import torch
from dwscli.processors import pipeline
from dwscli.processors.accuracy import open_for_task
try:  # the memory-bounded forward the commands use, where this version has it
    from dwscli.nn.streaming import forward_within_memory
except ImportError:
    def forward_within_memory(model, space):
        return model(space)
from dwscli.runtime import resolve_device, tune_allocator
from dwscli.paths import expand_paths
tune_allocator()
target = resolve_device(device)
model_processor = open_for_task(processor, task, target)
clock = {"start-up": time.time() - start}
t = time.perf_counter()
paths = expand_paths([nets])
loaded = pipeline.load_items(paths, lambda _: model_processor)
clock["read"] = time.perf_counter() - t
forward = write = 0.0
model = model_processor.model
with torch.no_grad():
    for chunk in pipeline.chunks(loaded, int(batch)):
        t = time.perf_counter()
        out = forward_within_memory(model, pipeline.stack(chunk, target))
        out = out.to("cpu") if task == "adapt" else out[:, 0].clamp(0.0, 1.0).cpu().tolist()
        forward += time.perf_counter() - t
        if task == "adapt":
            from dwscli.weights.checkpoint import save_checkpoint
            t = time.perf_counter()
            for row, item in enumerate(chunk):
                new = out[row]
                destination = Path(out_dir) / item.checkpoint.path.name
                save_checkpoint(destination, item.checkpoint, space=new)
            write += time.perf_counter() - t
clock["forward"] = forward
clock["write"] = write
print(json.dumps(clock))
"""


def phase_split(
    task: str, nets: Path, processor: str, out_dir: Path, args: argparse.Namespace, env: dict
) -> dict[str, float]:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    command = [
        sys.executable,
        "-c",
        PHASES_CHILD,
        repr(time.time()),
        task,
        str(nets),
        processor,
        str(out_dir),
        args.device,
        str(args.batch_size),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the dws runs only)")
    parser.add_argument("--batch-size", type=int, default=None, help="dws --batch-size")
    args = parser.parse_args()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
    }
    work = Path(tempfile.mkdtemp(prefix="dws-bench-cli-"))
    try:
        nets = work / "nets"
        nets.mkdir()
        make_checkpoints(nets, args.count)
        processors = resolve_processors(work)
        extra = ["--device", args.device]
        if args.batch_size:
            extra += ["--batch-size", str(args.batch_size)]
        dws = [sys.executable, "-m", "dwscli"]
        out_dir = work / "adapted"
        commands = {
            "dws predict-accuracy": [
                *dws,
                "predict-accuracy",
                str(nets),
                "-p",
                processors["accuracy"],
                "--json",
                *extra,
            ],
            "dws adapt --out-dir": [
                *dws,
                "adapt",
                str(nets),
                "-p",
                processors["adapt"],
                "--out-dir",
                str(out_dir),
                "--json",
                *extra,
            ],
            "read the files with safetensors": [sys.executable, "-c", READ_ONLY, str(nets)],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for warm_up in (True, *([False] * args.repeats)):  # the first round warms the caches
            for name, command in commands.items():
                shutil.rmtree(out_dir, ignore_errors=True)
                seconds = timed(command, env)
                if not warm_up:
                    samples[name].append(seconds)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        read = medians["read the files with safetensors"]
        print(
            f"# bench_cli: {args.count} checkpoints ({SPEC}), processors "
            f"{', '.join(Path(p).stem for p in processors.values())}, {args.threads} threads, "
            f"device {args.device}, median of {args.repeats} alternating runs, "
            "process start to exit"
        )
        print()
        print("| what | seconds | checkpoints/s | time / read time |")
        print("|---|---|---|---|")
        for name, seconds in medians.items():
            print(
                f"| {name} | {seconds:.2f} | {args.count / seconds:.0f} | {seconds / read:.2f}x |"
            )
        print()
        print("Time split (one more fresh process per command, the same library steps timed):")
        print()
        print("| command | start-up s | read s | forward s | write s |")
        print("|---|---|---|---|---|")
        split_dir = work / "split"
        batch = args.batch_size or 1024
        split_args = argparse.Namespace(device=args.device, batch_size=batch)
        for task, name in (("accuracy", "predict-accuracy"), ("adapt", "adapt")):
            clock = phase_split(task, nets, processors[task], split_dir, split_args, env)
            print(
                f"| {name} | {clock['start-up']:.2f} | {clock['read']:.2f} | "
                f"{clock['forward']:.2f} | {clock['write']:.2f} |"
            )
        print()
        for name in ("dws predict-accuracy", "dws adapt --out-dir"):
            rate = args.count / medians[name]
            ratio = medians[name] / read
            met = rate >= TARGET_FILES_PER_S and ratio <= TARGET_RATIO_TO_READ
            print(
                f"target {name}: >= {TARGET_FILES_PER_S} files/s and <= "
                f"{TARGET_RATIO_TO_READ}x the read time: {rate:.0f} files/s, {ratio:.2f}x "
                f"({'met' if met else 'NOT met'})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
