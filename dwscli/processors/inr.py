"""Processors for INRs: classify what an INR draws, edit it in weight space, embed networks.

The API behind ``dws classify``, ``dws edit`` and ``dws embed``. Each function takes checkpoint
files (already expanded, see :mod:`dwscli.paths`), checks each against its processor (spec and
INR conventions, see :mod:`dwscli.processors.inr_checks`), runs one forward pass per chunk of
nets with identical widths, and reports a file that cannot be read or does not fit through
``on_error`` (or raises at once with ``fail_fast``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.nn.models import pooled_features
from dwscli.processors.inr_checks import (
    CLASSIFIERS_BY_DATASET,
    DEFAULT_CLASSIFIER,
    DEFAULT_EMBEDDER,
    EDIT_PROCESSOR_PATTERN,
    Item,
    ProcessorUnavailable,
    card_section,
    chunks,
    load_items,
    open_inr_processor,
    output_type,
    require,
    shown_value,
    stack,
)
from dwscli.processors.loading import Processor
from dwscli.processors.run import ErrorHandler, output_path_for, transform_and_write
from dwscli.runtime import resolve_device
from dwscli.weights.atomic import check_out_dir
from dwscli.weights.checkpoint import Checkpoint
from dwscli.weights.space import WeightSpace

Progress = Callable[[int], None]
PREVIEW_ROWS = 16
_DATASET_KEYS = ("dws.zoo.dataset", "dataset")


# ------------------------------------------------------------------------------------------
# classify


def _dataset_of(checkpoint: Checkpoint) -> str | None:
    from dwscli.data.datasets import canonical_name

    for key in _DATASET_KEYS:
        value = checkpoint.metadata.get(key)
        if value:
            try:
                return canonical_name(value)
            except DwsError:
                return value
    return None


def default_classifier(checkpoint: Checkpoint) -> str:
    """The shipped classifier for the data set the INR's metadata records (default: MNIST's)."""
    dataset = _dataset_of(checkpoint)
    if dataset is None:
        return DEFAULT_CLASSIFIER
    if dataset not in CLASSIFIERS_BY_DATASET:
        raise DwsError(
            f"{checkpoint.path}: no shipped classifier for INRs of {dataset}",
            hint=f"pass -p PROCESSOR (shipped for: {', '.join(CLASSIFIERS_BY_DATASET)})",
        )
    return CLASSIFIERS_BY_DATASET[dataset]


def class_names(processor: Processor, count: int) -> list[str]:
    """Names of ``count`` classes: the card's ``output.class_names``, the data set's, or indices."""
    from dwscli.data.datasets import DATASETS, canonical_name

    output = card_section(processor, "output")
    names = output.get("class_names")
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    dataset = card_section(processor, "input").get("dataset")
    if dataset:
        try:
            known = DATASETS[canonical_name(str(dataset))].classes
        except (DwsError, KeyError):
            known = ()
        if len(known) == count:
            return list(known)
    return [str(k) for k in range(count)]


def _true_label(checkpoint: Checkpoint, processor: Processor, names: list[str]) -> str | None:
    """The label the checkpoint's metadata records for the card's target, as a class name."""
    target = str(card_section(processor, "output").get("target") or "labels.label")
    key = target.split(".", 1)[-1]
    for meta_key in (f"dws.zoo.label.{key}", key):
        value = checkpoint.metadata.get(meta_key)
        if value is not None:
            try:
                index = int(value)
            except ValueError:
                return value
            return names[index] if 0 <= index < len(names) else value
    return None


def _open_classifier(name: str, target: torch.device, *, default: bool) -> Processor:
    try:
        found = open_inr_processor(name, target, default=default)
        require(found, tasks=("inr-classify",), kind="invariant", what="classify")
    except DwsError as error:
        raise ProcessorUnavailable.of(error) from error
    return found


def classify(
    paths: list[Path],
    *,
    processor: str | None = None,
    top_k: int = 3,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """The class of the image each INR represents, from its weights alone.

    Without ``processor`` each INR goes to the shipped classifier of the data set its metadata
    records (``dws.zoo.dataset``), else ``mnist-inr-classify``. Rows come back in input order:
    ``{"path", "spec", "processor", "class", "class_index", "probability", "top_k"}`` (a list
    of ``{"class", "class_index", "probability"}``), plus ``"label"`` when the metadata
    records the true one. ``force`` runs INRs whose conventions differ from the card's.
    """
    if top_k < 1:
        raise DwsError(f"--top-k must be at least 1, got {top_k}")
    target = resolve_device(device)
    opened: dict[str, Processor] = {}
    if processor is not None:  # a named processor is opened first: its errors come before files'
        opened[processor] = _open_classifier(processor, target, default=False)

    def choose(checkpoint: Checkpoint) -> Processor:
        name = processor or default_classifier(checkpoint)
        if name not in opened:
            opened[name] = _open_classifier(name, target, default=True)
        return opened[name]

    items = load_items(paths, choose, force=force, fail_fast=fail_fast, on_error=on_error)
    rows: dict[int, dict[str, Any]] = {}
    with torch.no_grad():
        for chunk in chunks(items, batch_size):
            model_processor = chunk[0].processor
            probabilities = torch.softmax(model_processor.model(stack(chunk, target)).float(), 1)
            names = class_names(model_processor, int(probabilities.shape[1]))
            k = min(top_k, probabilities.shape[1])
            values, indices = probabilities.cpu().topk(k, dim=1)
            for item, top_p, top_i in zip(chunk, values.tolist(), indices.tolist()):
                ranked = [
                    {"class": names[i], "class_index": i, "probability": round(p, 6)}
                    for p, i in zip(top_p, top_i)
                ]
                row = {
                    "path": str(item.checkpoint.path),
                    "spec": str(item.checkpoint.spec),
                    "processor": model_processor.name,
                    **ranked[0],
                    "top_k": ranked,
                }
                label = _true_label(item.checkpoint, model_processor, names)
                if label is not None:
                    row["label"] = label
                rows[item.index] = row
            if progress:
                progress(len(chunk))
    return [rows[k] for k in sorted(rows)]


# ------------------------------------------------------------------------------------------
# edit


def _edit_section(processor: Processor) -> dict[str, Any]:
    return card_section(processor, "edit")


def _open_editor(op: str | None, processor: str | None, target: torch.device) -> Processor:
    from dwscli.data.edits import check_op

    if op is None and processor is None:
        raise DwsError("say which edit", hint="pass --op OP (e.g. dilate) or -p PROCESSOR")
    if op is not None:
        check_op(op)
    name = processor or EDIT_PROCESSOR_PATTERN.format(op=op)
    editor = open_inr_processor(name, target, default=processor is None)
    require(editor, tasks=("inr-edit",), kind="equivariant", what="edit")
    recorded = _edit_section(editor).get("op")
    if op is not None and recorded is not None and str(recorded) != op:
        raise DwsError(f"processor {editor.name} does the edit {recorded!r}, not {op!r}")
    if editor.spec.input_dim != 2 or editor.spec.output_dim != 1:
        raise DwsError(f"processor {editor.name} takes {editor.spec} nets, not image INRs")
    return editor


def _conventions_for(checkpoint: Checkpoint, processor: Processor):
    """Rendering conventions: the checkpoint's ``inr.*`` metadata over the card's."""
    from dwscli.weights.inr import InrConventions

    merged: dict[str, str] = {}
    card = card_section(processor, "input").get("conventions") or {}
    if isinstance(card, Mapping):
        for key, value in card.items():
            merged[f"inr.{key}"] = shown_value(str(key), value)
    merged.update({k: v for k, v in checkpoint.metadata.items() if k.startswith("inr.")})
    return InrConventions.from_metadata(merged, source=str(checkpoint.path))


def _check_preview_target(preview: Path, paths: list[Path], force: bool) -> None:
    from dwscli.weights.atomic import check_writable_target

    if preview.suffix.lower() != ".png":
        raise DwsError(f"{preview}: the preview is written as PNG; use a .png file name")
    for path in paths:
        try:
            if preview.resolve() == Path(path).resolve():
                raise DwsError(f"{preview}: is an input; refusing to write the preview over it")
        except OSError:
            continue
    check_writable_target(preview, force=force)


def edit(
    paths: list[Path],
    *,
    op: str | None = None,
    processor: str | None = None,
    output: Path | None = None,
    out_dir: Path | None = None,
    preview: Path | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Edit what each INR draws (``op``: dilate, …) in one forward pass, writing new INRs.

    The processor is ``-p`` or the shipped ``mnist-inr-<op>``. Outputs keep each input's keys,
    dtypes and metadata, plus provenance (``dws.operation=edit``, ``dws.edit_op``,
    ``dws.processor``, ``dws.processor_version``). ``preview`` writes a PNG with one row per
    input (the first 16): input | processor output | the input's rendering edited in pixels.
    ``force`` overwrites existing outputs and runs INRs whose conventions differ from the card.
    Rows: ``{"input", "output"}`` in input order.
    """
    target = resolve_device(device)
    editor = _open_editor(op, processor, target)
    op = op or str(_edit_section(editor).get("op") or "")
    if preview is not None:
        _check_preview_target(preview, paths, force)
    if out_dir is not None:
        check_out_dir(out_dir)  # created when the first output is written
    destinations = [output_path_for(Path(p), output, out_dir, len(paths)) for p in paths]
    items = load_items(paths, lambda _: editor, force=force, fail_fast=fail_fast, on_error=on_error)
    provenance = {
        "operation": "edit",
        "edit_op": op,
        "processor": editor.name,
        "processor_version": str(editor.card.get("version", "")),
    }
    shown: list[tuple[Checkpoint, WeightSpace]] = []

    def keep_for_preview(item: Item, new: WeightSpace) -> None:
        if preview is not None and len(shown) < PREVIEW_ROWS:
            shown.append((item.checkpoint, new))

    rows = transform_and_write(
        items,
        editor.model,
        destinations,
        provenance,
        device=target,
        batch_size=batch_size,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        written_hook=keep_for_preview,
        out_dir=out_dir,
    )
    if preview is not None and shown:
        write_preview(preview, shown, editor, op, force=force)
    return rows


