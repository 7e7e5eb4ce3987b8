"""``dws edit``: what each INR draws, edited in weight space in one forward pass."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.processors.loading import Processor
from dwscli.processors.pipeline import (
    ErrorHandler,
    Item,
    Progress,
    WarningHandler,
    load_items,
    open_processor,
    output_path_for,
    require,
    shown_value,
    transform_and_write,
)
from dwscli.processors.registry import default_processor
from dwscli.runtime import resolve_device
from dwscli.weights.atomic import check_out_dir
from dwscli.weights.checkpoint import Checkpoint
from dwscli.weights.space import WeightSpace

PREVIEW_ROWS = 16


def _edit_section(processor: Processor) -> dict[str, Any]:
    return dict(processor.card.edit or {})


def _open_editor(op: str | None, processor: str | None, target: torch.device) -> Processor:
    from dwscli.image_edits import check_op

    if op is None and processor is None:
        raise DwsError("say which edit", hint="pass --op OP (e.g. dilate) or -p PROCESSOR")
    if op is not None:
        check_op(op)
    name = processor or default_processor("inr-edit", op=op).name
    editor = open_processor(name, target)
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
    card = processor.card.input.conventions or {}
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
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """Edit what each INR draws (``op``: dilate, …) in one forward pass, writing new INRs.

    The processor is ``-p`` or the shipped one whose card is the default for ``op``. Outputs
    keep each input's keys, dtypes and metadata, plus provenance (``dws.operation=edit``,
    ``dws.edit_op``, ``dws.processor``, ``dws.processor_version``). ``preview`` writes a PNG
    with one row per input (the first 16): input | processor output | the input's rendering
    edited in pixels.
    ``force`` overwrites existing outputs and runs INRs whose conventions differ from the card.
    Rows: ``{"input", "output", "ood_score", "in_distribution", "ood_reason"}`` in input order
    (:mod:`dwscli.processors.ood`; ``on_warning`` hears of each input out of distribution).
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
        "processor_version": editor.card.version,
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
        on_warning=on_warning,
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
    from dwscli.image_edits import edit_images
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


__all__ = ["edit", "write_preview"]
