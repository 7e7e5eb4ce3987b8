"""Recipe-diverse zoos: each net's fitting recipe drawn from ranges instead of one setting.

A :class:`RecipeSpace` names the ranges (optimiser, learning rate per optimiser, step budget,
early-stop target, initialisation, batch, weight decay); :func:`draw_recipe` draws net
``index``'s recipe from it as a pure function of (zoo seed, index), from a generator of its own
(:func:`recipe_generator`), so the draws of the initialisation and data (seeded by
:func:`~dwscli.data.zoo_format.net_generator`) are the same as in a zoo made with one recipe,
parts made with ``--shard i/n`` agree, and a resumed run draws what the first run drew. Every
field is drawn from its own fixed position of one uniform vector, so narrowing one range in a
recipe file leaves the draws of the other fields as they were.

What varies is the *fitting* recipe. The conventions a processor reads the nets with (grid,
coordinate range, output scaling, w0, the architecture) stay one per zoo.

Recipes are named (``diverse``, see :data:`PRESETS`) or read from a YAML file (``--recipe
FILE.yaml``); keys left out of a file keep the ``diverse`` preset's value for that zoo kind::

    optimizer: [adam, sgd]             # drawn uniformly
    lr: {adam: [1e-4, 1e-2], sgd: [5e-4, 5e-2]}  # log-uniform, per optimiser
    momentum: 0.9                      # SGD's momentum
    steps: [100, 1000]                 # step budget, log-uniform (INR and sine zoos)
    target: [30, 35, 40, none]         # PSNR dB (INRs) / MSE (sines); none: no early stop
    init: [sitzmann, sitzmann-zero-bias, dwsnets, torch-linear]
    batch: [full, 256]                 # pixels (points) per step / classifier minibatch
    weight_decay: [0, 1e-5, 1e-4]
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError

__all__ = [
    "CLASSIFIER_INITS",
    "KINDS",
    "OPTIMIZERS",
    "PRESETS",
    "Recipe",
    "RecipeSpace",
    "draw_recipe",
    "load_recipe_file",
    "recipe_generator",
    "resolve_recipe",
]

OPTIMIZERS = ("adam", "sgd")
KINDS = ("inr", "sine", "classifier")
SINE_INITS = ("sitzmann", "sitzmann-zero-bias", "dwsnets", "torch-linear")
#: initialisations of ReLU classifiers (each times the net's drawn ``init_scale``)
CLASSIFIER_INITS = ("torch-linear", "he-normal", "xavier-uniform")
FULL = "full"  # a batch of every pixel / point


@dataclass(frozen=True)
class RecipeSpace:
    """The ranges every net's recipe is drawn from (see the module docstring for the keys).

    ``batch`` and ``target`` entries of None mean "the full image" and "no early stop".
    ``base`` (INR zoos) is the fixed-recipe preset whose conventions and architecture the zoo
    keeps. Classifier zoos draw step budget and weight decay from their ``--preset`` ranges, and
    Adam's learning rate too; ``steps``, ``target``, ``weight_decay`` and ``lr.adam`` are not
    used there.
    """

    name: str = "diverse"
    kind: str = "inr"
    base: str | None = "dwsnets"
    optimizers: tuple[str, ...] = OPTIMIZERS
    lr_adam: tuple[float, float] = (1e-4, 1e-2)
    # SGD on a w0 = 30 SIREN diverges above ~5e-2 (Adam normalises the step, SGD does not)
    lr_sgd: tuple[float, float] = (5e-4, 5e-2)
    momentum: float = 0.9
    steps: tuple[int, int] = (100, 1000)
    targets: tuple[float | None, ...] = (30.0, 35.0, 40.0, None)
    inits: tuple[str, ...] = SINE_INITS
    batch: tuple[int | None, ...] = (None, 256)
    weight_decay: tuple[float, ...] = (0.0, 1e-5, 1e-4)

    def recorded(self) -> dict[str, Any]:
        """The space as ``zoo.json`` records it."""
        out = asdict(self)
        out["lr"] = {"adam": list(out.pop("lr_adam")), "sgd": list(out.pop("lr_sgd"))}
        return out


@dataclass(frozen=True)
class Recipe:
    """One net's drawn recipe (``batch``/``target`` None: full batch / no early stop)."""

    optimizer: str
    lr: float
    momentum: float
    steps: int
    target: float | None
    init: str
    batch: int | None
    weight_decay: float


