"""Which processor takes an INR, and does the INR fit it: shared by the INR commands.

Fitting means two checks: the spec (depth, input/output widths and activation, as in
:func:`dwscli.processors.run.check_fits`), which cannot be overridden, and the *INR conventions*:
the checkpoint's ``inr.*`` metadata (grid, coordinate range, output scale/offset) against the
card's ``input.conventions``, and the sine frequencies w0 of both specs. A processor trained on
INRs that read coordinates in [-1, 1] says nothing useful about one that reads [0, 1], so a
mismatch is an error unless ``force``. A checkpoint that records no ``inr.*`` key is taken to
follow the processor's conventions (there is nothing to compare).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError
from dwscli.processors import loading
from dwscli.processors.loading import Processor
from dwscli.processors.run import ErrorHandler, check_fits, report, stack
from dwscli.weights.checkpoint import Checkpoint, load_checkpoint

#: Shipped processor names, trained with ``dws train configs/<name>.yaml``.
CLASSIFIERS_BY_DATASET = {"mnist": "mnist-inr-classify", "fashion-mnist": "fmnist-inr-classify"}
DEFAULT_CLASSIFIER = "mnist-inr-classify"
DEFAULT_EMBEDDER = "sine-embed"
EDIT_PROCESSOR_PATTERN = "mnist-inr-{op}"

#: Zoo conventions that describe how a zoo was *made*, not how its nets are read.
_NOT_READING_CONVENTIONS = frozenset({"points"})


# ------------------------------------------------------------------------------------------
# opening processors


def open_inr_processor(name_or_path: str, device: torch.device, *, default: bool) -> Processor:
    """Load a processor; a default (or planned) name that is not shipped says how to train it."""
    candidate = Path(name_or_path)
    is_path = candidate.suffix in (".yaml", ".safetensors") or candidate.exists()
    if not is_path and not (loading.PACKAGE_DIR / f"{name_or_path}.yaml").is_file():
        planned = default or name_or_path in (
            *CLASSIFIERS_BY_DATASET.values(),
            DEFAULT_EMBEDDER,
        )
        if planned:
            raise DwsError(
                f"processor {name_or_path} is not shipped yet (it has not been trained)",
                hint=f"train it with: dws train configs/{name_or_path}.yaml (or pass -p CARD.yaml)",
            )
    return loading.load_processor(name_or_path, device=str(device))


def card_section(processor: Processor, key: str) -> dict[str, Any]:
    section = processor.card.get(key)
    return dict(section) if isinstance(section, Mapping) else {}


def require(processor: Processor, *, tasks: tuple[str, ...], kind: str, what: str) -> None:
    task = processor.card.get("task")
    if task not in tasks and not (what == "classify" and output_type(processor) == "logits"):
        raise DwsError(
            f"processor {processor.name} does task {task!r}; {what} needs a processor of task "
            f"{' or '.join(repr(t) for t in tasks)}"
        )
    if processor.kind != kind:
        raise DwsError(f"processor {processor.name} is {processor.kind}; {what} needs {kind}")


def output_type(processor: Processor) -> str | None:
    value = card_section(processor, "output").get("type")
    return None if value is None else str(value)


# ------------------------------------------------------------------------------------------
# conventions


def _numbers(value: object) -> tuple[float, ...] | None:
    """``[28, 28]``, ``"28x28"``, ``"-1.0,1.0"``, ``0.5`` -> floats; None when not numeric."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (float(value),)
    if isinstance(value, (list, tuple)):
        parts: list[object] = list(value)
    elif isinstance(value, str):
        parts = [p for p in re.split(r"[x,\s]+", value.strip()) if p]
    else:
        return None
    try:
        return tuple(float(p) for p in parts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def shown_value(key: str, value: object) -> str:
    if isinstance(value, (list, tuple)):
        sep = "x" if key == "grid" else ","
        return sep.join(str(int(v)) if key == "grid" else repr(float(v)) for v in value)
    return str(value)


def _same(actual: str, expected: object) -> bool:
    a, b = _numbers(actual), _numbers(expected)
    if a is None or b is None:
        return actual.strip() == str(expected).strip()
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b)
    )


