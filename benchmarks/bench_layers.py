"""Our invariant DWSNet vs the `nfn` package's HNP network, same depth and channel width.

Input: SIREN 2-32-32-32-1 weights. For each batch size, the models are timed alternately
(A, B, C, A, B, C, …) after warm-up with fixed threads, forward and forward+backward, and the
median is reported; peak memory is measured in a fresh subprocess per (model, batch) as the
growth of peak RSS over the process's RSS before the first forward. Prints a table of ratios,
every number measured in this run.

    pip install -e '.[bench]'
    python benchmarks/bench_layers.py [--threads 2] [--repeats 15] [--layers 4] [--channels 32]
        [--reference DIR]

``--reference DIR`` adds the public reference implementation (a checkout of
github.com/AvivNavon/DWSNets, brought into a temporary folder beforehand; it is never part of
this repository) with its MNIST-INR trainer's defaults: ``DWSModelForClassification`` with
hidden 32, ``--layers`` DWS layers, max reduction, SAB set layers, batch norm. Without it the
reference column is left out.
"""

from __future__ import annotations

import argparse
import importlib
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
WIDTHS = [2, 32, 32, 32, 1]
REFERENCE = "reference DWSNets"
TARGET_SPEEDUP_OVER_NFN = 1.5  # fwd+bwd at batch 128


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

    def make_input(batch: int) -> object:
        g = torch.Generator().manual_seed(0)
        weights = [
            torch.randn(batch, 1, o, i, generator=g) for i, o in zip(WIDTHS[:-1], WIDTHS[1:])
        ]
        biases = [torch.randn(batch, 1, o, generator=g) for o in WIDTHS[1:]]
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


def import_reference(directory: str) -> type:
    """``DWSModelForClassification`` from a checkout of the public DWSNets repository.

    Its code lives in top-level packages ``nn`` and ``experiments``, so the checkout goes first
    on ``sys.path`` (nothing in this process imports a top-level ``nn`` otherwise).
    """
    root = os.path.abspath(directory)
    if not os.path.isfile(os.path.join(root, "nn", "models.py")):
        raise SystemExit(f"error: {directory}: not a DWSNets checkout (no nn/models.py)")
    sys.path.insert(0, root)
    try:
        module = importlib.import_module("nn.models")
        return module.DWSModelForClassification
    except (ImportError, AttributeError) as error:
        raise SystemExit(
            f"error: {directory}: cannot import DWSModelForClassification ({error})"
        ) from error


def build_reference(layers: int, channels: int, directory: str) -> tuple[nn.Module, object]:
    """The reference model with its MNIST-INR trainer's defaults, on the same SIREN weights
    (its layout: weights ``[B, d_in, d_out, 1]``, biases ``[B, d_out, 1]``)."""
    model_class = import_reference(directory)
    weight_shapes = tuple((i, o) for i, o in zip(WIDTHS[:-1], WIDTHS[1:]))
    bias_shapes = tuple((o,) for o in WIDTHS[1:])
    model = model_class(
        weight_shapes=weight_shapes,
        bias_shapes=bias_shapes,
        input_features=1,
        hidden_dim=channels,
        n_hidden=layers,
        n_classes=1,
        reduction="max",
        n_fc_layers=1,
        set_layer="sab",
        n_out_fc=1,
        dropout_rate=0.0,
        bn=True,
    )

    def make_input(batch: int) -> object:
        g = torch.Generator().manual_seed(0)
        weights = tuple(
            torch.randn(batch, i, o, 1, generator=g) for i, o in zip(WIDTHS[:-1], WIDTHS[1:])
        )
        biases = tuple(torch.randn(batch, o, 1, generator=g) for o in WIDTHS[1:])
        return weights, biases

    return model, make_input


BUILDERS = {"dws (ours)": build_ours, "dws + channel norm": build_ours_norm, "nfn-HNP": build_nfn}


def builders(args: argparse.Namespace) -> dict:
    """The models of this run: ours, nfn-HNP, and the reference when ``--reference`` is given."""
    table = dict(BUILDERS)
    if args.reference:
        directory = args.reference
        table[REFERENCE] = lambda layers, channels: build_reference(layers, channels, directory)
    return table


