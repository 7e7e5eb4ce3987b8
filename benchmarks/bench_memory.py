"""Peak memory of ``dws adapt`` and ``dws predict-accuracy`` on wide nets, against file size.

For each net (196-4096-4096-10 and 784-2048-2048-2048-10 ReLU classifiers, float32), runs each
command in a fresh process and reads its peak RSS (``wait4``'s ``ru_maxrss``; this parent stays
small and never imports torch, so the figure is the child's own). The same command on a narrow
net of the same depth and fixed widths gives the start-up baseline (imports, processor), and

    ratio = (peak RSS - baseline peak RSS) / checkpoint file size

is what the target (<= 10x) is about; the total peak is printed too. The 196-wide nets use the
shipped processors; nets of other shapes get random processors of the same architectures (the
memory of a forward does not depend on the weights' values).

    python benchmarks/bench_memory.py [--nets 196-4096-4096-10 784-2048-2048-2048-10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_RATIO = 10.0
DEFAULT_NETS = ["196-4096-4096-10", "784-2048-2048-2048-10"]
SHIPPED_INPUT = "196-*-*-10"

MAKE = r"""
import sys, torch, yaml, safetensors.torch
from pathlib import Path
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.weights.checkpoint import save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
out, widths = Path(sys.argv[1]), sys.argv[2]
spec = MLPSpec.parse(widths + ":relu")
save_space(out / "wide.safetensors", WeightSpace.random(spec, 1))
narrow = "-".join([str(spec.input_dim), *["8"] * (spec.depth - 1), str(spec.output_dim)])
save_space(out / "narrow.safetensors", WeightSpace.random(MLPSpec.parse(narrow + ":relu"), 1))
if sys.argv[3] == "random":
    card_spec = "-".join([str(spec.input_dim), *["32"] * (spec.depth - 1), str(spec.output_dim)])
    card_spec += ":relu"
    for task, kind, config in (
        ("accuracy", "invariant", DWSNetConfig(hidden_channels=16, num_layers=3,
            fixed_mixing="shared", pooling="mean+max", head_hidden=[64], probes=512,
            probe_labels=True)),
        ("adapt", "equivariant", DWSNetConfig(hidden_channels=16, num_layers=3,
            fixed_mixing="shared")),
    ):
        cls = InvariantDWSNet if kind == "invariant" else EquivariantDWSNet
        model = cls(MLPSpec.parse(card_spec), config)
        safetensors.torch.save_file(model.state_dict(), str(out / f"random-{task}.safetensors"))
        card = {"name": f"random-{task}", "task": task, "input": {"spec": card_spec},
                "model": {"kind": kind, "config": config.to_dict()}}
        (out / f"random-{task}.yaml").write_text(yaml.safe_dump(card))
"""


def peak_rss_mib(command: list[str], env: dict[str, str]) -> float:
    """Peak RSS (MiB) of ``command`` run to completion in a fresh process."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[2:5])} failed:\n{stderr}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=DEFAULT_NETS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    work = Path(tempfile.mkdtemp(prefix="dws-bench-memory-"))
    rows = []
    try:
        for widths in args.nets:
            folder = work / widths
            folder.mkdir()
            parts = widths.split("-")
            shipped = parts[0] == "196" and len(parts) == 4 and parts[-1] == "10"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MAKE,
                    str(folder),
                    widths,
                    "shipped" if shipped else "random",
                ],
                check=True,
                env=env,
            )
            size_mib = (folder / "wide.safetensors").stat().st_size / 1024**2
            for task, command_name, extra in (
                ("adapt", "adapt", ["--out-dir", str(folder / "out")]),
                ("accuracy", "predict-accuracy", ["--json"]),
            ):
                processor = (
                    {"adapt": "fmnist-adapt-contrast", "accuracy": "fmnist-accuracy"}[task]
                    if shipped
                    else str(folder / f"random-{task}.yaml")
                )
                peaks = {}
                for net in ("narrow", "wide"):
                    shutil.rmtree(folder / "out", ignore_errors=True)
                    command = [
                        sys.executable,
                        "-m",
                        "dwscli",
                        command_name,
                        str(folder / f"{net}.safetensors"),
                        "-p",
                        processor,
                        "--device",
                        "cpu",
                        *extra,
                    ]
                    peaks[net] = peak_rss_mib(command, env)
                growth = peaks["wide"] - peaks["narrow"]
                rows.append((widths, command_name, size_mib, peaks["wide"], growth))
        print(
            f"# bench_memory: peak RSS of a fresh dws process per command and net, "
            f"{args.threads} threads; baseline = the same command on a narrow net"
        )
        print()
        print(
            "| net | command | checkpoint MiB | peak RSS MiB | growth over baseline MiB "
            "| growth / checkpoint | peak / checkpoint |"
        )
        print("|---|---|---|---|---|---|---|")
        worst = 0.0
        for widths, command_name, size, peak, growth in rows:
            worst = max(worst, growth / size)
            print(
                f"| {widths} | {command_name} | {size:.1f} | {peak:.0f} | {growth:.0f} "
                f"| {growth / size:.1f}x | {peak / size:.1f}x |"
            )
        met = "met" if worst <= TARGET_RATIO else "NOT met"
        print(f"\ntarget: growth / checkpoint <= {TARGET_RATIO:.0f}x: worst {worst:.1f}x ({met})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
