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
    from dwscli.weights.fileformat import output_path
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


def processors() -> list[ProcessorCard]:
    """The shipped processors (see :mod:`dwscli.processors.registry`)."""
    return list_processors()


def check_equivariance(processor: str | None = None, *, seed: int = 0) -> list[dict[str, Any]]:
    """Equivariance/invariance checks: of the library's layers, or of one processor.

    Each row is ``{"module", "spec", "kind", "max_error", "passed"}``.
    """
    from dwscli.nn import equivariance

    if processor is None:
        return list(equivariance.self_check(seed=seed))
    return list(equivariance.check_processor(processor, seed=seed))


__all__ = [
    "CHECK_INPUTS",
    "PermuteResult",
    "check_equivariance",
    "inspect_checkpoint",
    "load",
    "max_output_difference",
    "permute_checkpoint",
    "processors",
]


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
# INR processors: classify, edit, embed (see dwscli.processors.inr for every option)


def _expanded(paths: PathLike | list[PathLike]) -> list[Path]:
    from dwscli.paths import expand_paths

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return expand_paths(items)


def classify(
    paths: PathLike | list[PathLike], *, processor: str | None = None, **options: Any
) -> list[dict[str, Any]]:
    """The class each INR draws: rows ``{"path", "class", "probability", "top_k", …}``.

    ``paths`` are files, directories, globs or ``example:NAME`` items, as on the command line.

        >>> rows = api.classify("inrs/", top_k=3)  # doctest: +SKIP
    """
    from dwscli.processors.inr import classify as run

    return run(_expanded(paths), processor=processor, **options)


def edit(
    paths: PathLike | list[PathLike],
    *,
    op: str | None = None,
    output: PathLike | None = None,
    out_dir: PathLike | None = None,
    preview: PathLike | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Edit INRs in weight space (``op="dilate"``) and write them: rows ``{"input", "output"}``.

    >>> api.edit("example:mnist-inr", op="dilate", output="d.safetensors")  # doctest: +SKIP
    """
    from dwscli.processors.inr import edit as run

    return run(
        _expanded(paths),
        op=op,
        output=None if output is None else Path(output),
        out_dir=None if out_dir is None else Path(out_dir),
        preview=None if preview is None else Path(preview),
        **options,
    )


def embed(
    paths: PathLike | list[PathLike],
    output: PathLike,
    *,
    plot: PathLike | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Embed networks and write the rows to ``output`` (.npy, .csv, .jsonl, .safetensors).

    For the vectors themselves, without writing a file, use
    :func:`dwscli.processors.inr.compute_embeddings`.

        >>> api.embed("sines/", "emb.csv", plot="tsne.png", color_by="a")  # doctest: +SKIP
    """
    from dwscli.processors.inr import embed as run

    return run(
        _expanded(paths),
        output=Path(output),
        plot=None if plot is None else Path(plot),
        **options,
    )


# ------------------------------------------------------------------------------------------
# classifier processors, training and comparing (twins of predict-accuracy, adapt, train, compare)


def predict_accuracy(
    paths: PathLike | list[PathLike], *, processor: str | None = None, **options: Any
) -> list[dict[str, Any]]:
    """Predicted test accuracy of each classifier: rows ``{"path", "spec",
    "predicted_accuracy"}`` in input order (``dws predict-accuracy``).

        >>> api.predict_accuracy("example:fmnist-mlp")  # doctest: +SKIP
    """
    from dwscli.processors.run import predict_accuracy as run

    return run(_expanded(paths), processor=processor, **options)


def adapt(
    paths: PathLike | list[PathLike],
    *,
    output: PathLike | None = None,
    out_dir: PathLike | None = None,
    processor: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Adapt classifiers to the processor's target domain and write them (``dws adapt``):
    rows ``{"input", "output"}``.

        >>> api.adapt("example:fmnist-mlp", output="adapted.safetensors")  # doctest: +SKIP
    """
    from dwscli.processors.run import adapt as run

    return run(
        _expanded(paths),
        output=None if output is None else Path(output),
        out_dir=None if out_dir is None else Path(out_dir),
        processor=processor,
        **options,
    )


def train(config: PathLike, **options: Any) -> Any:
    """Train a processor from a YAML config (``dws train``); returns a ``TrainResult``."""
    from dwscli.train import train as run

    return run(config, **options)


def compare(config: PathLike, archs: str | list[str], **options: Any) -> Any:
    """Train several architectures on one split and budget (``dws compare``)."""
    from dwscli.compare import compare as run

    return run(config, archs, **options)


__all__ += ["adapt", "classify", "compare", "edit", "embed", "predict_accuracy", "train"]
