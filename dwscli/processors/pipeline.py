"""The one way every processor command runs: load, pick, check, batch, forward, write.

1. each input checkpoint is read (:func:`load_items`), and a processor picked for it (most jobs
   use one processor for all; ``classify`` picks by the data set an INR records);
2. it is checked against the processor: the spec (:func:`check_fits`: depth, input and output
   widths, activation; hidden widths may differ, since the layers work for any width), then
   the reading conventions of an INR (:func:`check_conventions`), which ``force`` skips;
3. the checkpoints that passed are grouped by processor and widths, so they stack, and run in
   chunks (:func:`chunks`, :func:`stack`), one forward pass each;
4. each chunk is scored against the processor's training nets (:func:`assess`, when its card
   has an ``ood`` section, see :mod:`~dwscli.processors.ood`): ``on_warning`` hears of each
   input out of distribution, and every row carries ``ood_score`` and ``in_distribution``;
5. the job turns outputs into rows or files (:func:`transform_and_write` for jobs that write
   new weights).

A file that cannot be read or does not fit is reported through ``on_error`` and skipped (or
raised at once with ``fail_fast``); the others go on. A processor that cannot be used at all is
a :class:`ProcessorUnavailable` and stops the run. The jobs, one module each:
:mod:`~dwscli.processors.accuracy`, :mod:`~dwscli.processors.adapt`,
:mod:`~dwscli.processors.classify`, :mod:`~dwscli.processors.edit`,
:mod:`~dwscli.processors.embed`.

Conventions: the checkpoint's ``inr.*`` metadata (grid, coordinate range, output scale/offset)
against the card's ``input.conventions``, and the sine frequencies w0 of both specs. A
processor trained on INRs that read coordinates in [-1, 1] says nothing useful about one that
reads [0, 1], so a mismatch is an error unless ``force``. A checkpoint that records no ``inr.*``
key is taken to follow the processor's conventions (there is nothing to compare).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError
from dwscli.nn.streaming import MemoryGuard, forward_within_memory
from dwscli.processors.loading import Processor, load_processor
from dwscli.processors.ood import UNCHECKED_FIELDS, OodResult, warning_text
from dwscli.weights.checkpoint import Checkpoint, load_checkpoint
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

ErrorHandler = Callable[[Path, DwsError], None]
Progress = Callable[[int], None]
#: Told ``(path, message)`` of each input out of its processor's training distribution.
WarningHandler = Callable[[Path, str], None]


#: Zoo conventions that describe how a zoo was *made*, not how its nets are read.
NOT_READING_CONVENTIONS = frozenset({"points"})


# ------------------------------------------------------------------------------------------
# opening a processor and checking what it is


def open_processor(name_or_path: str, device: torch.device) -> Processor:
    """A shipped processor by name, or a saved one by the path of its card or weights."""
    return load_processor(name_or_path, device=str(device))


class ProcessorUnavailable(DwsError):
    """A processor cannot be opened or used: a problem of the setup, not of one file."""

    @classmethod
    def of(cls, error: DwsError) -> ProcessorUnavailable:
        return cls(error.message, hint=error.hint, exit_code=error.exit_code)


def require(processor: Processor, *, tasks: tuple[str, ...], kind: str, what: str) -> None:
    task = processor.card.task
    if task not in tasks and not (what == "classify" and output_type(processor) == "logits"):
        raise DwsError(
            f"processor {processor.name} does task {task!r}; {what} needs a processor of task "
            f"{' or '.join(repr(t) for t in tasks)}"
        )
    if processor.kind != kind:
        raise DwsError(f"processor {processor.name} is {processor.kind}; {what} needs {kind}")


def output_type(processor: Processor) -> str | None:
    return processor.card.output_type


# ------------------------------------------------------------------------------------------
# checking one checkpoint


def check_fits(checkpoint: Checkpoint, processor: Processor) -> None:
    """Refuse a network the processor was not made for, saying what it expects."""
    expected = processor.spec
    spec = checkpoint.spec
    if not spec_fits(spec, expected):
        raise DwsError(
            f"{checkpoint.path}: a {spec} network does not fit processor {processor.name}, "
            f"which expects {accepted_shape(expected)}"
        )


def spec_fits(spec: MLPSpec, expected: MLPSpec) -> bool:
    """True when a processor made for ``expected`` nets can read ``spec`` nets (same depth,
    input and output widths and activation; hidden widths may differ)."""
    return expected.fixed_dims_match(spec) and spec.activation == expected.activation


def accepted_shape(expected: MLPSpec) -> str:
    """The nets a processor made for ``expected`` reads, e.g. ``196-*-*-10:relu (* = any
    width)``."""
    widths = [str(expected.input_dim), *["*"] * len(expected.hidden_widths)]
    shape = "-".join([*widths, str(expected.output_dim)])
    return f"{shape}:{expected.activation} (* = any width)"


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


def same_setting(actual: object, expected: object) -> bool:
    """Whether a recorded convention equals the expected one (numbers up to rounding)."""
    a, b = _numbers(actual), _numbers(expected)
    if a is None or b is None:
        return str(actual).strip() == str(expected).strip()
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b)
    )


def check_inr_metadata(checkpoint: Checkpoint) -> None:
    """Refuse ``inr.*`` metadata no image can have (a huge or empty grid, NaN), even with force."""
    from dwscli.weights.inr import InrConventions

    if any(key.startswith("inr.") for key in checkpoint.metadata):
        InrConventions.from_metadata(checkpoint.metadata, source=str(checkpoint.path))


def check_conventions(checkpoint: Checkpoint, processor: Processor) -> None:
    """Refuse an INR whose reading conventions or sine w0 differ from the processor's card."""
    from dwscli.weights.functional import sine_frequencies

    conventions = processor.card.input.conventions or {}
    if isinstance(conventions, Mapping):
        for key, expected in conventions.items():
            actual = checkpoint.metadata.get(f"inr.{key}")
            if key in NOT_READING_CONVENTIONS or actual is None or same_setting(actual, expected):
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
# loading, batching, writing


