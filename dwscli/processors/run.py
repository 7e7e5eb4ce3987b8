"""Running a processor over many checkpoint files: one forward pass per chunk.

Checkpoints are read, checked against the processor's input spec (depth, input and output
widths, activation; hidden widths may differ), grouped by widths so they stack, and run in
chunks. A file that cannot be read or does not fit is reported through ``on_error`` and skipped
(or raised at once with ``fail_fast``); the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from dwscli.errors import DwsError
from dwscli.nn.streaming import check_memory, forward_within_memory
from dwscli.processors.loading import Processor, load_processor
from dwscli.runtime import resolve_device
from dwscli.weights.checkpoint import Checkpoint, load_checkpoint
from dwscli.weights.space import WeightSpace

ErrorHandler = Callable[[Path, DwsError], None]

#: The processor each task uses when none is named.
DEFAULT_PROCESSORS = {"accuracy": "fmnist-accuracy", "adapt": "fmnist-adapt-contrast"}


def open_processor(name_or_path: str | None, task: str, device: torch.device) -> Processor:
    processor = load_processor(name_or_path or DEFAULT_PROCESSORS[task], device=str(device))
    if processor.card.get("task") != task:
        raise DwsError(
            f"processor {processor.name} does task {processor.card.get('task')!r}, not {task!r}"
        )
    return processor


def check_fits(checkpoint: Checkpoint, processor: Processor) -> None:
    """Refuse a network the processor was not made for, saying what it expects."""
    expected = processor.spec
    spec = checkpoint.spec
    if not expected.fixed_dims_match(spec) or spec.activation != expected.activation:
        widths = [str(expected.input_dim), *["*"] * len(expected.hidden_widths)]
        shape = "-".join([*widths, str(expected.output_dim)])
        raise DwsError(
            f"{checkpoint.path}: a {spec} network does not fit processor {processor.name}, "
            f"which expects {shape}:{expected.activation} (* = any width)"
        )


class Input(Protocol):
    """A checkpoint read for a run, with its position in the input list."""

    @property
    def index(self) -> int: ...

    @property
    def checkpoint(self) -> Checkpoint: ...


InputT = TypeVar("InputT", bound=Input)


@dataclass
class Loaded:
    index: int  # position in the input list
    checkpoint: Checkpoint


def report(path: Path, error: DwsError, fail_fast: bool, on_error: ErrorHandler | None) -> None:
    """A per-file error: raised (``fail_fast``, or nobody to tell) or handed to ``on_error``."""
    if fail_fast or on_error is None:
        raise error
    on_error(path, error)


def load_fitting(
    paths: Iterable[Path],
    processor: Processor,
    *,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
) -> list[Loaded]:
    loaded = []
    for index, path in enumerate(paths):
        try:
            checkpoint = load_checkpoint(path)
            check_fits(checkpoint, processor)
            check_memory(checkpoint.path, processor.model, checkpoint.spec)
        except DwsError as error:
            report(Path(path), error, fail_fast, on_error)
            continue
        loaded.append(Loaded(index, checkpoint))
    return loaded


def batches(loaded: Sequence[InputT], batch_size: int) -> Iterator[list[InputT]]:
    """Chunks of checkpoints with identical widths (so they stack), input order within."""
    groups: dict[tuple[int, ...], list[InputT]] = {}
    for item in loaded:
        groups.setdefault(item.checkpoint.spec.widths, []).append(item)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def stack(chunk: Sequence[Input], device: torch.device) -> WeightSpace:
    return WeightSpace.stack([item.checkpoint.space for item in chunk]).to(device, torch.float32)


def predict_accuracy(
    paths: list[Path],
    *,
    processor: str | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Predicted test accuracy of each classifier checkpoint, from its weights alone.

    Rows come back in input order: ``{"path", "spec", "predicted_accuracy"}``.
    """
    target = resolve_device(device)
    model_processor = open_processor(processor, "accuracy", target)
    loaded = load_fitting(paths, model_processor, fail_fast=fail_fast, on_error=on_error)
    rows: dict[int, dict[str, Any]] = {}
    model = model_processor.model
    with torch.no_grad():
        for chunk in batches(loaded, batch_size):
            predictions = forward_within_memory(model, stack(chunk, target))
            predictions = predictions[:, 0].clamp(0.0, 1.0).cpu()
            for item, value in zip(chunk, predictions.tolist()):
                rows[item.index] = {
                    "path": str(item.checkpoint.path),
                    "spec": str(item.checkpoint.spec),
                    "predicted_accuracy": round(float(value), 6),
                }
            if progress:
                progress(len(chunk))
    return [rows[k] for k in sorted(rows)]


