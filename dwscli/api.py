"""The Python API behind the ``dws`` commands: each command is one call here.

    >>> from dwscli import api
    >>> info = api.inspect_checkpoint("example:tiny-siren")
    >>> result = api.permute_checkpoint("example:tiny-siren", "/tmp/permuted.safetensors", seed=0)

Paths accept what the CLI accepts for a single checkpoint (a file or ``example:NAME``). This module
imports torch lazily as well, so that importing it is cheap.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dwscli.errors import DwsError
from dwscli.paths import expand_single
from dwscli.processors.registry import ProcessorCard, fitting_processors, list_processors

if TYPE_CHECKING:
    from dwscli.weights.checkpoint import Checkpoint
    from dwscli.weights.space import WeightSpace

PathLike = str | os.PathLike[str]

#: Number of random inputs on which ``permute`` compares the original and permuted networks.
CHECK_INPUTS = 256


def load(
    path: PathLike, *, activation: str | None = None, allow_nonfinite: bool = False
) -> Checkpoint:
    """Load one checkpoint given as a file or ``example:NAME`` (see :func:`load_checkpoint`)."""
    from dwscli.weights.checkpoint import load_checkpoint

    return load_checkpoint(
        expand_single(path), activation=activation, allow_nonfinite=allow_nonfinite
    )


# ------------------------------------------------------------------------------------------
# inspect


def _dtype_name(dtype: object) -> str:
    return str(dtype).removeprefix("torch.")


def _layout_info(checkpoint: Checkpoint) -> dict[str, Any]:
    layout = checkpoint.layout
    return {
        "format": layout.format,
        "layers": [
            {
                "module": layer.module,
                "weight": layer.weight_key,
                "bias": layer.bias_key,
                "dtype": _dtype_name(layer.weight_dtype),
            }
            for layer in layout.layers
        ],
        "bias_free_layers": list(layout.bias_free_layers),
    }


def inspect_checkpoint(
    path: PathLike,
    *,
    activation: str | None = None,
    processors: list[ProcessorCard] | None = None,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """What ``dws inspect`` shows about one checkpoint, as a JSON-ready dict.

    Keys: ``path``, ``spec`` (compact string), ``widths``, ``activation``, ``activation_source``
    (``metadata:dws.spec``, ``metadata:activation``, ``argument`` or ``default``), ``depth``
    (linear layers), ``parameters`` (biases of bias-free layers included), ``dtypes`` (as
    stored), ``layout`` (format, per layer its module, keys and dtype, and the bias-free layers),
    ``metadata`` and ``processors`` (names of the shipped processors whose input spec fits).
    """
    checkpoint = load(path, activation=activation, allow_nonfinite=allow_nonfinite)
    spec = checkpoint.spec
    cards = list_processors() if processors is None else processors
    return {
        "path": str(checkpoint.path),
        "spec": str(spec),
        "widths": list(spec.widths),
        "activation": spec.activation,
        "activation_source": checkpoint.activation_source,
        "depth": spec.depth,
        "parameters": spec.num_parameters,
        "dtypes": [_dtype_name(d) for d in checkpoint.stored_dtypes],
        "layout": _layout_info(checkpoint),
        "metadata": dict(checkpoint.metadata),
        "processors": [card.name for card in fitting_processors(spec, cards)],
    }


# ------------------------------------------------------------------------------------------
# permute


@dataclass(frozen=True)
class PermuteResult:
    """Outcome of :func:`permute_checkpoint`."""

    input: str
    output: str
    spec: str
    seed: int
    permuted_layers: int
    check_inputs: int
    max_abs_difference: float
    #: Largest |f(x)| on the same inputs: the difference is judged relative to it.
    max_abs_output: float = 1.0

    #: Relative tolerance of "function preserved"; permutations only reorder float64 sums.
    TOLERANCE = 1e-6

    @property
    def function_preserved(self) -> bool:
        """True when the outputs agree to ``TOLERANCE`` relative to max(1, largest |f(x)|)."""
        return self.max_abs_difference <= self.TOLERANCE * max(1.0, self.max_abs_output)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "function_preserved": self.function_preserved}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def max_output_difference(
    first: WeightSpace, second: WeightSpace, *, num_inputs: int = CHECK_INPUTS, seed: int = 0
) -> float:
    """Largest |f(x) - g(x)| over random inputs x ~ U(-1, 1)^d_0, computed in float64."""
    import torch

    from dwscli.weights.functional import mlp_forward

    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(num_inputs, first.spec.input_dim, generator=generator, dtype=torch.float64)
    inputs = inputs * 2 - 1
    a = mlp_forward(first.to(torch.float64), inputs)
    b = mlp_forward(second.to(torch.float64), inputs)
    return float((a - b).abs().max())


def permute_checkpoint(
    path: PathLike,
    output: PathLike,
    *,
    seed: int | None = None,
    force: bool = False,
    activation: str | None = None,
    num_inputs: int = CHECK_INPUTS,
    allow_nonfinite: bool = False,
) -> PermuteResult:
    """Write ``output``: ``path``'s network with its hidden neurons randomly permuted.

    The function is unchanged; the result reports the largest output difference between the two
    networks on ``num_inputs`` random inputs (float64) so that this can be seen. The output keeps
    the input's keys, dtypes and metadata and records ``operation=permute`` and the seed as
    provenance. The input is never overwritten unless ``force``.
    """
    import torch

    from dwscli.weights.checkpoint import save_checkpoint
    from dwscli.weights.filewrite import output_path
    from dwscli.weights.symmetry import apply_permutation, random_permutation

    source = expand_single(path)
    target = output_path(Path(output).expanduser())  # refuses a directory, adds .safetensors
    if _same_file(source, target) and not force:
        raise DwsError(
            f"{target}: is the input checkpoint; refusing to write over it",
            hint="choose another output path (or pass --force)",
        )
    if target.exists() and not force:
        raise DwsError(f"{target}: exists; pass --force to overwrite")
    checkpoint = load(source, activation=activation, allow_nonfinite=allow_nonfinite)
    if seed is None:
        seed = secrets.randbelow(2**31)
    generator = torch.Generator().manual_seed(seed)
    permuted = apply_permutation(checkpoint.space, random_permutation(checkpoint.space, generator))
    difference = max_output_difference(checkpoint.space, permuted, num_inputs=num_inputs, seed=seed)
    scale = max_output_difference(
        checkpoint.space, checkpoint.space.map(torch.zeros_like), num_inputs=num_inputs, seed=seed
    )
    written = save_checkpoint(
        target,
        checkpoint,
        space=permuted,
        provenance={"operation": "permute", "seed": str(seed), "source": source.name},
        force=force,
        allow_nonfinite=allow_nonfinite,
    )
    return PermuteResult(
        input=str(source),
        output=str(written),
        spec=str(checkpoint.spec),
        seed=seed,
        permuted_layers=len(checkpoint.spec.hidden_widths),
        check_inputs=num_inputs,
        max_abs_difference=difference,
        max_abs_output=scale,
    )


# ------------------------------------------------------------------------------------------
# processors and equivariance checks


def processors(task: str | None = None) -> list[ProcessorCard]:
    """The shipped processors (see :mod:`dwscli.processors.registry`), only those of ``task``
    when given (``dws processors --task adapt``)."""
    from dwscli.processors.card import TASK_NAMES

    if task is not None and task not in TASK_NAMES:
        raise DwsError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    cards = list_processors()
    return cards if task is None else [card for card in cards if card.task == task]


def adapt_domains() -> dict[str, str]:
    """``{processor name: target domain}`` of the shipped adapt processors, the domains
    ``adapt(..., target=…)`` accepts."""
    from dwscli.processors.registry import adapt_domains as shipped_domains

    return shipped_domains()


def check_equivariance(processor: str | None = None, *, seed: int = 0) -> list[dict[str, Any]]:
    """Equivariance/invariance checks: of the library's layers, or of one processor.

    Each row is ``{"module", "spec", "kind", "max_error", "passed"}``.
    """
    if processor is None:
        from dwscli.nn.equivariance import self_check

        return list(self_check(seed=seed))
    from dwscli.processors.equivariance import check_processor

    return list(check_processor(processor, seed=seed))


# ------------------------------------------------------------------------------------------
# render


def render_inrs(
    paths: list[PathLike],
    output: PathLike,
    *,
    grid: bool = False,
    scale: int = 4,
    columns: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Decode image INRs to the pictures they encode and write them as one PNG.

    Each INR is rendered with the conventions in its own metadata (``inr.grid``,
    ``inr.coord_range``, ``inr.output_scale``/``offset``; w0 from its spec). Several INRs need
    ``grid=True`` and are tiled into one picture.
    """
    import torch

    from dwscli.images import image_grid, save_png
    from dwscli.weights.inr import InrConventions, render

    if len(paths) > 1 and not grid:
        raise DwsError(
            f"{len(paths)} INRs given but one image to write", hint="pass --grid to tile them"
        )
    images = []
    for path in paths:
        checkpoint = load(path)
        conventions = InrConventions.from_metadata(checkpoint.metadata, source=str(checkpoint.path))
        if checkpoint.spec.input_dim != 2 or checkpoint.spec.output_dim != 1:
            raise DwsError(
                f"{checkpoint.path}: a {checkpoint.spec} network is not an image INR "
                "(which maps 2 coordinates to 1 value)"
            )
        images.append(render(checkpoint.space, conventions)[0])
    sizes = {tuple(i.shape) for i in images}
    if len(sizes) > 1:
        raise DwsError(f"the INRs render to different sizes {sorted(sizes)}; render them apart")
    picture = image_grid(torch.stack(images), columns=columns) if grid else images[0]
    written = save_png(picture, output, scale=scale, force=force)
    height, width = images[0].shape
    return {"output": str(written), "inrs": len(images), "image_size": [height, width]}


