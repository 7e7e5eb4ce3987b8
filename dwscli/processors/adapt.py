"""``dws adapt``: classifiers adapted to a processor's target domain, written as new files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dwscli.processors.accuracy import open_for_task
from dwscli.processors.pipeline import (
    ErrorHandler,
    Progress,
    load_items,
    output_path_for,
    transform_and_write,
)
from dwscli.runtime import resolve_device
from dwscli.weights.atomic import check_out_dir


def adapt(
    paths: list[Path],
    *,
    output: Path | None = None,
    out_dir: Path | None = None,
    processor: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Adapt classifiers to the processor's target domain: new weights, written beside.

    Outputs keep each input's keys, dtypes and metadata, plus provenance (processor, version).
    """
    target = resolve_device(device)
    model_processor = open_for_task(processor, "adapt", target)
    if out_dir is not None:
        check_out_dir(out_dir)  # created when the first output is written
    destinations = [output_path_for(Path(p), output, out_dir, len(paths)) for p in paths]
    loaded = load_items(paths, lambda _: model_processor, fail_fast=fail_fast, on_error=on_error)
    provenance = {
        "operation": "adapt",
        "processor": model_processor.name,
        "processor_version": model_processor.card.version,
        "target_domain": model_processor.card.target_domain or "",
    }
    return transform_and_write(
        loaded,
        model_processor.model,
        destinations,
        provenance,
        device=target,
        batch_size=batch_size,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        out_dir=out_dir,
    )


__all__ = ["adapt"]
