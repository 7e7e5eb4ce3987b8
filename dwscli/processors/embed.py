"""``dws embed``: one vector per network, from an invariant processor, written to a file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.nn.models import pooled_features
from dwscli.nn.streaming import forward_within_memory
from dwscli.processors.loading import Processor
from dwscli.processors.pipeline import (
    ErrorHandler,
    Progress,
    WarningHandler,
    assess,
    chunks,
    load_items,
    open_processor,
    output_type,
    stack,
)
from dwscli.processors.registry import default_processor
from dwscli.runtime import resolve_device
from dwscli.weights.space import WeightSpace


@dataclass
class Embeddings:
    """Embedding vectors of checkpoints, one row per file that could be embedded."""

    paths: list[str]
    vectors: Tensor  # [N, D] float32, CPU
    metadata: list[dict[str, str]]
    processor: str
    processor_version: str
    source: str  # "output" (the processor's output) or "pooled features" (before the head)
    #: per row: ``ood_score``, ``in_distribution``, ``ood_reason`` (see dwscli.processors.ood)
    ood: list[dict[str, Any]] = field(default_factory=list)

    @property
    def out_of_distribution(self) -> list[str]:
        """The paths of the rows unlike the processor's training nets."""
        return [p for p, o in zip(self.paths, self.ood) if o.get("in_distribution") is False]


def _embedding_function(embedder: Processor) -> tuple[Callable[[WeightSpace], Tensor], str]:
    model = embedder.model
    pooled_embedding = embedder.card.output.get("embedding") == "pooled"
    if not pooled_embedding and (
        embedder.card.task == "embed" or output_type(embedder) == "embedding"
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
    on_warning: WarningHandler | None = None,
) -> Embeddings:
    """Embed each checkpoint with an invariant processor (default: the shipped ``embed`` processor).

    An ``embed`` processor gives what its card says: its output (``embedding: output``) or its
    pooled features before the head (``embedding: pooled``, e.g. ``sine-embed``); any other
    invariant processor gives its pooled features (or its output, for architectures without
    them). Each row is scored against the processor's training nets (``Embeddings.ood``;
    ``on_warning`` hears of each one out of distribution).
    """
    target = resolve_device(device)
    embedder = open_processor(processor or default_processor("embed").name, target)
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
            space = stack(chunk, target)
            assess(chunk, space, on_warning)
            out = forward_within_memory(function, space).float().cpu()
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
        processor_version=embedder.card.version,
        source=source,
        ood=[by_index[k].ood_fields() for k in order],
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
    on_warning: WarningHandler | None = None,
) -> dict[str, Any]:
    """Embed checkpoints and write the vectors (``.npy``, ``.csv``, ``.jsonl``, ``.safetensors``).

    Rows are in input order. ``.npy`` holds the matrix only, with the paths one a line in
    ``OUT.paths.txt`` beside it; ``.csv`` has a ``path`` column then ``e0``, ``e1``, …;
    ``.jsonl`` one ``{"path", "embedding"}`` a line; ``.safetensors`` the tensor
    ``embeddings`` ``[N, D]`` with the paths as JSON in its metadata. ``plot`` writes a 2-D
    t-SNE PNG (at least 3 rows), coloured by the metadata field ``color_by`` when given.
    ``force`` overwrites existing outputs and runs INRs whose conventions differ from the card.
    Returns a summary: ``{"output", "files", "rows", "dim", "processor", "source", "plot",
    "out_of_distribution"}``, the last the paths of the inputs unlike the processor's training
    nets (``on_warning`` hears of each; :mod:`dwscli.processors.ood`), None when its card
    records no ``ood`` section.
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
        on_warning=on_warning,
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
        "out_of_distribution": (
            result.out_of_distribution
            if any(o.get("in_distribution") is not None for o in result.ood)
            else None
        ),
    }


__all__ = ["Embeddings", "compute_embeddings", "embed"]