@dataclass
class Item:
    index: int  # position in the input list
    checkpoint: Checkpoint
    processor: Processor
    ood: OodResult | None = None  # set by :func:`assess`; None: the card records no profile

    def ood_fields(self) -> dict[str, Any]:
        """``ood_score``, ``in_distribution``, ``ood_reason`` for the input's row (None
        when its processor's card records no ``ood`` section)."""
        return dict(UNCHECKED_FIELDS) if self.ood is None else self.ood.fields()


def assess(
    chunk: Sequence[Item], space: WeightSpace, on_warning: WarningHandler | None = None
) -> None:
    """Score a chunk's inputs (stacked in ``space``) against their processor's training nets;
    ``on_warning`` hears of each one out of distribution. Without a profile nothing happens."""
    profile = chunk[0].processor.ood if chunk else None
    if profile is None:
        return
    results = with_feature_check(profile.assess(space), chunk[0].processor, space)
    for item, result in zip(chunk, results):
        item.ood = result
        if not result.in_distribution and on_warning is not None:
            path = item.checkpoint.path
            on_warning(path, warning_text(path, item.processor.name, result))


def feature_scores(processor: Processor, space: WeightSpace) -> torch.Tensor:
    """``[B]`` each net's score under the card's feature check (a processor that has one:
    loading made sure its model has pooled features), within the memory budget."""
    from dwscli.nn.models import pooled_features

    check, embed = processor.feature_ood, pooled_features(processor.model)
    assert check is not None and embed is not None
    parameter = next(processor.model.parameters(), None)
    if parameter is not None:
        space = space.to(device=parameter.device, dtype=parameter.dtype)
    features = forward_within_memory(embed, space)
    assert isinstance(features, torch.Tensor)
    return check.scores(features)


def with_feature_check(
    results: list[OodResult], processor: Processor, space: WeightSpace
) -> list[OodResult]:
    """The weight-statistics results, with the nets that pass them but whose pooled features
    the card's feature check flags marked out of distribution (the score stays the weights')."""
    from dwscli.processors.feature_ood import reason

    check = processor.feature_ood
    if check is None:
        return results
    scores = feature_scores(processor, space)
    marked = []
    for result, score in zip(results, scores.tolist()):
        if result.in_distribution and not score <= check.threshold:
            result = OodResult(result.score, False, reason(score, check.threshold))
        marked.append(result)
    return marked


def report(path: Path, error: DwsError, fail_fast: bool, on_error: ErrorHandler | None) -> None:
    """A per-file error: raised (``fail_fast``, or nobody to tell) or handed to ``on_error``."""
    if fail_fast or on_error is None:
        raise error
    on_error(path, error)


def load_items(
    paths: Iterable[Path],
    choose: Callable[[Checkpoint], Processor],
    *,
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
) -> list[Item]:
    """Read each checkpoint, pick its processor and check that it fits (spec, then, unless
    ``force``, conventions); bad files are reported.

    ``choose`` may raise a :class:`DwsError` for a file (reported like a bad file); a
    :class:`ProcessorUnavailable` is not a problem of the file and stops the run.
    """
    items = []
    memory = MemoryGuard()
    for index, path in enumerate(paths):
        try:
            checkpoint = load_checkpoint(path)
            processor = choose(checkpoint)
            check_fits(checkpoint, processor)
            memory.check(checkpoint.path, processor.model, checkpoint.spec)
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


