"""Our invariant DWSNet vs the `nfn` package's HNP network, same depth and channel width.

Input: SIREN 2-32-32-32-1 weights. For each batch size, the two models are timed alternately
(A, B, A, B, …) after warm-up with fixed threads, forward and forward+backward, and the median is
reported; peak memory is measured in a fresh subprocess per (model, batch) as the growth of peak
RSS over the process's RSS before the first forward. Prints a table of ratios.

    pip install -e '.[bench]'
    python benchmarks/bench_layers.py [--threads 2] [--repeats 15] [--layers 4] [--channels 32]

Reference figures (DESIGN.md §7, 2 cores): the reference DWSNets implementation (hidden 32, 4
layers, SAB, BN) takes 0.63 s (batch 32) and 2.2 s (batch 128) per forward+backward and peaks at
6.7 GB RSS at batch 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from dwscli.runtime import tune_allocator

SPEC = "2-32-32-32-1:sine"
REFERENCE_FWD_BWD_S = {32: 0.63, 128: 2.2}  # DESIGN.md §7, 4 layers x 32
REFERENCE_PEAK_GB = {128: 6.7}


def build_ours(layers: int, channels: int, *, norm: bool = False) -> tuple[nn.Module, object]:
    from dwscli.nn.models import DWSNetConfig, InvariantDWSNet
    from dwscli.weights.space import WeightSpace
    from dwscli.weights.spec import MLPSpec

    spec = MLPSpec.parse(SPEC)
    config = DWSNetConfig(
        hidden_channels=channels, num_layers=layers, head_hidden=[channels], norm=norm
    )
    model = InvariantDWSNet(spec, config)

    def make_input(batch: int) -> object:
        return WeightSpace.random(spec, batch, generator=torch.Generator().manual_seed(0))

    return model, make_input


def build_nfn(layers: int, channels: int) -> tuple[nn.Module, object]:
    from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
    from nfn.layers import HNPLinear, HNPPool, TupleOp

    widths = [2, 32, 32, 32, 1]

    def make_input(batch: int) -> object:
        g = torch.Generator().manual_seed(0)
        weights = [
            torch.randn(batch, 1, o, i, generator=g) for i, o in zip(widths[:-1], widths[1:])
        ]
        biases = [torch.randn(batch, 1, o, generator=g) for o in widths[1:]]
        return WeightSpaceFeatures(weights, biases)

    spec = network_spec_from_wsfeat(make_input(1), set_all_dims=True)
    modules: list[nn.Module] = []
    c_in = 1
    for _ in range(layers):
        modules += [HNPLinear(spec, c_in, channels), TupleOp(nn.ReLU())]
        c_in = channels
    modules += [
        HNPPool(spec),
        nn.Flatten(start_dim=-2),
        nn.Linear(channels * HNPPool.get_num_outs(spec), channels),
        nn.ReLU(),
        nn.Linear(channels, 1),
    ]
    return nn.Sequential(*modules), make_input


def build_ours_norm(layers: int, channels: int) -> tuple[nn.Module, object]:
    return build_ours(layers, channels, norm=True)


BUILDERS = {"dws (ours)": build_ours, "dws + channel norm": build_ours_norm, "nfn-HNP": build_nfn}
NFN_DESIGN_FWD_BWD_S = {(3, 32): 0.065, (3, 128): 0.219}  # DESIGN.md §7, 3 layers x 32


def step(model: nn.Module, x: object, backward: bool) -> None:
    if backward:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    else:
        with torch.no_grad():
            model(x)


def time_models(
    names: list[str], batch: int, layers: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Median wall time per model for fwd and fwd+bwd, the models alternating run by run."""
    built = {name: BUILDERS[name](layers, args.channels) for name in names}
    inputs = {name: make(batch) for name, (_, make) in built.items()}
    results: dict[str, dict[str, float]] = {name: {} for name in names}
    for backward in (False, True):
        key = "fwd+bwd" if backward else "fwd"
        samples: dict[str, list[float]] = {name: [] for name in built}
        for name, (model, _) in built.items():  # warm-up
            for _ in range(args.warmup):
                step(model, inputs[name], backward)
        for _ in range(args.repeats):  # alternate A, B, C, A, B, C, ...
            for name, (model, _) in built.items():
                cpu0, wall0 = time.process_time(), time.perf_counter()
                step(model, inputs[name], backward)
                wall = time.perf_counter() - wall0
                cpu = time.process_time() - cpu0
                # Contention check: a run that got much less CPU than its threads is discarded.
                if wall > 0.02 and cpu < 0.6 * wall * min(args.threads, os.cpu_count() or 1):
                    continue
                samples[name].append(wall)
        for name, values in samples.items():
            if len(values) < max(3, args.repeats // 2):
                raise SystemExit(
                    f"{name} {key}: most runs were starved of CPU; rerun on a quiet machine"
                )
            results[name][key] = statistics.median(values)
    return results


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_kb() -> int:
    return _status_kb("VmHWM")


def reset_peak_rss() -> int:
    """Reset the process's RSS high-water mark (Linux clear_refs) and return the current RSS.

    ru_maxrss cannot be used here: Linux carries it over from the parent across fork/exec.
    """
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status_kb("VmRSS")


def peak_memory(name: str, batch: int, args: argparse.Namespace) -> tuple[float, float]:
    """Peak RSS and its growth over the pre-step RSS (GB) during two forward+backward passes,
    measured in a fresh subprocess per model (this script with ``--child``)."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        name,
        "--batches",
        str(batch),
        "--threads",
        str(args.threads),
        "--layers",
        str(args.layers),
        "--channels",
        str(args.channels),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["peak_kb"] / 1024**2, (data["peak_kb"] - data["base_kb"]) / 1024**2


def child_peak(name: str, batch: int, args: argparse.Namespace) -> None:
    model, make = BUILDERS[name](args.layers, args.channels)
    x = make(batch)
    base = reset_peak_rss()
    step(model, x, True)
    step(model, x, True)
    print(json.dumps({"base_kb": base, "peak_kb": peak_rss_kb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tune_allocator()  # applies to every model alike: they all run in this one process
    torch.set_num_threads(args.threads)
    if args.child:
        child_peak(args.child, args.batches[0], args)
        return
    print(
        f"# bench_layers: {SPEC}, {args.layers} layers x {args.channels} channels, "
        f"{args.threads} threads, median of {args.repeats} alternating runs, "
        f"torch {torch.__version__}"
    )
    print()
    print("| batch | pass | model | ms | nfn-HNP / model | reference DWSNets / model |")
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        r = time_models(list(BUILDERS), batch, args.layers, args)
        for key in ("fwd", "fwd+bwd"):
            for name in BUILDERS:
                ms = r[name][key]
                ref = REFERENCE_FWD_BWD_S.get(batch) if key == "fwd+bwd" else None
                ref_col = f"{ref / ms:.1f}x" if ref else "-"
                nfn_ratio = r["nfn-HNP"][key] / ms
                print(
                    f"| {batch} | {key} | {name} | {ms * 1e3:.1f} | {nfn_ratio:.2f}x | {ref_col} |"
                )
    print()
    print("Machine calibration: nfn-HNP at 3 layers x 32 (the DESIGN.md §7 configuration), fwd+bwd")
    print()
    print("| batch | measured here ms | DESIGN.md figure ms | this machine is slower by |")
    print("|---|---|---|---|")
    for batch in (32, 128):
        ms = time_models(["nfn-HNP"], batch, 3, args)["nfn-HNP"]["fwd+bwd"]
        design = NFN_DESIGN_FWD_BWD_S[(3, batch)]
        print(f"| {batch} | {ms * 1e3:.1f} | {design * 1e3:.0f} | {ms / design:.2f}x |")
    print()
    print("| batch | model | peak RSS GB | growth over pre-step RSS GB |")
    print("|---|---|---|---|")
    for batch in args.batches:
        for name in BUILDERS:
            peak, growth = peak_memory(name, batch, args)
            print(f"| {batch} | {name} | {peak:.2f} | {growth:.3f} |")
    print(f"\nreference DWSNets peak RSS at batch 128: {REFERENCE_PEAK_GB[128]} GB (DESIGN.md §7)")


if __name__ == "__main__":
    main()
