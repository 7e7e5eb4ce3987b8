"""``dws adapt``: classifiers adapted to a processor's target domain, written as new files.

The processor is ``-p``, or the shipped one for the domain ``target`` names
(:func:`~dwscli.processors.registry.adapt_processors_for`; when several are shipped for it,
each input goes to the first that accepts its spec, the default first), or the shipped default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError
from dwscli.processors.accuracy import open_for_task
from dwscli.processors.loading import Processor
from dwscli.processors.pipeline import (
    ErrorHandler,
    ProcessorUnavailable,
    Progress,
    WarningHandler,
    load_items,
    open_processor,
    output_path_for,
    transform_and_write,
)
from dwscli.processors.registry import (
    ADAPT_TASK,
    adapt_processors_for,
    check_adapt_domain,
    preferred_for_spec,
)
from dwscli.runtime import resolve_device
from dwscli.weights.atomic import check_out_dir
from dwscli.weights.checkpoint import Checkpoint


def provenance_of(processor: Processor) -> Mapping[str, str]:
    """What an adapted file records of the processor that made it."""
    return {
        "operation": "adapt",
        "processor": processor.name,
        "processor_version": processor.card.version,
        "target_domain": processor.card.target_domain or "",
    }


def adapt_chooser(
    processor: str | None, target: str | None, device: torch.device
) -> Callable[[Checkpoint], Processor]:
    """Which processor adapts each checkpoint. A named processor, the only match for
    ``target`` or the default is opened at once, so its errors come before the files'."""
    if processor is not None or target is None:
        named = open_for_task(processor, ADAPT_TASK, device)
        if target is not None:
            check_adapt_domain(named.card, target)
        return lambda _: named
    candidates = adapt_processors_for(target)
    opened: dict[str, Processor] = {}

    def open_card(name: str) -> Processor:
        if name not in opened:
            try:
                opened[name] = open_processor(name, device)
            except DwsError as error:
                raise ProcessorUnavailable.of(error) from error
        return opened[name]

    if len(candidates) == 1:
        only = open_card(candidates[0].name)
        return lambda _: only
    return lambda checkpoint: open_card(preferred_for_spec(candidates, checkpoint.spec).name)


def adapt(
    paths: list[Path],
    *,
    output: Path | None = None,
    out_dir: Path | None = None,
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
    """Adapt classifiers to the processor's target domain: new weights, written beside.

    ``target`` picks the shipped processor by its domain (``rotation``, ``contrast:0.8``); with
    ``processor`` too, the two must agree. Outputs keep each input's keys, dtypes and metadata,
    plus provenance (processor, version, target domain). Rows: ``{"input", "output",
    "ood_score", "in_distribution", "ood_reason"}`` (:mod:`dwscli.processors.ood`;
    ``on_warning`` hears of each input out of distribution).
    """
    target_device = resolve_device(device)
    choose = adapt_chooser(processor, target, target_device)
    if out_dir is not None:
        check_out_dir(out_dir)  # created when the first output is written
    destinations = [output_path_for(Path(p), output, out_dir, len(paths)) for p in paths]
    loaded = load_items(paths, choose, fail_fast=fail_fast, on_error=on_error)
    return transform_and_write(
        loaded,
        None,
        destinations,
        provenance_of,
        device=target_device,
        batch_size=batch_size,
        force=force,
        fail_fast=fail_fast,
        on_error=on_error,
        progress=progress,
        out_dir=out_dir,
        on_warning=on_warning,
    )


__all__ = ["adapt", "adapt_chooser", "provenance_of"]
