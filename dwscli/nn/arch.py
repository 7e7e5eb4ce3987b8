"""One record for every processor architecture, DWSNets and baselines alike: :class:`Arch`.

An :class:`Arch` names the dataclass of its options (the rest of a config's ``model:``
section), builds an invariant or equivariant model for an input spec, fits the model's input
normalisation on a sample of training nets, says what its card's ``model.config`` is, and
declares the symmetry its models respect. :meth:`Arch.options_from_card` reads the card back,
so a processor of any architecture can be rebuilt from its card. The list of architectures is
:data:`dwscli.nn.archs.ARCHS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from torch import nn

from dwscli.errors import DwsError
from dwscli.schema import build_section
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

#: What an architecture's models respect: ``hidden-permutations`` (an invariant model's output
#: does not change, an equivariant model's output is permuted alike, when the hidden neurons of
#: the input net are permuted), ``aligned`` (permutations are undone by matching the input to a
#: reference net first: exact for one hidden layer, a heuristic beyond) or ``none`` (a plain
#: model of the weights in their stored order).
Symmetry = Literal["hidden-permutations", "aligned", "none"]

BOTH_KINDS: tuple[str, ...] = ("invariant", "equivariant")


def options_card(options: Any, out_features: int) -> dict[str, Any]:
    """The card's ``model.config`` of most architectures: the options plus ``out_features``."""
    return {**asdict(options), "out_features": out_features}


@dataclass(frozen=True)
class Arch:
    """A processor architecture the trainer can build (``model: {arch: NAME, ...}``)."""

    name: str
    options_type: type
    build: Callable[[MLPSpec, str, Any, int], nn.Module]
    fit_normalizer: Callable[[nn.Module, WeightSpace], None]
    symmetry: Symmetry
    description: str
    #: the task kinds it can be built for ("invariant", "equivariant")
    kinds: tuple[str, ...] = BOTH_KINDS
    card_config: Callable[[Any, int], dict[str, Any]] = options_card
    #: option fields the config may not set (the trainer fills them in, e.g. from the task)
    reserved: tuple[str, ...] = ()
    #: the trainer permutes hidden neurons of every training batch, whatever
    #: ``train.permutation_augmentation`` says (``mlp-aug``)
    force_permutation_augmentation: bool = False

    def options_from_card(
        self, config: Mapping[str, Any], source: str | None = None
    ) -> tuple[Any, int]:
        """``(options, out_features)`` from a card's ``model.config`` (what :attr:`card_config`
        wrote); unknown or mistyped keys are one-line errors naming ``source``."""
        data = dict(config)
        if "head_norm" in {f.name for f in fields(self.options_type)}:
            # cards written before heads were normalised had none
            data.setdefault("head_norm", "none")
        out_features = data.pop("out_features", 1)
        if not isinstance(out_features, int) or isinstance(out_features, bool):
            where = f"{source}: " if source else ""
            raise DwsError(f"{where}model.config.out_features: expected an integer")
        extra = {key: data.pop(key) for key in self.reserved if key in data}
        if "out_features" in {f.name for f in fields(self.options_type)}:
            extra["out_features"] = out_features
        options = build_section(
            self.options_type,
            data,
            prefix="model.config.",
            source=source,
            exclude=self.reserved,
            extra=extra,
        )
        return options, out_features


__all__ = ["BOTH_KINDS", "Arch", "Symmetry", "options_card"]