# ------------------------------------------------------------------------------------------
# processors: classify, edit, embed (INRs), predict-accuracy, adapt (classifiers)
#
# ``paths`` are files, directories, globs or ``example:NAME`` items, as on the command line.
# ``on_error(path, error)`` is told of each file that cannot be read or does not fit, which is
# then skipped (without it, or with ``fail_fast``, the first such error is raised);
# ``progress(n)`` is called after each chunk of ``n`` checkpoints.
# Every row (embed: the summary) says whether the input looks like the processor's training
# nets: ``ood_score``, ``in_distribution``, ``ood_reason`` (None when the processor's card records
# no ``ood`` section; see :mod:`dwscli.processors.ood`); ``on_warning(path, message)`` is told of
# each input out of distribution.

ErrorHandler = Callable[[Path, DwsError], None]
Progress = Callable[[int], None]
WarningHandler = Callable[[Path, str], None]


def _expanded(paths: PathLike | list[PathLike]) -> list[Path]:
    """Checkpoint files from user items; what the command line already expanded (an
    :class:`~dwscli.paths.ExpandedPaths`) is handed back as it is."""
    from dwscli.paths import ExpandedPaths, expand_paths

    if isinstance(paths, ExpandedPaths):
        return paths
    return expand_paths([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


def classify(
    paths: PathLike | list[PathLike],
    *,
    processor: str | None = None,
    top_k: int = 3,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """The class each INR draws: rows ``{"path", "class", "probability", "top_k", …}``
    (``dws classify``). ``force`` runs INRs whose conventions differ from the card's.

        >>> rows = api.classify("inrs/", top_k=3)  # doctest: +SKIP
    """
    from dwscli.processors.classify import classify as run

    return run(
        _expanded(paths),
        processor=processor,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        on_warning=on_warning,
    )


def edit(
    paths: PathLike | list[PathLike],
    *,
    op: str | None = None,
    processor: str | None = None,
    output: PathLike | None = None,
    out_dir: PathLike | None = None,
    preview: PathLike | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """Edit INRs in weight space (``op="dilate"``) and write them: rows ``{"input", "output",
    "ood_score", "in_distribution", "ood_reason"}`` (``dws edit``).

    >>> api.edit("example:mnist-inr", op="dilate", output="d.safetensors")  # doctest: +SKIP
    """
    from dwscli.processors.edit import edit as run

    return run(
        _expanded(paths),
        op=op,
        processor=processor,
        output=_path(output),
        out_dir=_path(out_dir),
        preview=_path(preview),
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        on_warning=on_warning,
    )


def embed(
    paths: PathLike | list[PathLike],
    output: PathLike,
    *,
    processor: str | None = None,
    plot: PathLike | None = None,
    color_by: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> dict[str, Any]:
    """Embed networks and write the rows to ``output`` (.npy, .csv, .jsonl, .safetensors)
    (``dws embed``).

    For the vectors themselves, without writing a file, use
    :func:`dwscli.processors.embed.compute_embeddings`.

        >>> api.embed("sines/", "emb.csv", plot="tsne.png", color_by="a")  # doctest: +SKIP
    """
    from dwscli.processors.embed import embed as run

    return run(
        _expanded(paths),
        output=Path(output),
        processor=processor,
        plot=_path(plot),
        color_by=color_by,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        on_warning=on_warning,
    )


def predict_accuracy(
    paths: PathLike | list[PathLike],
    *,
    processor: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """Predicted test accuracy of each classifier: rows ``{"path", "spec",
    "predicted_accuracy", "ood_score", "in_distribution", "ood_reason"}`` in input order
    (``dws predict-accuracy``).

        >>> api.predict_accuracy("example:fmnist-mlp")  # doctest: +SKIP
    """
    from dwscli.processors.accuracy import predict_accuracy as run

    return run(
        _expanded(paths),
        processor=processor,
        batch_size=batch_size,
        device=device,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        on_warning=on_warning,
    )


def adapt(
    paths: PathLike | list[PathLike],
    *,
    output: PathLike | None = None,
    out_dir: PathLike | None = None,
    processor: str | None = None,
    target: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """Adapt classifiers to the processor's target domain and write them (``dws adapt``):
    rows ``{"input", "output", "ood_score", "in_distribution", "ood_reason"}``. ``target``
    picks the shipped processor by its domain (``"rotation"``, ``"contrast:0.8"``;
    :func:`adapt_domains` lists them).

        >>> api.adapt("example:fmnist-mlp", output="adapted.safetensors")  # doctest: +SKIP
        >>> api.adapt("runs/", target="contrast", out_dir="adapted/")  # doctest: +SKIP
    """
    from dwscli.processors.adapt import adapt as run

    return run(
        _expanded(paths),
        output=_path(output),
        out_dir=_path(out_dir),
        processor=processor,
        target=target,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        on_warning=on_warning,
    )


# ------------------------------------------------------------------------------------------
# training and comparing


def evaluate(
    processor: str,
    zoo: PathLike,
    *,
    split: str = "test",
    max_nets: int | None = None,
    by: list[str] | None = None,
    where: str | None = None,
    batch_size: int = 128,
    device: str = "auto",
) -> Any:
    """Score a processor on a zoo split (``dws evaluate``): an ``Evaluation`` with the metrics
    its task reports in training, the card's metrics for that split, the fraction of the nets
    its OOD check flags, and (``by``) both per value of recorded recipe fields. ``split``:
    ``test``, ``val``, ``train``, ``test_heldout_recipe`` or ``all``. ``where``
    (``"psnr=25.."``: ``KEY=A|B`` or ``KEY=LOW..HIGH``, joined by commas) scores only the nets
    whose recorded recipe, fit metrics or labels meet it.

        >>> api.evaluate("sine-embed", "zoos/sines", by=["init"])  # doctest: +SKIP
    """
    from dwscli.train.evaluate_processor import evaluate as run

    return run(
        processor,
        Path(zoo),
        split=split,
        max_nets=max_nets,
        by=by,
        where=where,
        batch_size=batch_size,
        device=device,
    )


def load_train_config(config: PathLike, *, device: str | None = None) -> Any:
    """A training config read and checked (``TrainConfig``), ``device`` overriding its own."""
    from dwscli.train import load_config

    return load_config(config).with_device(device)


def train(
    config: Any,
    *,
    resume: bool = True,
    device: str | None = None,
    reporter: Any = None,
) -> Any:
    """Train a processor from a YAML config or a ``TrainConfig`` (``dws train``); returns a
    ``TrainResult``. ``resume`` continues an interrupted run; ``reporter`` hears of progress."""
    from dwscli.train import train as run

    return run(config, resume=resume, device=device, reporter=reporter)


def compare(
    config: Any,
    archs: str | list[str] | None = None,
    seeds: int | None = None,
    output: PathLike | None = None,
    *,
    device: str | None = None,
    epochs: int | None = None,
    max_train_nets: int | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    train_overrides: dict[str, dict[str, Any]] | None = None,
    resume: bool = True,
    fail_fast: bool = False,
    reporter: Any = None,
) -> Any:
    """Train several architectures on one split and budget (``dws compare``); returns a
    ``CompareResult`` (see :func:`dwscli.compare.compare` for every argument)."""
    from dwscli.compare import compare as run

    return run(
        config,
        archs,
        seeds,
        output,
        device=device,
        epochs=epochs,
        max_train_nets=max_train_nets,
        models=models,
        train_overrides=train_overrides,
        resume=resume,
        fail_fast=fail_fast,
        reporter=reporter,
    )


# ------------------------------------------------------------------------------------------
# zoos (twins of dws zoo inrs|sines|classifiers|info|export|merge)
#
# ``part`` is ``I/N`` (make only shard group I of N, for parallel runs joined by merge_zoos);
# ``progress(n)`` is called after each ``n`` nets. A maker returns the zoo when it is complete
# and None when only a part (or an interrupted run) was made.


def zoo_part_size(count: int, *, part: str | None, shard_size: int | None, spec: str) -> int:
    """Nets a (part of a) zoo run will make, e.g. for a progress bar."""
    from dwscli.data.zoo import default_shard_size, plan_shards, select_part

    plan = plan_shards(count, shard_size or default_shard_size(spec))
    return sum(len(r) for r in select_part(plan, part).values())


def inr_recipe(name: str = "default", **overrides: Any) -> Any:
    """The INR fitting settings of recipe ``name`` (``InrZooConfig``) with ``overrides`` (None
    values keep the recipe's); an unknown name is a one-line error."""
    from dwscli.data.zoo_make import inr_recipe as recipe

    return recipe(name, **overrides)


def make_inr_zoo(
    out_dir: PathLike,
    *,
    dataset: str,
    count: int | None = None,
    recipe: str = "default",
    steps: int | None = None,
    psnr_target: float | None = None,
    lr: float | None = None,
    spec: str | None = None,
    chunk: int | None = None,
    compiled: bool = True,
    shared_init: bool = False,
    test_first: bool = False,
    seed: int = 0,
    part: str | None = None,
    shard_size: int | None = None,
    hold_out: str | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Any:
    """One SIREN per image of MNIST or Fashion-MNIST (``dws zoo inrs``), resumable.

    ``recipe`` names a fitting preset (``default``, ``dwsnets``) whose options left at None keep
    the preset's value, or a recipe-diverse space (``diverse``, or a recipe file FILE.yaml)
    every net's fitting recipe is drawn from. ``hold_out`` (``"optimizer=sgd,init=dwsnets"``)
    puts the nets of that recipe region into the extra split ``test_heldout_recipe``."""
    from dwscli.data.zoo_make import inr_recipe
    from dwscli.data.zoo_make import make_inr_zoo as run

    config = inr_recipe(
        recipe,
        spec=spec,
        steps=steps,
        psnr_target=psnr_target,
        lr=lr,
        chunk=chunk,
        compiled=compiled,
        shared_init=shared_init,
    )
    return run(
        out_dir,
        part=part,
        progress=progress,
        dataset=dataset,
        count=count,
        config=config,
        seed=seed,
        shard_size=shard_size,
        test_first=test_first,
        hold_out=hold_out_region(hold_out),
    )


def hold_out_region(hold_out: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A held-out recipe region from its ``--hold-out`` text (``"optimizer=sgd,lr=1e-3..1e-2"``)
    or mapping; None stays None."""
    from dwscli.data.zoo_splits import parse_hold_out

    if hold_out is None:
        return None
    return parse_hold_out(hold_out) if isinstance(hold_out, str) else dict(hold_out)


def make_sine_zoo(
    out_dir: PathLike,
    *,
    count: int = 5000,
    spec: str = "1-32-32-1:sine;w0=30",
    steps: int = 1000,
    compiled: bool = True,
    recipe: str | None = None,
    seed: int = 0,
    part: str | None = None,
    shard_size: int | None = None,
    hold_out: str | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Any:
    """1-D SIRENs of a·sin(b·x), a and b recorded as labels (``dws zoo sines``).

    ``recipe`` (``diverse`` or a recipe file FILE.yaml) draws every net's fitting recipe from
    ranges (``steps`` is then unused); ``hold_out`` as for :func:`make_inr_zoo`."""
    from dwscli.data.recipes import resolve_recipe
    from dwscli.data.zoo_make import SineZooConfig
    from dwscli.data.zoo_make import make_sine_zoo as run

    ranges = resolve_recipe(recipe, "sine") if recipe is not None else None
    config = SineZooConfig(spec=spec, steps=steps, compiled=compiled, ranges=ranges)
    return run(
        out_dir,
        part=part,
        progress=progress,
        count=count,
        config=config,
        seed=seed,
        shard_size=shard_size,
        hold_out=hold_out_region(hold_out),
    )


def classifier_preset(name: str) -> Any:
    """The hyper-parameter ranges of a classifier-zoo preset (``spread``, ``adaptation``)."""
    from dwscli.data.classifier_train import PRESETS

    if name not in PRESETS:
        raise DwsError(f"unknown preset {name!r}", hint=f"choose {' or '.join(PRESETS)}")
    return PRESETS[name]


def make_classifier_zoo(
    out_dir: PathLike,
    *,
    dataset: str,
    count: int = 5000,
    preset: str = "spread",
    spec: str = "196-32-32-10:relu",
    pool: int = 2,
    eval_corruption: str | None = None,
    recipe: str | None = None,
    seed: int = 0,
    part: str | None = None,
    shard_size: int | None = None,
    hold_out: str | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Any:
    """MLP classifiers with spread hyper-parameters and their measured accuracies
    (``dws zoo classifiers``). ``recipe`` (``diverse`` or a recipe file FILE.yaml) also draws
    every net's optimiser, initialisation and minibatch size; ``hold_out`` as for
    :func:`make_inr_zoo`."""
    from dwscli.data.classifier_train import ClassifierZooConfig
    from dwscli.data.recipes import resolve_recipe
    from dwscli.data.zoo_make import make_classifier_zoo as run

    ranges = classifier_preset(preset)
    space = resolve_recipe(recipe, "classifier") if recipe is not None else None
    config = ClassifierZooConfig(
        spec=spec, pool=pool, eval_corruption=eval_corruption, ranges=ranges, recipe=space
    )
    return run(
        out_dir,
        part=part,
        progress=progress,
        dataset=dataset,
        count=count,
        config=config,
        seed=seed,
        shard_size=shard_size,
        hold_out=hold_out_region(hold_out),
    )


def split_zoo(
    directory: PathLike, *, hold_out: str | Mapping[str, Any] | None, force: bool = False
) -> Any:
    """Split a finished zoo again with a held-out recipe region (``dws zoo split``): the nets
    whose recipe lies in ``hold_out`` make up the split ``test_heldout_recipe`` and never
    appear in train or val. None removes the region. Rewrites ``zoo.json``'s split and
    ``splits.json`` (only with ``force`` when that changes the split)."""
    from dwscli.data.zoo_tools import resplit_zoo

    return resplit_zoo(directory, hold_out_region(hold_out), force=force)


def zoo_info(directory: PathLike) -> dict[str, Any]:
    """Counts, splits, spec and the distribution of every recorded metric and label."""
    from dwscli.data.zoo import zoo_info as run

    return run(directory)


def export_zoo(
    directory: PathLike,
    out_dir: PathLike,
    *,
    ids: list[str] | None = None,
    split: str | None = None,
    limit: int | None = None,
    force: bool = False,
) -> list[Path]:
    """Write nets of a zoo (``ids``, or the first ``limit`` of ``split``) as standalone
    checkpoints with their metadata (``dws zoo export``)."""
    from dwscli.data.zoo import Zoo

    zoo = Zoo.open(directory)
    if ids is not None:
        chosen = list(ids)
    elif split:
        chosen = zoo.ids(split)
    else:
        raise DwsError("say which nets to export", hint="pass --ids ID,ID,... or --split test")
    chosen = chosen[:limit] if limit else chosen
    return zoo.export(chosen, out_dir, force=force)  # creates out_dir only when it writes


def merge_zoos(parts: list[PathLike], out_dir: PathLike) -> Any:
    """Join zoo parts made with ``part=I/N`` into one zoo (``dws zoo merge``)."""
    from dwscli.data.zoo import merge_zoos as run

    return run([*parts], out_dir)


def data_status(names: str | list[str] | None = None) -> list[dict[str, Any]]:
    """Where each image data set is found (``dws data status``): rows ``{"dataset",
    "installed", "location", "install"}``."""
    from dwscli.data.install import data_status as run

    return run([names] if isinstance(names, str) else names)


def install_data(
    names: str | list[str] | None = None, *, force: bool = False, **options: Any
) -> list[dict[str, Any]]:
    """Install MNIST and Fashion-MNIST where dws finds them (``dws data install``): rows
    ``{"dataset", "action", "location"}``; already installed sets are left alone unless ``force``.

        >>> api.install_data("fashion-mnist")  # doctest: +SKIP
    """
    from dwscli.data.install import install_datasets as run

    return run([names] if isinstance(names, str) else names, force=force, **options)


__all__ = [
    "CHECK_INPUTS",
    "PermuteResult",
    "adapt",
    "adapt_domains",
    "check_equivariance",
    "classifier_preset",
    "classify",
    "compare",
    "data_status",
    "edit",
    "embed",
    "evaluate",
    "export_zoo",
    "hold_out_region",
    "inr_recipe",
    "inspect_checkpoint",
    "install_data",
    "load",
    "load_train_config",
    "make_classifier_zoo",
    "make_inr_zoo",
    "make_sine_zoo",
    "max_output_difference",
    "merge_zoos",
    "permute_checkpoint",
    "predict_accuracy",
    "processors",
    "render_inrs",
    "split_zoo",
    "train",
    "zoo_info",
    "zoo_part_size",
]
