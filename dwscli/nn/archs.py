"""Every processor architecture, in one list: :data:`ARCHS` (``model: {arch: NAME}``).

``dws`` and ``dws-probes`` are the DWSNets of :mod:`dwscli.nn.models`; the baselines (MLP on
flattened weights, inr2vec, a Transformer, NFN, NFT, neural graphs, StatNN) are listed in
:data:`dwscli.nn.baselines.BASELINES`. Each is an :class:`~dwscli.nn.arch.Arch`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from dwscli.errors import DwsError
from dwscli.nn.arch import Arch
from dwscli.nn.baselines import BASELINES
from dwscli.nn.models import DWSNetConfig, DWSProbesConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _dws_config(options: Any, out_features: int) -> Any:
    return replace(options, out_features=out_features)


def _build_dws(spec: MLPSpec, kind: str, options: Any, out_features: int) -> nn.Module:
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


DWS = Arch(
    name="dws",
    options_type=DWSNetConfig,
    build=_build_dws,
    fit_normalizer=_fit_dws_normalizer,
    symmetry="hidden-permutations",
    description="DWSNets",
    card_config=_dws_card,
    reserved=("out_features",),
)

DWS_PROBES = Arch(
    name="dws-probes",
    options_type=DWSProbesConfig,
    build=_build_dws,
    fit_normalizer=_fit_dws_normalizer,
    symmetry="hidden-permutations",
    description="DWSNets + functional probes (labelled for classifiers)",
    kinds=("invariant",),
    card_config=_dws_card,
    reserved=("out_features",),
)

#: Every architecture, by name, DWSNets first.
ARCHS: dict[str, Arch] = {arch.name: arch for arch in (DWS, DWS_PROBES, *BASELINES)}


def get_arch(name: str, source: str | None = None) -> Arch:
    """The architecture called ``name``; an unknown name is a one-line error naming ``source``."""
    try:
        return ARCHS[name]
    except KeyError:
        where = f"{source}: model.arch" if source else "model.arch"
        raise DwsError(
            f"{where}: unknown architecture {name!r}; choose one of {', '.join(sorted(ARCHS))}"
        ) from None


__all__ = ["ARCHS", "DWS", "DWS_PROBES", "Arch", "get_arch"]
