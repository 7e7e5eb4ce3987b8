"""``adapt`` and ``predict-accuracy`` on a device agree with the CPU (max |difference| <= 1e-4).

Writes N classifier checkpoints (196-32-32-10 ReLU, the shipped processors' input) plus one
wide 196-1024-1024-10 net (so the memory-bounded blocked forward runs too), runs both commands
through :mod:`dwscli.api` once with ``device="cpu"`` and once with ``--device``, and compares the
predicted accuracies and every adapted tensor. Exit status 1 when any difference is larger.

    python benchmarks/device_agreement.py --device cuda [--count 256]

With ``--device cpu`` it compares the CPU with itself (a check of the script on any machine).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

TOLERANCE = 1e-4
SPEC = "196-32-32-10:relu"
WIDE = "196-1024-1024-10:relu"


def make_checkpoints(directory: Path, count: int) -> list[Path]:
    import torch

    from dwscli.weights.checkpoint import save_space
    from dwscli.weights.space import WeightSpace
    from dwscli.weights.spec import MLPSpec

    generator = torch.Generator().manual_seed(0)
    paths = []
    for k, text in enumerate([SPEC] * count + [WIDE]):
        space = WeightSpace.random(MLPSpec.parse(text), 1, generator=generator)
        paths.append(save_space(directory / f"net{k:05d}.safetensors", space))
    return paths


def adapted_difference(a: Path, b: Path) -> float:
    from safetensors import safe_open

    worst = 0.0
    for left in sorted(a.glob("*.safetensors")):
        with safe_open(str(left), "pt") as f, safe_open(str(b / left.name), "pt") as g:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                worst = max(worst, float((f.get_tensor(key) - g.get_tensor(key)).abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--count", type=int, default=256)
    args = parser.parse_args()
    from dwscli import api

    work = Path(tempfile.mkdtemp(prefix="dws-device-agreement-"))
    try:
        nets = work / "nets"
        nets.mkdir()
        paths = make_checkpoints(nets, args.count)
        rows = {
            device: api.predict_accuracy(paths, device=device) for device in ("cpu", args.device)
        }
        accuracy = max(
            abs(a["predicted_accuracy"] - b["predicted_accuracy"])
            for a, b in zip(rows["cpu"], rows[args.device])
        )
        for label, device in (("cpu", "cpu"), ("device", args.device)):
            api.adapt(paths, out_dir=work / f"adapted-{label}", device=device)
        weights = adapted_difference(work / "adapted-cpu", work / "adapted-device")
        print(f"# device agreement: cpu vs {args.device}, {len(paths)} nets (one {WIDE})")
        print()
        print("| command | max abs difference | tolerance |")
        print("|---|---|---|")
        print(f"| predict-accuracy | {accuracy:.2e} | {TOLERANCE:.0e} |")
        print(f"| adapt (every tensor) | {weights:.2e} | {TOLERANCE:.0e} |")
        if max(accuracy, weights) > TOLERANCE:
            raise SystemExit(f"error: cpu and {args.device} disagree by more than {TOLERANCE}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