def check_inr_metadata(checkpoint: Checkpoint) -> None:
    """Refuse ``inr.*`` metadata no image can have (huge or empty grid, NaN), even with --force."""
    from dwscli.weights.inr import InrConventions

    if any(key.startswith("inr.") for key in checkpoint.metadata):
        InrConventions.from_metadata(checkpoint.metadata, source=str(checkpoint.path))


def check_conventions(checkpoint: Checkpoint, processor: Processor) -> None:
    """Refuse an INR whose reading conventions or sine w0 differ from the processor's card."""
    from dwscli.weights.functional import sine_frequencies

    conventions = card_section(processor, "input").get("conventions") or {}
    if isinstance(conventions, Mapping):
        for key, expected in conventions.items():
            actual = checkpoint.metadata.get(f"inr.{key}")
            if key in _NOT_READING_CONVENTIONS or actual is None or _same(actual, expected):
                continue
            raise DwsError(
                f"{checkpoint.path}: INR convention inr.{key} is {actual} but processor "
                f"{processor.name} expects {shown_value(str(key), expected)}",
                hint="pass --force to run it anyway",
            )
    if checkpoint.spec.activation == "sine" and processor.spec.activation == "sine":
        ours, theirs = sine_frequencies(checkpoint.spec), sine_frequencies(processor.spec)
        if any(not math.isclose(a, b, rel_tol=1e-6) for a, b in zip(ours, theirs)):
            raise DwsError(
                f"{checkpoint.path}: sine w0 is {ours[0]:g} (hidden {ours[1]:g}) but processor "
                f"{processor.name} expects w0 {theirs[0]:g} (hidden {theirs[1]:g})",
                hint="pass --force to run it anyway",
            )


# ------------------------------------------------------------------------------------------
# loading and batching


class ProcessorUnavailable(DwsError):
    """A processor cannot be opened or used: a problem of the setup, not of one file."""

    @classmethod
    def of(cls, error: DwsError) -> ProcessorUnavailable:
        return cls(error.message, hint=error.hint, exit_code=error.exit_code)


@dataclass
class Item:
    index: int  # position in the input list
    checkpoint: Checkpoint
    processor: Processor


def load_items(
    paths: Iterable[Path],
    choose: Callable[[Checkpoint], Processor],
    *,
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
) -> list[Item]:
    """Read each checkpoint, pick its processor and check that it fits; bad files are reported.

    ``choose`` may raise a :class:`DwsError` for a file (reported like a bad file); a
    :class:`ProcessorUnavailable` is not a problem of the file and stops the run.
    """
    items = []
    for index, path in enumerate(paths):
        try:
            checkpoint = load_checkpoint(path)
            processor = choose(checkpoint)
            check_fits(checkpoint, processor)
            check_inr_metadata(checkpoint)
            if not force:
                check_conventions(checkpoint, processor)
        except ProcessorUnavailable:
            raise
        except DwsError as error:
            report(Path(path), error, fail_fast, on_error)
            continue
        items.append(Item(index, checkpoint, processor))
    return items


def chunks(items: list[Item], batch_size: int) -> Iterator[list[Item]]:
    """Items with the same processor and widths (so they stack), in input order within."""
    groups: dict[tuple[int, tuple[int, ...]], list[Item]] = {}
    for item in items:
        groups.setdefault((id(item.processor), item.checkpoint.spec.widths), []).append(item)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


__all__ = [
    "CLASSIFIERS_BY_DATASET",
    "DEFAULT_CLASSIFIER",
    "DEFAULT_EMBEDDER",
    "EDIT_PROCESSOR_PATTERN",
    "Item",
    "ProcessorUnavailable",
    "card_section",
    "check_conventions",
    "check_inr_metadata",
    "chunks",
    "load_items",
    "open_inr_processor",
    "output_type",
    "report",
    "require",
    "shown_value",
    "stack",
]
