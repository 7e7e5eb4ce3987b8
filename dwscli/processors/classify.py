"""``dws classify``: the class of the image each INR draws, from its weights alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError
from dwscli.nn.streaming import forward_within_memory
from dwscli.processors.loading import Processor
from dwscli.processors.pipeline import (
    ErrorHandler,
    ProcessorUnavailable,
    Progress,
    WarningHandler,
    assess,
    chunks,
    load_items,
    open_processor,
    require,
    stack,
)
from dwscli.processors.registry import default_processor, list_processors
from dwscli.runtime import resolve_device
from dwscli.weights.checkpoint import Checkpoint

_DATASET_KEYS = ("dws.zoo.dataset", "dataset")


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
    """The shipped classifier for the data set the INR's metadata records (without one: the
    card marked ``fallback``); of several, the one that accepts the INR's architecture."""
    dataset = _dataset_of(checkpoint)
    try:
        return default_processor("inr-classify", dataset=dataset, spec=checkpoint.spec).name
    except DwsError as error:
        if dataset is None:
            raise ProcessorUnavailable.of(error) from error
        shipped = [
            card.default_for.dataset
            for card in list_processors()
            if card.default_for is not None
            and card.default_for.task == "inr-classify"
            and card.default_for.dataset
        ]
        raise DwsError(
            f"{checkpoint.path}: no shipped classifier for INRs of {dataset}",
            hint=f"pass -p PROCESSOR (shipped for: {', '.join(shipped)})",
        ) from error


def class_names(processor: Processor, count: int) -> list[str]:
    """Names of ``count`` classes: the card's ``output.class_names``, the data set's, or indices."""
    from dwscli.data.datasets import DATASETS, canonical_name

    names = processor.card.output.get("class_names")
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    dataset = processor.card.input.dataset
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
    target = str(processor.card.output.get("target") or "labels.label")
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


def _open_classifier(name: str, target: torch.device) -> Processor:
    try:
        found = open_processor(name, target)
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
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """The class of the image each INR represents, from its weights alone.

    Without ``processor`` each INR goes to the shipped classifier of the data set its metadata
    records (``dws.zoo.dataset``), as the cards' ``default_for`` say. Rows come back in input order:
    ``{"path", "spec", "processor", "class", "class_index", "probability", "top_k"}`` (a list
    of ``{"class", "class_index", "probability"}``), ``"ood_score"``, ``"in_distribution"``
    and ``"ood_reason"`` (:mod:`dwscli.processors.ood`; ``on_warning`` hears of each INR out of
    distribution), plus ``"label"`` when the metadata records the true one. ``force`` runs
    INRs whose conventions differ from the card's.
    """
    if top_k < 1:
        raise DwsError(f"--top-k must be at least 1, got {top_k}")
    target = resolve_device(device)
    opened: dict[str, Processor] = {}
    if processor is not None:  # a named processor is opened first: its errors come before files'
        opened[processor] = _open_classifier(processor, target)

    def choose(checkpoint: Checkpoint) -> Processor:
        name = processor or default_classifier(checkpoint)
        if name not in opened:
            opened[name] = _open_classifier(name, target)
        return opened[name]

    items = load_items(paths, choose, force=force, fail_fast=fail_fast, on_error=on_error)
    rows: dict[int, dict[str, Any]] = {}
    with torch.no_grad():
        for chunk in chunks(items, batch_size):
            model_processor = chunk[0].processor
            space = stack(chunk, target)
            assess(chunk, space, on_warning)
            logits = forward_within_memory(model_processor.model, space)
            probabilities = torch.softmax(logits.float(), 1)
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
                    **item.ood_fields(),
                }
                label = _true_label(item.checkpoint, model_processor, names)
                if label is not None:
                    row["label"] = label
                rows[item.index] = row
            if progress:
                progress(len(chunk))
    return [rows[k] for k in sorted(rows)]


__all__ = ["class_names", "classify", "default_classifier"]