def output_path_for(source: Path, output: Path | None, out_dir: Path | None, count: int) -> Path:
    if output is not None:
        if count != 1:
            raise DwsError(
                f"-o names one output file but {count} checkpoints were given",
                hint="use --out-dir DIR for many",
            )
        return output
    if out_dir is None:
        raise DwsError("say where to write", hint="pass -o OUT (one input) or --out-dir DIR")
    return out_dir / (source.stem + ".safetensors")


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
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Adapt classifiers to the processor's target domain: new weights, written beside.

    Outputs keep each input's keys, dtypes and metadata, plus provenance (processor, version).
    """
    target = resolve_device(device)
    model_processor = open_processor(processor, "adapt", target)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    destinations = [output_path_for(Path(p), output, out_dir, len(paths)) for p in paths]
    loaded = load_fitting(paths, model_processor, fail_fast=fail_fast, on_error=on_error)
    provenance = {
        "operation": "adapt",
        "processor": model_processor.name,
        "processor_version": str(model_processor.card.get("version", "")),
        "target_domain": str(model_processor.card.get("target_domain", "")),
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
    )


def transform_and_write(
    inputs: Sequence[InputT],
    model: Callable[[WeightSpace], WeightSpace],
    destinations: Sequence[Path],
    provenance: Mapping[str, str],
    *,
    device: torch.device,
    batch_size: int = 1024,
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Callable[[int], None] | None = None,
    written_hook: Callable[[InputT, WeightSpace], None] | None = None,
) -> list[dict[str, Any]]:
    """Run a weights -> weights ``model`` over the inputs in stacked batches and write each
    result to ``destinations[input.index]`` (the input's keys, dtypes and metadata, plus
    ``provenance``). Two inputs bound for one file in the same run are an error for the second
    (even with ``force``, which only replaces files from before the run). ``written_hook`` sees
    each written input with its new weights. Rows ``{"input", "output"}``, in input order."""
    from dwscli.weights.checkpoint import save_checkpoint

    rows: dict[int, dict[str, Any]] = {}
    taken: dict[Path, Path] = {}  # destination -> the input written there in this run
    with torch.no_grad():
        for chunk in batches(inputs, batch_size):
            outputs = forward_within_memory(model, stack(chunk, device)).to("cpu")
            for row, item in enumerate(chunk):
                checkpoint = item.checkpoint
                new = checkpoint.constrain(outputs[row])
                destination = destinations[item.index]
                try:
                    if destination in taken:
                        raise DwsError(
                            f"{checkpoint.path}: its output {destination} was already written "
                            f"for {taken[destination]} in this run",
                            hint="inputs with the same file name need separate --out-dir runs",
                        )
                    written = save_checkpoint(
                        destination, checkpoint, space=new, provenance=provenance, force=force
                    )
                except DwsError as error:
                    report(checkpoint.path, error, fail_fast, on_error)
                    continue
                taken[destination] = checkpoint.path
                rows[item.index] = {"input": str(checkpoint.path), "output": str(written)}
                if written_hook is not None:
                    written_hook(item, new)
            if progress:
                progress(len(chunk))
    return [rows[k] for k in sorted(rows)]