def chunks(items: Sequence[Item], batch_size: int) -> Iterator[list[Item]]:
    """Items with the same processor and widths (so they stack), in input order within."""
    groups: dict[tuple[int, tuple[int, ...]], list[Item]] = {}
    for item in items:
        groups.setdefault((id(item.processor), item.checkpoint.spec.widths), []).append(item)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def stack(chunk: Sequence[Item], device: torch.device) -> WeightSpace:
    """The chunk's nets as one batch on ``device``, in float32. A single net is its
    checkpoint's own tensors when they already are (no copy of a large net: the forward only
    reads its input)."""
    if len(chunk) == 1:
        return chunk[0].checkpoint.space.to(device, torch.float32)
    return WeightSpace.stack([item.checkpoint.space for item in chunk]).to(device, torch.float32)


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


def transform_and_write(
    inputs: Sequence[Item],
    model: Callable[[WeightSpace], WeightSpace] | None,
    destinations: Sequence[Path],
    provenance: Mapping[str, str] | Callable[[Processor], Mapping[str, str]],
    *,
    device: torch.device,
    batch_size: int = 1024,
    force: bool = False,
    fail_fast: bool = False,
    on_error: ErrorHandler | None = None,
    progress: Callable[[int], None] | None = None,
    written_hook: Callable[[Item, WeightSpace], None] | None = None,
    out_dir: Path | None = None,
    on_warning: WarningHandler | None = None,
) -> list[dict[str, Any]]:
    """Run a weights -> weights ``model`` over the inputs in stacked batches and write each
    result to ``destinations[input.index]`` (the input's keys, dtypes and metadata, plus
    ``provenance``). When inputs go to different processors, ``model`` is None (each chunk
    runs its own processor's model) and ``provenance`` a function of the processor. Two inputs
    bound for one file in the same run are an error for the second (even with ``force``, which
    only replaces files from before the run). ``written_hook`` sees
    each written input with its new weights. ``out_dir`` (the destinations' directory) is created
    by the first write, so a run that writes nothing leaves none. Each input is scored against
    its processor's training nets (:func:`assess`, warnings to ``on_warning``). Rows
    ``{"input", "output", "ood_score", "in_distribution", "ood_reason"}``, in input order."""
    from dwscli.weights.checkpoint import save_checkpoint

    rows: dict[int, dict[str, Any]] = {}
    taken: dict[Path, Path] = {}  # destination -> the input written there in this run
    with torch.no_grad():
        for chunk in chunks(inputs, batch_size):
            chunk_model = chunk[0].processor.model if model is None else model
            space = stack(chunk, device)
            assess(chunk, space, on_warning)
            outputs = forward_within_memory(chunk_model, space).to("cpu")
            chunk_provenance = (
                provenance(chunk[0].processor) if callable(provenance) else provenance
            )
            for row, item in enumerate(chunk):
                checkpoint = item.checkpoint
                # No Checkpoint.constrain here: a bias predicted for a layer the file stores
                # without one is not silently dropped; save_checkpoint refuses it.
                new = outputs[row]
                destination = destinations[item.index]
                try:
                    if destination in taken:
                        raise DwsError(
                            f"{checkpoint.path}: its output {destination} was already written "
                            f"for {taken[destination]} in this run",
                            hint="inputs with the same file name need separate --out-dir runs",
                        )
                    written = save_checkpoint(
                        destination,
                        checkpoint,
                        space=new,
                        provenance=chunk_provenance,
                        force=force,
                        create_parent=out_dir is not None,
                    )
                except DwsError as error:
                    report(checkpoint.path, error, fail_fast, on_error)
                    continue
                taken[destination] = checkpoint.path
                rows[item.index] = {
                    "input": str(checkpoint.path),
                    "output": str(written),
                    **item.ood_fields(),
                }
                if written_hook is not None:
                    written_hook(item, new)
            if progress:
                progress(len(chunk))
    return [rows[k] for k in sorted(rows)]


__all__ = [
    "ErrorHandler",
    "Item",
    "ProcessorUnavailable",
    "Progress",
    "WarningHandler",
    "assess",
    "check_conventions",
    "check_fits",
    "check_inr_metadata",
    "chunks",
    "load_items",
    "open_processor",
    "output_path_for",
    "output_type",
    "report",
    "require",
    "shown_value",
    "stack",
    "transform_and_write",
]