#: Named recipe spaces per zoo kind.
PRESETS: dict[str, dict[str, RecipeSpace]] = {
    "inr": {"diverse": RecipeSpace()},
    "sine": {
        "diverse": RecipeSpace(
            kind="sine",
            base=None,
            # the signals' amplitudes reach 10, so their gradients are ~100x an image's
            lr_sgd=(1e-5, 1e-3),
            steps=(100, 1000),
            targets=(1e-2, 1e-3, 1e-4, None),
            batch=(None, 64),
        )
    },
    "classifier": {
        "diverse": RecipeSpace(
            kind="classifier",
            base=None,
            lr_sgd=(1e-3, 1e-1),
            steps=(0, 0),
            targets=(None,),
            inits=CLASSIFIER_INITS,
            batch=(32, 64, 128, 256),
            weight_decay=(0.0,),
        )
    },
}

_POSITIONS = ("optimizer", "lr", "steps", "target", "init", "batch", "weight_decay")


def recipe_generator(zoo_seed: int, index: int) -> torch.Generator:
    """The generator net ``index``'s recipe is drawn from: a pure function of (zoo seed, index),
    separate from the net's own generator."""
    digest = hashlib.blake2b(f"dws-zoo-recipe:{int(zoo_seed)}:{int(index)}".encode(), digest_size=8)
    return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1)


def _log_uniform(u: float, low: float, high: float) -> float:
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _choice(u: float, options: tuple[Any, ...]) -> Any:
    return options[min(int(u * len(options)), len(options) - 1)]


def draw_recipe(space: RecipeSpace, zoo_seed: int, index: int) -> Recipe:
    """Net ``index``'s recipe: one uniform per field, in the fixed order of ``_POSITIONS``."""
    u = dict(
        zip(
            _POSITIONS,
            torch.rand(len(_POSITIONS), generator=recipe_generator(zoo_seed, index)).tolist(),
        )
    )
    optimizer = _choice(u["optimizer"], space.optimizers)
    low, high = space.lr_adam if optimizer == "adam" else space.lr_sgd
    steps_low, steps_high = space.steps
    steps = round(_log_uniform(u["steps"], steps_low, steps_high)) if steps_low > 0 else 0
    return Recipe(
        optimizer=optimizer,
        lr=_log_uniform(u["lr"], low, high),
        momentum=space.momentum if optimizer == "sgd" else 0.0,
        steps=steps,
        target=_choice(u["target"], space.targets),
        init=_choice(u["init"], space.inits),
        batch=_choice(u["batch"], space.batch),
        weight_decay=float(_choice(u["weight_decay"], space.weight_decay)),
    )


# ------------------------------------------------------------------------------------------------
# recipe files