def to_device(x: object, device: torch.device) -> object:
    """Move a model input (ours, nfn's or the reference's layout) to ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, tuple):
        return tuple(to_device(part, device) for part in x)
    if hasattr(x, "map"):  # WeightSpace, nfn's WeightSpaceFeatures
        return x.map(lambda t: t.to(device))
    raise TypeError(f"cannot move {type(x).__name__} to {device}")


def step(model: nn.Module, x: object, backward: bool) -> None:
    if backward:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    else:
        with torch.no_grad():
            model(x)
    if x_device(x).type == "cuda":
        torch.cuda.synchronize()


def x_device(x: object) -> torch.device:
    if isinstance(x, torch.Tensor):
        return x.device
    if isinstance(x, tuple):
        return x_device(x[0])
    return x.weights[0].device  # type: ignore[attr-defined]


def time_models(
    names: list[str], batch: int, layers: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Median wall time per model for fwd and fwd+bwd, the models alternating run by run."""
    table = builders(args)
    device = torch.device(args.device)
    built = {name: table[name](layers, args.channels) for name in names}
    for model, _ in built.values():
        model.to(device)
    inputs = {name: to_device(make(batch), device) for name, (_, make) in built.items()}
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
                starved = args.device == "cpu" and cpu < 0.6 * wall * min(
                    args.threads, os.cpu_count() or 1
                )
                if wall > 0.02 and starved and not args.allow_busy:
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
    if args.reference:
        command += ["--reference", args.reference]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["peak_kb"] / 1024**2, (data["peak_kb"] - data["base_kb"]) / 1024**2


def child_peak(name: str, batch: int, args: argparse.Namespace) -> None:
    model, make = builders(args)[name](args.layers, args.channels)
    x = make(batch)
    base = reset_peak_rss()
    step(model, x, True)
    step(model, x, True)
    print(json.dumps({"base_kb": base, "peak_kb": peak_rss_kb()}))


def print_timings(args: argparse.Namespace) -> None:
    names = list(builders(args))
    header = "| batch | pass | model | ms | nfn-HNP / model |"
    rule = "|---|---|---|---|---|"
    if args.reference:
        header += " reference DWSNets / model |"
        rule += "---|"
    print(header)
    print(rule)
    speedups: dict[int, float] = {}
    for batch in args.batches:
        r = time_models(names, batch, args.layers, args)
        for key in ("fwd", "fwd+bwd"):
            for name in names:
                ms = r[name][key]
                row = (
                    f"| {batch} | {key} | {name} | {ms * 1e3:.1f} | {r['nfn-HNP'][key] / ms:.2f}x |"
                )
                if args.reference:
                    row += f" {r[REFERENCE][key] / ms:.2f}x |"
                print(row)
        speedups[batch] = r["nfn-HNP"]["fwd+bwd"] / r["dws (ours)"]["fwd+bwd"]
    if 128 in speedups:
        met = "met" if speedups[128] >= TARGET_SPEEDUP_OVER_NFN else "NOT met"
        print(
            f"\ntarget: dws (ours) fwd+bwd at batch 128 >= {TARGET_SPEEDUP_OVER_NFN}x faster than "
            f"nfn-HNP: {speedups[128]:.2f}x ({met})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument(
        "--reference",
        metavar="DIR",
        help="checkout of github.com/AvivNavon/DWSNets: adds its model, measured in this run",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (peak RSS: cpu only)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument(
        "--allow-busy",
        action="store_true",
        help="keep runs starved of CPU by other processes (smoke tests; timings then mean little)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference and not os.path.isdir(args.reference):
        raise SystemExit(f"error: {args.reference}: no such directory (--reference)")
    tune_allocator()  # applies to every model alike: they all run in this one process
    torch.set_num_threads(args.threads)
    if args.child:
        child_peak(args.child, args.batches[0], args)
        return
    print(
        f"# bench_layers: {SPEC}, {args.layers} layers x {args.channels} channels, "
        f"{args.threads} threads, device {args.device}, median of {args.repeats} alternating runs, "
        f"torch {torch.__version__}"
        + ("" if args.reference else "; reference DWSNets not measured (no --reference DIR)")
    )
    print()
    print_timings(args)
    if args.no_memory or args.device != "cpu":
        return
    print()
    print("| batch | model | peak RSS GB | growth over pre-step RSS GB |")
    print("|---|---|---|---|")
    for batch in args.batches:
        for name in builders(args):
            peak, growth = peak_memory(name, batch, args)
            print(f"| {batch} | {name} | {peak:.2f} | {growth:.3f} |")


if __name__ == "__main__":
    main()
