"""Held-in vs held-out measurements of every shipped processor (``dws evaluate``).

For each processor: its task metric on the test split of a zoo remade with its own training
recipe (held in), and on recipe-diverse nets of the same conventions (held out: other
optimisers, learning rates, step budgets, initialisations, batches), with the fraction of nets
its OOD check flags, broken down by optimiser and initialisation.

    python scripts/heldout_recipes.py --zoos zoos/eval --held-in zoos/ood \
        --da-zoo zoos/fmnist-clf-da [--make] [--json out.json]

``--make`` first makes the missing recipe-diverse zoos under ``--zoos`` (one at a time, one
thread; a few minutes each on a CPU): the commands are :data:`DIVERSE_ZOOS`. The held-in zoos
are the ones the processor cards' ``ood.zoo_command`` make (``--held-in`` holds them under the
names below), the adapt processors' is their training zoo.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

#: A recipe file: the ``diverse`` ranges with the ``default`` INR conventions (2-32-32-32-1,
#: w0 30, pixel = 0.5 + 0.5 * out), the input contract of the shipped INR processors.
INR_RECIPE = "name: diverse-default\nbase: default\n"

#: name -> ``dws zoo`` arguments (``-o`` and :data:`COMMON` added) of each recipe-diverse zoo.
DIVERSE_ZOOS: dict[str, str] = {
    "mnist-inr-diverse": "inrs --dataset mnist --count 400 --recipe {recipe}",
    "fmnist-inr-diverse": "inrs --dataset fashion-mnist --count 400 --recipe {recipe}",
    "sines-diverse": "sines --count 400 --recipe diverse",
    "fmnist-clf-diverse": (
        "classifiers --dataset fashion-mnist --count 400 --preset spread --recipe diverse"
    ),
    "fmnist-clf-da-diverse": (
        "classifiers --dataset fashion-mnist --count 300 --preset adaptation --recipe diverse"
    ),
}
COMMON = ["--seed", "3", "--threads", "1"]

#: processor -> (held-in zoo under --held-in, or "DA" for --da-zoo; diverse zoo under --zoos)
PROCESSORS: dict[str, tuple[str, str]] = {
    "mnist-inr-classify": ("mnist-inr-2k", "mnist-inr-diverse"),
    "mnist-inr-dilate": ("mnist-inr-2k", "mnist-inr-diverse"),
    "mnist-inr-erode": ("mnist-inr-2k", "mnist-inr-diverse"),
    "fmnist-inr-classify": ("fmnist-inr-2k", "fmnist-inr-diverse"),
    "sine-embed": ("sines-2k", "sines-diverse"),
    "fmnist-accuracy": ("fmnist-clf-2k", "fmnist-clf-diverse"),
    "fmnist-adapt-blur": ("DA", "fmnist-clf-da-diverse"),
    "fmnist-adapt-contrast": ("DA", "fmnist-clf-da-diverse"),
    "fmnist-adapt-noise": ("DA", "fmnist-clf-da-diverse"),
    "fmnist-adapt-rotation": ("DA", "fmnist-clf-da-diverse"),
    "fmnist-adapt-rotation-noise": ("DA", "fmnist-clf-da-diverse"),
}
#: the metric shown per task (all of them are in --json)
HEADLINE = {
    "inr-classify": "accuracy",
    "inr-edit": "mse",
    "embed": "probe_mse",
    "accuracy": "kendall_tau",
    "adapt": "gain_points",
}
BY = ["optimizer", "init"]


def make_zoos(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    recipe = root / "inr-default-diverse.yaml"
    recipe.write_text(INR_RECIPE)
    for name, args in DIVERSE_ZOOS.items():
        out = root / name
        if (out / "manifest.jsonl").is_file():
            continue
        command = args.replace("{recipe}", str(recipe)).split()
        extra = ["--no-compile"] if command[0] in ("inrs", "sines") else []
        subprocess.run(["dws", "zoo", *command, *COMMON, *extra, "-o", str(out)], check=True)


def measure(
    zoos: Path, held_in: Path, da_zoo: Path, only: list[str] | None = None
) -> list[dict[str, Any]]:
    from dwscli import api

    rows = []
    for name, (inside, diverse) in PROCESSORS.items():
        if only and name not in only:
            continue
        home = da_zoo if inside == "DA" else held_in / inside
        held = api.evaluate(name, home, split="test", device="cpu").to_dict()
        # an embedding's probe is fitted on the zoo's train split: its test split is the fair
        # held-out number, ``all`` (with the probe's own nets) gives the per-recipe breakdown
        split = "test" if held["task"] == "embed" else "all"
        out = api.evaluate(name, zoos / diverse, split=split, by=BY, device="cpu").to_dict()
        if split == "test":
            out["by"] = api.evaluate(name, zoos / diverse, split="all", by=BY, device="cpu").by
        rows.append({"processor": name, "held_in": held, "held_out": out})
    return rows


def _cell(result: dict[str, Any], metric: str) -> str:
    flagged = (result.get("ood") or {}).get("flagged_fraction")
    shown = "-" if flagged is None else f"{100 * flagged:.0f} %"
    return f"{result['metrics'][metric]:.3g} ({result['nets']} nets, {shown} flagged)"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| processor | metric | held in: test split | held out: diverse recipes | "
        "by optimiser | by init |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        held, out = row["held_in"], row["held_out"]
        metric = HEADLINE[held["task"]]
        parts = []
        for field in BY:
            groups = out["by"].get(field, {})
            parts.append(
                ", ".join(
                    f"{k} {v['metrics'][metric]:.3g} ({v['nets']})" for k, v in groups.items()
                )
            )
        lines.append(
            f"| `{row['processor']}` | {metric} | {_cell(held, metric)} | {_cell(out, metric)} | "
            f"{parts[0]} | {parts[1]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", type=Path, required=True, help="recipe-diverse zoos")
    parser.add_argument("--held-in", type=Path, required=True, help="held-in zoos")
    parser.add_argument("--da-zoo", type=Path, required=True, help="the adapt training zoo")
    parser.add_argument("--make", action="store_true", help="make missing diverse zoos first")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--only", nargs="+", choices=list(PROCESSORS), help="these processors")
    args = parser.parse_args()
    if args.make:
        make_zoos(args.zoos)
    rows = measure(args.zoos, args.held_in, args.da_zoo, args.only)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