def write_preview(
    path: Path,
    shown: list[tuple[Checkpoint, WeightSpace]],
    editor: Processor,
    op: str,
    *,
    force: bool = False,
) -> Path:
    """PNG grid, one row per INR: input | processor output | input edited in pixel space."""
    from dwscli.data.edits import edit_images
    from dwscli.images import image_grid, save_png
    from dwscli.weights.inr import render

    params = {k: v for k, v in _edit_section(editor).items() if k != "op"}
    tiles: list[Tensor] = []
    size: tuple[int, int] | None = None
    for checkpoint, new in shown:
        conventions = _conventions_for(checkpoint, editor)
        if size is None:
            size = (conventions.height, conventions.width)
        if (conventions.height, conventions.width) != size:
            continue  # one grid holds one image size: the first INR's
        before = render(checkpoint.space.to(torch.float32), conventions)
        after = render(new.to(torch.float32), conventions)
        reference = edit_images(before, op, **params).clamp(0, 1)
        tiles += [before[0], after[0], reference[0]]
    return save_png(image_grid(torch.stack(tiles), columns=3), path, scale=4, force=force)


# ------------------------------------------------------------------------------------------
# embed


@dataclass
class Embeddings:
    """Embedding vectors of checkpoints, one row per file that could be embedded."""

    paths: list[str]
    vectors: Tensor  # [N, D] float32, CPU
    metadata: list[dict[str, str]]
    processor: str
    processor_version: str
    source: str  # "output" (the processor's output) or "pooled features" (before the head)


