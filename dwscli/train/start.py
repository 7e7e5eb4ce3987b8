"""``train.init_from``: start a model from a trained processor's weights (fine-tuning).

The processor must have been built from the same architecture and options, so that every
tensor of the new model has a counterpart of the same shape. Its input normalisation comes with
it: the weights were trained on inputs normalised that way, and refitting the statistics on
another zoo would change what the first layer sees. Anything else is a one-line error naming
the config and the first tensor that does not fit. A buffer the new model has and the processor
lacks (the pixel grid of ``probe_grid``) keeps the value it was given from the zoo.
"""

from __future__ import annotations

from torch import nn

from dwscli.errors import DwsError


def start_from_processor(model: nn.Module, name_or_path: str, arch: str, source: str) -> None:
    """Load ``name_or_path``'s weights into ``model`` (see the module docstring)."""
    from dwscli.processors.loading import load_processor

    where = f"{source}: train.init_from"
    processor = load_processor(name_or_path, device="cpu")
    if processor.card.model.arch != arch:
        raise DwsError(
            f"{where}: processor {processor.name} is a {processor.card.model.arch} model, "
            f"this config builds {arch}"
        )
    ours = model.state_dict()
    theirs = dict(processor.model.state_dict())
    learned = {name for name, _ in model.named_parameters()}
    for key, tensor in ours.items():
        if key not in theirs:
            if key in learned:
                raise DwsError(f"{where}: processor {processor.name} has no tensor {key}")
            # a buffer this model adds (probe_grid's pixel grid) keeps its value from the zoo
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
