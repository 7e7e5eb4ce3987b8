"""Processor architectures the trainer can build (``model: {arch: NAME, ...}``), by registry.

An :class:`Arch` names the dataclass of its options (the rest of the ``model:`` section), builds
an invariant or equivariant model for an input spec, fits the model's input normalisation on a
sample of training nets, and says what its card's ``model.config`` is. Baselines (MLP on
flattened weights, NFN, …) are added with :func:`register_arch`.

Note for new architectures: :func:`dwscli.processors.loading.build_model` rebuilds a processor
from its card and today knows only ``dws``; it must learn the new ``model.arch`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass(frozen=True)
class Arch:
    name: str
    options_type: type
    #: option fields the config may not set (the trainer fills them in, e.g. from the task)
    reserved: tuple[str, ...]
    build: Callable[[MLPSpec, str, Any, int], nn.Module]
    fit_normalizer: Callable[[nn.Module, WeightSpace], None]
    card_config: Callable[[Any, int], dict[str, Any]]


ARCHS: dict[str, Arch] = {}


def register_arch(arch: Arch) -> Arch:
    ARCHS[arch.name] = arch
    return arch


def get_arch(name: str, source: str | None = None) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        where = f"{source}: model.arch" if source else "model.arch"
        raise DwsError(
            f"{where}: unknown architecture {name!r}; choose one of {', '.join(sorted(ARCHS))}"
        ) from None


# ------------------------------------------------------------------------------------------------
# dws: DWSNets (dwscli.nn.models)


def _dws_config(options: Any, out_features: int) -> Any:
    return replace(options, out_features=out_features)


def _build_dws(spec: MLPSpec, kind: str, options: Any, out_features: int) -> nn.Module:
    from dwscli.nn.models import EquivariantDWSNet, InvariantDWSNet

    config = _dws_config(options, out_features)
    if kind == "invariant":
        return InvariantDWSNet(spec, config)
    if kind == "equivariant":
        return EquivariantDWSNet(spec, config)
    raise DwsError(f"unknown model kind {kind!r}")


def _fit_dws_normalizer(model: nn.Module, space: WeightSpace) -> None:
    model.normalizer.fit(space)  # type: ignore[union-attr,operator]


def _dws_card(options: Any, out_features: int) -> dict[str, Any]:
    return _dws_config(options, out_features).to_dict()


def _register_dws() -> None:
    from dwscli.nn.models import DWSNetConfig

    register_arch(
        Arch(
            name="dws",
            options_type=DWSNetConfig,
            reserved=("out_features",),
            build=_build_dws,
            fit_normalizer=_fit_dws_normalizer,
            card_config=_dws_card,
        )
    )


_register_dws()

__all__ = ["ARCHS", "Arch", "get_arch", "register_arch"]
