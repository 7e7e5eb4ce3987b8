"""``dws predict-accuracy``: a classifier's test accuracy, predicted from its weights alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError
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
    stack,
)
from dwscli.processors.registry import default_processor
from dwscli.runtime import resolve_device


def open_for_task(name_or_path: str | None, task: str, device: torch.device) -> Processor:
    """The named processor, or the shipped default for ``task``; it must do ``task``."""
    name = name_or_path or default_processor(task).name
    processor = open_processor(name, device)
    if processor.card.task != task:
        raise DwsError(
            f"processor {processor.name} does task {processor.card.task!r}, not {task!r}"
        )
    return processor


def predict_accuracy(
    paths: list[Path],
    *,
    processor: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """Predicted test accuracy of each classifier checkpoint, from its weights alone.

    Rows come back in input order: ``{"path", "spec", "predicted_accuracy", "ood_score",
    "in_distribution", "ood_reason"}``; ``on_warning`` hears of each input unlike the
    processor's training nets (:mod:`dwscli.processors.ood`).
    """
    target = resolve_device(device)
    model_processor = open_for_task(processor, "accuracy", target)
    loaded = load_items(paths, lambda _: model_processor, fail_fast=fail_fast, on_error=on_error)
    rows: dict[int, dict[str, Any]] = {}
    model = model_processor.model
    with torch.no_grad():
        for chunk in chunks(loaded, batch_size):
            space = stack(chunk, target)
            assess(chunk, space, on_warning)
            predictions = forward_within_memory(model, space)
            predictions = predictions[:, 0].clamp(0.0, 1.0).cpu()
            for item, value in zip(chunk, predictions.tolist()):
                rows[item.index] = {
                    "path": str(item.checkpoint.path),
                    "spec": str(item.checkpoint.spec),
                    "predicted_accuracy": round(float(value), 6),
                    **item.ood_fields(),
                }
            if progress:
                progress(len(chunk))
    return [rows[k] for k in sorted(rows)]


__all__ = ["open_for_task", "predict_accuracy"]