def _none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _number(value: Any, where: str, key: str, *, positive: bool = False) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DwsError(f"{where}: {key}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise DwsError(f"{where}: {key}: must be positive, got {value!r}")
    if value < 0:
        raise DwsError(f"{where}: {key}: must not be negative, got {value!r}")
    return float(value)


def _as_list(value: Any, where: str, key: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise DwsError(f"{where}: {key}: needs at least one value")
    return items


def _range(value: Any, where: str, key: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise DwsError(f"{where}: {key}: expected [low, high], got {value!r}")
    low, high = (_number(v, where, key, positive=True) for v in value)
    if low > high:
        raise DwsError(f"{where}: {key}: low {low:g} is above high {high:g}")
    return low, high


def _choices(value: Any, where: str, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = _as_list(value, where, key)
    for item in items:
        if item not in allowed:
            raise DwsError(
                f"{where}: {key}: unknown value {item!r}; choose from {', '.join(allowed)}"
            )
    return tuple(items)


def space_from_mapping(data: Any, kind: str, where: str) -> RecipeSpace:
    """A recipe space from the mapping of a recipe file (keys left out keep the ``diverse``
    preset's values for ``kind``); bad keys and values are one-line errors naming ``where``."""
    if not isinstance(data, Mapping):
        raise DwsError(f"{where}: a recipe file is a mapping of keys (optimizer, lr, …)")
    space = PRESETS[kind]["diverse"]
    known = {
        "name",
        "base",
        "optimizer",
        "lr",
        "momentum",
        "steps",
        "target",
        "init",
        "batch",
        "weight_decay",
    }
    if kind != "inr":
        known.discard("base")
    if kind == "classifier":
        known -= {"steps", "target", "weight_decay"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise DwsError(
            f"{where}: unknown key {unknown[0]!r} for a {kind} zoo; "
            f"keys are {', '.join(sorted(known))}"
        )
    changes: dict[str, Any] = {"name": Path(where).stem}
    if "name" in data:
        if not isinstance(data["name"], str) or not data["name"].strip():
            raise DwsError(f"{where}: name: expected a non-empty string")
        changes["name"] = data["name"].strip()
    if "base" in data:  # checked against the INR recipes by the INR zoo maker
        if not isinstance(data["base"], str) or not data["base"].strip():
            raise DwsError(f"{where}: base: expected the name of an INR recipe")
        changes["base"] = data["base"].strip()
    if "optimizer" in data:
        changes["optimizers"] = _choices(data["optimizer"], where, "optimizer", OPTIMIZERS)
    if "lr" in data:
        lr = data["lr"]
        if not isinstance(lr, Mapping) or set(lr) - set(OPTIMIZERS):
            raise DwsError(
                f"{where}: lr: expected {{adam: [low, high], sgd: [low, high]}}, got {lr!r}"
            )
        for name in OPTIMIZERS:
            if name in lr:
                changes[f"lr_{name}"] = _range(lr[name], where, f"lr.{name}")
    if "momentum" in data:
        momentum = _number(data["momentum"], where, "momentum")
        if momentum >= 1:
            raise DwsError(f"{where}: momentum: must be below 1, got {momentum:g}")
        changes["momentum"] = momentum
    if "steps" in data:
        low, high = _range(data["steps"], where, "steps")
        if low != int(low) or high != int(high):
            raise DwsError(f"{where}: steps: expected whole numbers, got {data['steps']!r}")
        changes["steps"] = (int(low), int(high))
    if "target" in data:
        changes["targets"] = tuple(
            None if _none(v) else _number(v, where, "target", positive=True)
            for v in _as_list(data["target"], where, "target")
        )
    if "init" in data:
        allowed = CLASSIFIER_INITS if kind == "classifier" else SINE_INITS
        changes["inits"] = _choices(data["init"], where, "init", allowed)
    if "batch" in data:
        batches: list[int | None] = []
        for v in _as_list(data["batch"], where, "batch"):
            if (_none(v) or v == FULL) and kind != "classifier":
                batches.append(None)
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                full = "" if kind == "classifier" else " or 'full'"
                raise DwsError(f"{where}: batch: expected a positive whole number{full}, got {v!r}")
            batches.append(v)
        changes["batch"] = tuple(batches)
    if "weight_decay" in data:
        changes["weight_decay"] = tuple(
            _number(v, where, "weight_decay")
            for v in _as_list(data["weight_decay"], where, "weight_decay")
        )
    return replace(space, **changes)


def load_recipe_file(path: Path | str, kind: str) -> RecipeSpace:
    """The recipe space of a YAML recipe file for a zoo of ``kind``."""
    from dwscli.safe_yaml import load_yaml_file

    data = load_yaml_file(path, what="recipe file")
    return space_from_mapping(data, kind, str(path))


def resolve_recipe(value: str, kind: str) -> RecipeSpace:
    """The recipe space ``value`` names: a preset of ``kind`` or a YAML file."""
    if value in PRESETS[kind]:
        return PRESETS[kind][value]
    if value.endswith((".yaml", ".yml")) or Path(value).is_file():
        return load_recipe_file(value, kind)
    raise DwsError(
        f"--recipe: unknown recipe {value!r} for {kind} zoos; choose "
        f"{', '.join(PRESETS[kind])} or a recipe file FILE.yaml"
    )