def _embedding_function(embedder: Processor) -> tuple[Callable[[WeightSpace], Tensor], str]:
    model = embedder.model
    pooled_embedding = card_section(embedder, "output").get("embedding") == "pooled"
    if not pooled_embedding and (
        embedder.card.get("task") == "embed" or output_type(embedder) == "embedding"
    ):
        return model, "output"
    features = pooled_features(model)
    if features is not None:
        return features, "pooled features"
    if pooled_embedding:
        raise DwsError(
            f"processor {embedder.name}: its card says the embedding is the pooled features, "
            f"but its model ({type(model).__name__}) has none"
        )
    return model, "output"


def compute_embeddings(
    paths: list[Path],
    *,
    processor: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
) -> Embeddings:
    """Embed each checkpoint with an invariant processor (default ``sine-embed``).

    An ``embed`` processor gives what its card says: its output (``embedding: output``) or its
    pooled features before the head (``embedding: pooled``, e.g. ``sine-embed``); any other
    invariant processor gives its pooled features (or its output, for architectures without
    them).
    """
    target = resolve_device(device)
    embedder = open_inr_processor(processor or DEFAULT_EMBEDDER, target, default=processor is None)
    if embedder.kind != "invariant":
        raise DwsError(
            f"processor {embedder.name} is {embedder.kind}; embed needs an invariant processor"
        )
    function, source = _embedding_function(embedder)
    items = load_items(
        paths, lambda _: embedder, force=force, fail_fast=fail_fast, on_error=on_error
    )
    vectors: dict[int, Tensor] = {}
    with torch.no_grad():
        for chunk in chunks(items, batch_size):
            out = function(stack(chunk, target)).float().cpu()
            for row, item in enumerate(chunk):
                vectors[item.index] = out[row].reshape(-1)
            if progress:
                progress(len(chunk))
    by_index = {item.index: item for item in items}
    order = sorted(vectors)
    dim = int(vectors[order[0]].numel()) if order else 0
    return Embeddings(
        paths=[str(by_index[k].checkpoint.path) for k in order],
        vectors=torch.stack([vectors[k] for k in order]) if order else torch.zeros(0, dim),
        metadata=[dict(by_index[k].checkpoint.metadata) for k in order],
        processor=embedder.name,
        processor_version=str(embedder.card.get("version", "")),
        source=source,
    )


