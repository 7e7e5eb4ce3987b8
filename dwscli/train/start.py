"""``train.init_from``: start a model from a trained processor's weights (fine-tuning).

The processor must have been built from the same architecture and options, so that every
tensor of the new model has a counterpart of the same shape. Its input normalisation comes with
it: the weights were trained on inputs normalised that way, and refitting the statistics on
another zoo would change what the first layer sees. Anything else is a one-line error naming
the config and the first option or tensor that does not fit. The pixel grids of ``probe_grid``
and ``output_solve`` describe the zoo, so they are always the new zoo's. An editor may start
from one that predicted its output layer and go on to solve it (``output_solve``): the trunk's
tensors are the same, only what the output layer becomes changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from dwscli.errors import DwsError

#: Model options a fine-tuned model may set otherwise than the processor it starts from: they
#: change how it reads or trains, not what its weights mean.
MAY_DIFFER = frozenset({"dropout", "probe_grid", "output_solve", "output_solve_ridge"})
#: Buffers that describe the zoo (the pixel grid of ``probe_grid`` and of ``output_solve``):
#: always the new zoo's.
ZOO_BUFFERS = ("probes.grid_low", "probes.grid_high", "probes.grid_points", "output_solve.grid")


def start_from_processor(
    model: nn.Module,
    name_or_path: str,
    arch: str,
    source: str,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Load ``name_or_path``'s weights into ``model`` (see the module docstring); ``options``
    (the config's model options) must match the processor's except :data:`MAY_DIFFER`."""
    from dwscli.processors.loading import load_processor

    where = f"{source}: train.init_from"
    try:
        processor = load_processor(name_or_path, device="cpu")
    except DwsError as error:
        raise DwsError(f"{where}: {error.message}", hint=error.hint) from error
    if processor.card.model.arch != arch:
        raise DwsError(
            f"{where}: processor {processor.name} is a {processor.card.model.arch} model, "
            f"this config builds {arch}"
        )
    recorded = processor.card.model.config
    for key, value in (options or {}).items():
        if key in MAY_DIFFER or key not in recorded or recorded[key] == value:
            continue
        raise DwsError(
            f"{where}: model.{key} is {recorded[key]!r} in processor {processor.name} but "
            f"{value!r} here"
        )
    ours = model.state_dict()
    theirs = dict(processor.model.state_dict())
    learned = {name for name, _ in model.named_parameters()}
    for key in ZOO_BUFFERS:
        theirs.pop(key, None)
    for key, tensor in ours.items():
        if key not in theirs:
            if key in learned:
                raise DwsError(f"{where}: processor {processor.name} has no tensor {key}")
            # a buffer that describes the zoo (probe_grid's pixel grid) keeps the zoo's value
            theirs[key] = tensor
        if theirs[key].shape != tensor.shape:
            raise DwsError(
                f"{where}: {key} is {tuple(theirs[key].shape)} in processor {processor.name} "
                f"but {tuple(tensor.shape)} in this model (other model options?)"
            )
    extra = sorted(set(theirs) - set(ours))
    if extra:
        raise DwsError(
            f"{where}: processor {processor.name} has a tensor {extra[0]} this model lacks"
        )
    model.load_state_dict(theirs)


__all__ = ["start_from_processor"]
