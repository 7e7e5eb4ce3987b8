"""Making zoos: INR zoos (one SIREN per image), sine zoos, and classifier zoos.

Every net's hyper-parameters, initialisation and data order are a pure function of (zoo seed,
net index) (:func:`~dwscli.data.zoo_format.net_seed`), and shards are written atomically, so a
killed run resumes from its last finished shard, and ``--shard i/n`` parts made on different
machines merge into exactly the zoo one run makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dwscli.data.classifier_train import ClassifierZooConfig
from dwscli.data.recipes import Recipe, RecipeSpace
from dwscli.data.zoo import Zoo, ZooWriter, net_generator, net_id, select_part
from dwscli.data.zoo_format import net_seed
from dwscli.errors import DwsError
from dwscli.weights.inr import InrConventions
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

Progress = Callable[[int], None]  # called with the number of nets just finished


@dataclass(frozen=True)
class InrZooConfig:
    """How the SIRENs of an INR zoo are fitted (recorded in ``zoo.json``)."""

    spec: str = "2-32-32-32-1:sine;w0=30"
    steps: int = 300  # step budget per net
    psnr_target: float = 35.0  # dB on the [0, 1] image; a net stops once it reaches it
    lr: float = 3e-3
    chunk: int = 128  # nets fitted together (cache-sized; finished nets leave the chunk)
    check_every: int = 10
    compiled: bool = True  # torch.compile the fused step (pays off for big zoos)
    # every net starts from one SIREN initialisation (drawn from the zoo seed) instead of its
    # own: the nets then differ only by what fitting their images changed
    shared_init: bool = False
    recipe: str = "default"  # the named preset these settings came from (see INR_RECIPES)
    init: str = "sitzmann"  # a key of dwscli.data.stacked.INITS (SIREN's own scheme)
    output_scale: float = 0.5  # pixel = output_offset + output_scale * net output
    output_offset: float = 0.5
    # a recipe-diverse zoo: every net's recipe is drawn from these ranges, and ``steps``,
    # ``psnr_target``, ``lr`` and ``init`` above are not used
    ranges: RecipeSpace | None = None

    def recorded(self) -> dict[str, object]:
        """The config as ``zoo.json`` records it. Options at their default are left out when
        they were added after the first zoos were made (``shared_init``, ``recipe``, ``init``,
        the output scaling, ``ranges``), so those zoos keep their identity and still resume."""
        out = asdict(self)
        defaults = InrZooConfig()
        for key in ("shared_init", "recipe", "init", "output_scale", "output_offset"):
            if out[key] == getattr(defaults, key):
                out.pop(key)
        out.pop("ranges")
        if self.ranges is not None:
            out["ranges"] = self.ranges.recorded()
        return out

    def conventions(self) -> InrConventions:
        return InrConventions(
            height=28, width=28, output_scale=self.output_scale, output_offset=self.output_offset
        )


# Named fitting recipes for ``dws zoo inrs --recipe``. ``dwsnets`` is the recipe the DWSNets
# authors describe for their INR data: 2-32-32-1 SIRENs, every sine layer initialised
# U(±sqrt(6/d)/w0) with zero biases, output + 0.5, Adam lr 5e-4, up to 1,000 full-image steps,
# stopping at 40 dB. Its nets move far from their random start while fitting, so the weights
# carry the image; with the ``default`` recipe they stay within a few percent of it.
INR_RECIPES: dict[str, InrZooConfig] = {
    "default": InrZooConfig(),
    "dwsnets": InrZooConfig(
        spec="2-32-32-1:sine;w0=30",
        steps=1000,
        psnr_target=40.0,
        lr=5e-4,
        recipe="dwsnets",
        init="dwsnets",
        output_scale=1.0,
        output_offset=0.5,
    ),
}


def inr_recipe(name: str, **overrides: object) -> InrZooConfig:
    """The named recipe with ``overrides`` (options left at None keep the recipe's value).

    ``name`` may also name a recipe-diverse space (``diverse``, or a recipe file FILE.yaml; see
    :mod:`dwscli.data.recipes`): the zoo then keeps the conventions and architecture of the
    space's ``base`` recipe and draws every net's fitting recipe from the ranges."""
    from dataclasses import replace

    from dwscli.data.recipes import PRESETS, resolve_recipe

    chosen = {key: value for key, value in overrides.items() if value is not None}
    if name in INR_RECIPES:
        return replace(INR_RECIPES[name], **chosen)
    if (
        name not in PRESETS["inr"]
        and not name.endswith((".yaml", ".yml"))
        and not Path(name).is_file()
    ):
        raise DwsError(
            f"unknown INR recipe {name!r}; choose one of "
            f"{', '.join([*INR_RECIPES, *PRESETS['inr']])} or a recipe file FILE.yaml"
        )
    space = resolve_recipe(name, "inr")
    fixed = sorted(k for k in ("steps", "psnr_target", "lr", "shared_init") if chosen.get(k))
    if fixed:
        option = "--" + fixed[0].replace("_", "-")
        raise DwsError(
            f"{option} sets one value for every net, but recipe {name!r} draws it per net; "
            "change its range in a recipe file instead"
        )
    if (space.base or "default") not in INR_RECIPES:
        raise DwsError(
            f"{name}: base: unknown INR recipe {space.base!r}; choose one of "
            f"{', '.join(INR_RECIPES)}"
        )
    base = INR_RECIPES[space.base or "default"]
    return replace(base, recipe=space.name, ranges=space, **chosen)


def _split_config(hold_out: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``split`` entry of ``zoo.json``: the default one, or with a held-out recipe region
    (recorded only when given, so zoos without one keep their ``zoo.json``)."""
    return None if hold_out is None else {"hold_out": dict(hold_out)}


def check_hold_out_fields(hold_out: Mapping[str, Any] | None, fields: set[str]) -> None:
    """Refuse a held-out region on a field the zoo's records will not have (a typo would
    otherwise give an empty held-out split after the whole zoo was made)."""
    for key in hold_out or {}:
        if key not in fields:
            raise DwsError(
                f"--hold-out: {key!r} is not a recipe field of this zoo; "
                f"fields are {', '.join(sorted(fields))}"
            )


#: The ``hparams`` fields a recipe-diverse INR / sine zoo records per net.
DIVERSE_FIELDS = {"recipe", "optimizer", "lr", "momentum", "weight_decay", "init", "step_budget"}


def recipe_fields(kind: str, diverse: bool) -> set[str]:
    """The ``hparams`` fields the nets of a zoo of ``kind`` record (for ``--hold-out``)."""
    if kind == "classifier":
        base = {"lr", "weight_decay", "init_scale", "steps", "subset", "label_noise", "dropout"}
        base |= {"seed", "epochs"}
        return base | (
            {"recipe", "optimizer", "init", "batch_size", "momentum"} if diverse else set()
        )
    if kind == "inr":
        return (
            DIVERSE_FIELDS | {"psnr_target", "pixels_per_step"}
            if diverse
            else {"lr", "psnr_target", "recipe"}
        )
    return DIVERSE_FIELDS | {"mse_target", "points_per_step"} if diverse else {"lr"}


SHARED_INIT_INDEX = -1  # the "net index" whose generator draws a shared initialisation


def _stacked_init(
    spec: MLPSpec, indices: range, zoo_seed: int, *, shared: bool = False, init: str = "sitzmann"
) -> WeightSpace:
    """Initialisation ``init`` of nets ``indices``, each from its own per-net generator, or all
    the same one (``shared``)."""
    from dwscli.data.stacked import INITS

    if init not in INITS:
        raise DwsError(f"unknown initialisation {init!r}; choose one of {', '.join(INITS)}")
    draw = INITS[init]
    if shared:
        one = draw(spec, 1, net_generator(zoo_seed, SHARED_INIT_INDEX))
        return WeightSpace.stack([one] * len(indices))
    return WeightSpace.stack([draw(spec, 1, net_generator(zoo_seed, i)) for i in indices])


def _pending_shards(
    writer: ZooWriter, part: str | None, progress: Progress | None
) -> Iterator[tuple[int, range]]:
    """The shards of this run (all, or part ``i/n``) still to make; finished ones (from an
    interrupted earlier run) are skipped and counted as progress (through ``progress.skip``
    when the callback has one, so a progress bar's rate counts only this run's work)."""
    done = writer.completed_shards()
    for shard, nets in select_part(writer.plan, part).items():
        if shard not in done:
            yield shard, nets
        elif progress:
            getattr(progress, "skip", progress)(len(nets))


def _finish_zoo(writer: ZooWriter, part: str | None) -> Zoo | None:
    if part is not None or len(writer.completed_shards()) < writer.num_shards:
        return None
    return writer.finalize()


def _fit_diverse(
    targets: Tensor,
    coords: Tensor,
    spec: MLPSpec,
    nets: range,
    zoo_seed: int,
    space: RecipeSpace,
    *,
    chunk: int,
    check_every: int,
    compiled: bool,
    mse_of_target: Callable[[float], float],
    progress: Progress | None,
) -> tuple[WeightSpace, Tensor, list[Recipe]]:
    """Fit the nets ``nets`` (rows of ``targets``), each with its own drawn recipe.

    Nets are fitted together in chunks of one batch size (the pixels of a step are shared by a
    chunk), ordered by step budget so a chunk's nets finish together; within a chunk each net
    has its own optimiser (Adam or SGD), learning rate, weight decay, step budget and target.
    Returns the weights and steps taken in the order of ``nets``, and the recipes.
    """
    from dwscli.data.inr_fit import fit_sines
    from dwscli.data.recipes import draw_recipe
    from dwscli.data.stacked import INITS

    recipes = [draw_recipe(space, zoo_seed, i) for i in nets]
    init = WeightSpace.stack(
        [INITS[r.init](spec, 1, net_generator(zoo_seed, i)) for r, i in zip(recipes, nets)]
    )
    order = sorted(range(len(nets)), key=lambda k: (recipes[k].batch or 0, recipes[k].steps, k))
    weights: dict[int, WeightSpace] = {}
    taken: dict[int, int] = {}
    start = 0
    while start < len(order):
        batch = recipes[order[start]].batch
        stop = start
        while stop < len(order) and stop - start < chunk and recipes[order[stop]].batch == batch:
            stop += 1
        rows = order[start:stop]
        chosen = [recipes[k] for k in rows]
        index = torch.tensor(rows)
        targets_mse = [-math.inf if r.target is None else mse_of_target(r.target) for r in chosen]
        result = fit_sines(
            targets[index],
            coords,
            spec,
            steps=max(r.steps for r in chosen),
            lr=torch.tensor([r.lr for r in chosen]),
            mse_target=torch.tensor(targets_mse),
            init=init[index],
            check_every=check_every,
            compiled=compiled,
            step_budget=torch.tensor([r.steps for r in chosen]),
            weight_decay=torch.tensor([r.weight_decay for r in chosen]),
            use_sgd=torch.tensor([r.optimizer == "sgd" for r in chosen]),
            momentum=torch.tensor([r.momentum for r in chosen]),
            batch=batch,
            batch_generator=torch.Generator().manual_seed(
                net_seed(zoo_seed, nets[rows[0]]) ^ 0x5EED
            ),
        )
        for j, k in enumerate(rows):
            weights[k] = result.space[j : j + 1]
            taken[k] = int(result.steps[j])
        if progress:
            progress(len(rows))
        start = stop
    space_out = WeightSpace.stack([weights[k] for k in range(len(nets))])
    return space_out, torch.tensor([taken[k] for k in range(len(nets))]), recipes


def recipe_hparams(
    recipe: Recipe, name: str, *, target_key: str, batch_key: str, full: int
) -> dict[str, object]:
    """A drawn recipe as a manifest record's ``hparams`` (``None`` target: no early stop)."""
    out: dict[str, object] = {
        "recipe": name,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "weight_decay": recipe.weight_decay,
        "init": recipe.init,
        "step_budget": recipe.steps,
        target_key: recipe.target,
        batch_key: recipe.batch if recipe.batch is not None and recipe.batch < full else full,
    }
    if recipe.optimizer == "sgd":
        out["momentum"] = recipe.momentum
    return out


def make_inr_zoo(
    out: Path | str,
    dataset: str,
    *,
    count: int | None = None,
    config: InrZooConfig | None = None,
    seed: int = 0,
    shard_size: int | None = None,
    hold_out: Mapping[str, Any] | None = None,
    part: str | None = None,
    progress: Progress | None = None,
    test_first: bool = False,
) -> Zoo | None:
    """One SIREN per image of ``dataset``: the official train images first, then the test ones
    (``count`` takes the first ``count`` of that order; default all). Returns the finished zoo,
    or None when only a part was made (``part="i/n"``).

    ``test_first`` makes the shards holding test images before the others. The zoo is the same
    either way; an interrupted long run then already holds a complete test split to evaluate on.
    """
    from dwscli.data.datasets import canonical_name, load_dataset
    from dwscli.data.inr_fit import fit_sines

    config = config or InrZooConfig()
    check_hold_out_fields(hold_out, recipe_fields("inr", config.ranges is not None))
    name = canonical_name(dataset)
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    total = len(train) + len(test)
    count = total if count is None else count
    if not 0 < count <= total:
        raise DwsError(f"--count must be between 1 and {total} for {name}, got {count}")
    spec = MLPSpec.parse(config.spec)
    if spec.input_dim != 2 or spec.output_dim != 1 or spec.activation != "sine":
        raise DwsError(f"an image SIREN is 2-...-1:sine, got {spec}")
    conventions = config.conventions()
    writer = ZooWriter(
        out,
        kind="inr",
        spec=spec,
        count=count,
        dataset=name,
        conventions={
            "grid": [conventions.height, conventions.width],
            "coord_range": [conventions.coord_min, conventions.coord_max],
            "output_scale": conventions.output_scale,
            "output_offset": conventions.output_offset,
        },
        config=config.recorded(),
        shard_size=shard_size,
        seed=seed,
        part=part,
        split=_split_config(hold_out),
    )
    coords = conventions.coordinates()
    mse_target = 10 ** (-config.psnr_target / 10) / conventions.output_scale**2
    pending = list(_pending_shards(writer, part, progress))
    if test_first:
        pending.sort(key=lambda item: item[1].stop <= len(train))  # stable: test shards first
    for shard, nets in pending:
        images = (
            torch.cat(
                [
                    (train if i < len(train) else test).images[
                        i if i < len(train) else i - len(train)
                    ][None]
                    for i in nets
                ]
            ).float()
            / 255.0
        )
        if config.ranges is not None:
            flat = conventions.to_target(images.reshape(len(nets), -1))
            space, step_counts, recipes = _fit_diverse(
                flat,
                coords,
                spec,
                nets,
                seed,
                config.ranges,
                chunk=config.chunk,
                check_every=config.check_every,
                compiled=config.compiled,
                mse_of_target=lambda db: 10 ** (-db / 10) / conventions.output_scale**2,
                progress=progress,
            )
            per_net = [
                recipe_hparams(
                    r,
                    config.recipe,
                    target_key="psnr_target",
                    batch_key="pixels_per_step",
                    full=coords.shape[0],
                )
                for r in recipes
            ]
            writer.write_shard(
                shard,
                space,
                _inr_records(
                    name, nets, train, test, space, images, conventions, step_counts, per_net
                ),
            )
            continue
        init = _stacked_init(spec, nets, seed, shared=config.shared_init, init=config.init)
        pieces, steps = [], []
        for start in range(0, len(nets), config.chunk):
            stop = min(start + config.chunk, len(nets))
            targets = conventions.to_target(images[start:stop].reshape(stop - start, -1))
            result = fit_sines(
                targets,
                coords,
                spec,
                steps=config.steps,
                lr=config.lr,
                mse_target=mse_target,
                init=init[start:stop],
                check_every=config.check_every,
                compiled=config.compiled,
            )
            pieces.append(result.space)
            steps.append(result.steps)
            if progress:
                progress(stop - start)
        space = WeightSpace.stack(pieces)
        step_counts = torch.cat(steps)
        hparams: dict[str, object] = {"lr": config.lr, "psnr_target": config.psnr_target}
        if config.recipe != "default":
            hparams["recipe"] = config.recipe
        records = _inr_records(
            name, nets, train, test, space, images, conventions, step_counts, [hparams] * len(nets)
        )
        writer.write_shard(shard, space, records)
    return _finish_zoo(writer, part)


def _inr_records(
    name: str,
    nets: range,
    train: Any,
    test: Any,
    space: WeightSpace,
    images: Tensor,
    conventions: InrConventions,
    step_counts: Tensor,
    hparams: list[dict[str, object]],
) -> list[dict[str, object]]:
    """The manifest records of INR nets ``nets``: recipe, source image, PSNR and steps."""
    from dwscli.weights.inr import psnr, render

    quality = psnr(render(space, conventions), images)
    records: list[dict[str, object]] = []
    for row, i in enumerate(nets):
        in_train = i < len(train)
        image_index = i if in_train else i - len(train)
        label = int((train if in_train else test).labels[image_index])
        records.append(
            {
                "id": net_id(f"{name}-inr", i),
                "hparams": hparams[row],
                "labels": {
                    "label": label,
                    "image_index": image_index,
                    "image_split": "train" if in_train else "test",
                },
                "metrics": {
                    "psnr": float(quality[row]),
                    "steps": int(step_counts[row]),
                },
            }
        )
    return records


# ------------------------------------------------------------------------------------------------
# Sine zoos: 1-D SIRENs fitted to a·sin(b·x) on [-π, π], a, b ~ U(0, 10).


@dataclass(frozen=True)
class SineZooConfig:
    spec: str = "1-32-32-1:sine;w0=30"
    points: int = 200
    steps: int = 1000
    lr: float = 1e-3
    mse_target: float = 1e-3
    chunk: int = 256
    check_every: int = 25
    compiled: bool = True
    # a recipe-diverse zoo: every net's recipe is drawn from these ranges (``steps``, ``lr``
    # and ``mse_target`` above are then not used)
    ranges: RecipeSpace | None = None

    def recorded(self) -> dict[str, object]:
        """The config as ``zoo.json`` records it; zoos with one recipe record what they always
        did, so they still resume."""
        out = asdict(self)
        out.pop("ranges")
        if self.ranges is not None:
            out["recipe"] = self.ranges.name
            out["ranges"] = self.ranges.recorded()
        return out


def sine_parameters(zoo_seed: int, index: int) -> tuple[float, float]:
    """(a, b) ~ U(0, 10)² for net ``index`` (a pure function of the zoo seed and index)."""
    a, b = torch.rand(2, generator=net_generator(zoo_seed, index)).tolist()
    return 10 * a, 10 * b


def make_sine_zoo(
    out: Path | str,
    *,
    count: int,
    config: SineZooConfig | None = None,
    seed: int = 0,
    shard_size: int | None = None,
    hold_out: Mapping[str, Any] | None = None,
    part: str | None = None,
    progress: Progress | None = None,
) -> Zoo | None:
    from dwscli.data.inr_fit import evaluate_mse, fit_sines

    config = config or SineZooConfig()
    check_hold_out_fields(hold_out, recipe_fields("sine", config.ranges is not None))
    spec = MLPSpec.parse(config.spec)
    if spec.input_dim != 1 or spec.output_dim != 1 or spec.activation != "sine":
        raise DwsError(f"a sine-wave SIREN is 1-...-1:sine, got {spec}")
    writer = ZooWriter(
        out,
        kind="sine",
        spec=spec,
        count=count,
        conventions={
            "coord_range": [-math.pi, math.pi],
            "net_input_range": [-1.0, 1.0],
            "points": config.points,
        },
        config=config.recorded(),
        shard_size=shard_size,
        seed=seed,
        part=part,
        split=_split_config(hold_out),
    )
    # The net sees x/π in [-1, 1] (SIREN's usual input range) standing for x in [-π, π].
    coords = torch.linspace(-1.0, 1.0, config.points)[:, None]
    for shard, nets in _pending_shards(writer, part, progress):
        ab = torch.tensor([sine_parameters(seed, i) for i in nets])
        targets = ab[:, :1] * torch.sin(ab[:, 1:] * math.pi * coords[:, 0][None, :])
        if config.ranges is not None:
            space, step_counts, recipes = _fit_diverse(
                targets,
                coords,
                spec,
                nets,
                seed,
                config.ranges,
                chunk=config.chunk,
                check_every=config.check_every,
                compiled=config.compiled,
                mse_of_target=float,
                progress=progress,
            )
            mse = evaluate_mse(space, coords, targets)
            per_net = [
                recipe_hparams(
                    r,
                    config.ranges.name,
                    target_key="mse_target",
                    batch_key="points_per_step",
                    full=config.points,
                )
                for r in recipes
            ]
            writer.write_shard(shard, space, _sine_records(nets, ab, mse, step_counts, per_net))
            continue
        init = _stacked_init(spec, nets, seed)
        pieces, steps, errors = [], [], []
        for start in range(0, len(nets), config.chunk):
            stop = min(start + config.chunk, len(nets))
            result = fit_sines(
                targets[start:stop],
                coords,
                spec,
                steps=config.steps,
                lr=config.lr,
                mse_target=config.mse_target,
                init=init[start:stop],
                check_every=config.check_every,
                compiled=config.compiled,
            )
            pieces.append(result.space)
            steps.append(result.steps)
            errors.append(result.mse)
            if progress:
                progress(stop - start)
        mse, step_counts = torch.cat(errors), torch.cat(steps)
        records = _sine_records(nets, ab, mse, step_counts, [{"lr": config.lr}] * len(nets))
        writer.write_shard(shard, WeightSpace.stack(pieces), records)
    return _finish_zoo(writer, part)


def _sine_records(
    nets: range, ab: Tensor, mse: Tensor, step_counts: Tensor, hparams: list[dict[str, object]]
) -> list[dict[str, object]]:
    return [
        {
            "id": net_id("sine", i),
            "hparams": hparams[row],
            "labels": {"a": float(ab[row, 0]), "b": float(ab[row, 1])},
            "metrics": {"mse": float(mse[row]), "steps": int(step_counts[row])},
        }
        for row, i in enumerate(nets)
    ]


# ------------------------------------------------------------------------------------------------
# Classifier zoos: MLP classifiers with per-net hyper-parameters (see classifier_train).


def dataset_statistics(name: str) -> tuple[float, float]:
    """Mean and std of the training pixels in [0, 1] (the standardisation of the inputs).

    Summed in float64 and rounded to 8 decimals so the numbers do not depend on the thread
    count (a float32 reduction's order does): a zoo resumed with other ``--threads`` must
    record the very same conventions, or the resume is refused as a different zoo.
    """
    from dwscli.data.datasets import load_dataset

    pixels = load_dataset(name, "train").float_images().double()
    return round(float(pixels.mean()), 8), round(float(pixels.std()), 8)


def make_classifier_zoo(
    out: Path | str,
    dataset: str,
    *,
    count: int,
    config: ClassifierZooConfig | None = None,
    seed: int = 0,
    shard_size: int | None = None,
    hold_out: Mapping[str, Any] | None = None,
    part: str | None = None,
    progress: Progress | None = None,
) -> Zoo | None:
    """Train ``count`` MLP classifiers on ``dataset`` with hyper-parameters spread so that
    their test accuracies span from chance to good; record test/train accuracy and loss."""
    from dwscli.data.classifier_train import (
        ImageData,
        accuracy,
        add_recipe,
        preprocess,
        sample_hparams,
        train_classifiers,
    )
    from dwscli.data.corruptions import corrupt
    from dwscli.data.datasets import canonical_name, load_dataset

    config = config or ClassifierZooConfig()
    check_hold_out_fields(hold_out, recipe_fields("classifier", config.recipe is not None))
    name = canonical_name(dataset)
    spec = MLPSpec.parse(config.spec)
    side = 28 // config.pool
    if 28 % config.pool or spec.input_dim != side * side:
        raise DwsError(
            f"spec {spec} takes {spec.input_dim} inputs, but pooling 28x28 images by "
            f"{config.pool} gives {side}x{side} = {side * side}"
        )
    mean, std = dataset_statistics(name)
    train_set, test_set = load_dataset(name, "train"), load_dataset(name, "test")
    train = ImageData(
        preprocess(train_set.float_images(), config.pool, mean, std), train_set.labels
    )
    test = ImageData(preprocess(test_set.float_images(), config.pool, mean, std), test_set.labels)
    train_eval = ImageData(train.inputs[:10000], train.labels[:10000])
    shifted = None
    if config.eval_corruption:
        images = corrupt(test_set.float_images(), config.eval_corruption, seed=1)
        shifted = ImageData(preprocess(images, config.pool, mean, std), test_set.labels)
    config_dict = config.recorded()
    writer = ZooWriter(
        out,
        kind="classifier",
        spec=spec,
        count=count,
        dataset=name,
        conventions={
            "image_size": [side, side],
            "pool": config.pool,
            "mean": mean,
            "std": std,
            "flatten": "row-major",
            "scaling": "pixels / 255",
        },
        config=config_dict,
        shard_size=shard_size,
        seed=seed,
        part=part,
        split=_split_config(hold_out),
    )
    for shard, nets in _pending_shards(writer, part, progress):
        hparams = [sample_hparams(config.ranges, seed, i) for i in nets]
        if config.recipe is not None:
            hparams = [add_recipe(hp, config.recipe, seed, i) for hp, i in zip(hparams, nets)]
        # Train nets of similar step counts (and batch sizes) together, so few steps are spent
        # on finished nets.
        order = sorted(
            range(len(nets)), key=lambda k: (hparams[k].get("batch_size", 0), hparams[k]["steps"])
        )
        trained: dict[int, tuple[WeightSpace, float]] = {}
        for start in range(0, len(order), config.chunk):
            rows = order[start : start + config.chunk]
            space, loss = train_classifiers(
                [hparams[k] for k in rows], spec, train, batch_size=config.batch_size
            )
            for j, k in enumerate(rows):
                trained[k] = (space[j], float(loss[j]))
            if progress:
                progress(len(rows))
        space = WeightSpace.stack([trained[k][0] for k in range(len(nets))])
        test_acc = accuracy(space, test)
        train_acc = accuracy(space, train_eval)
        shifted_acc = accuracy(space, shifted) if shifted is not None else None
        records = []
        for row, i in enumerate(nets):
            metrics = {
                "test_acc": float(test_acc[row]),
                "train_acc": float(train_acc[row]),
                "train_loss": trained[row][1],
            }
            if shifted_acc is not None:
                metrics[f"test_acc_{config.eval_corruption}"] = float(shifted_acc[row])
            hp = dict(hparams[row])
            hp["epochs"] = hp["steps"] * hp.get("batch_size", config.batch_size) / hp["subset"]
            records.append(
                {"id": net_id(f"{name}-clf", i), "hparams": hp, "labels": {}, "metrics": metrics}
            )
        writer.write_shard(shard, space, records)
    return _finish_zoo(writer, part)