def embed(
    paths: list[Path],
    *,
    output: Path,
    processor: str | None = None,
    plot: Path | None = None,
    color_by: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Embed checkpoints and write the vectors (``.npy``, ``.csv``, ``.jsonl``, ``.safetensors``).

    Rows are in input order. ``.npy`` holds the matrix only, with the paths one a line in
    ``OUT.paths.txt`` beside it; ``.csv`` has a ``path`` column then ``e0``, ``e1``, …;
    ``.jsonl`` one ``{"path", "embedding"}`` a line; ``.safetensors`` the tensor
    ``embeddings`` ``[N, D]`` with the paths as JSON in its metadata. ``plot`` writes a 2-D
    t-SNE PNG (at least 3 rows), coloured by the metadata field ``color_by`` when given.
    ``force`` overwrites existing outputs and runs INRs whose conventions differ from the card.
    Returns a summary: ``{"output", "files", "rows", "dim", "processor", "source", "plot"}``.
    """
    from dwscli.processors import embedding_files as files

    if color_by is not None and plot is None:
        raise DwsError("--color-by colours the t-SNE plot; pass --plot FILE.png too", exit_code=2)
    files.check_targets(output, plot, force=force)
    result = compute_embeddings(
        paths,
        processor=processor,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
    )
    count = len(result.paths)
    if count == 0:
        raise DwsError("no checkpoint could be embedded; nothing written")
    colors = points = None
    if plot is not None:  # everything that can fail comes before the first file is written
        if count < 3:
            raise DwsError(f"a t-SNE plot needs at least 3 embedded checkpoints, got {count}")
        if color_by is not None:
            colors = files.color_values(result.metadata, color_by)
        points = files.tsne_2d(result.vectors.numpy())
    metadata = {
        "dws.processor": result.processor,
        "dws.processor_version": result.processor_version,
        "dws.embedding_source": result.source,
    }
    written = files.write_embeddings(
        output, result.paths, result.vectors.numpy(), metadata=metadata, force=force
    )
    plotted = None
    if plot is not None and points is not None:
        plotted = files.plot_points(
            plot,
            points,
            colors=colors,
            color_by=color_by,
            title=f"t-SNE of {count} embeddings ({result.processor})",
            force=force,
        )
    return {
        "output": str(output),
        "files": [str(p) for p in written],
        "rows": count,
        "dim": int(result.vectors.shape[1]),
        "processor": result.processor,
        "source": result.source,
        "plot": None if plotted is None else str(plotted),
    }


__all__ = [
    "Embeddings",
    "class_names",
    "classify",
    "compute_embeddings",
    "default_classifier",
    "edit",
    "embed",
]
