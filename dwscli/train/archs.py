"""Processor architectures the trainer can build (``model: {arch: NAME, ...}``), by registry.

An :class:`Arch` names the dataclass of its options (the rest of the ``model:`` section), builds
an invariant or equivariant model for an input spec, fits the model's input normalisation on a
sample of training nets, and says what its card's ``model.config`` is;
:meth:`Arch.options_from_card` reads that back, so :func:`dwscli.processors.loading.build_model`
can rebuild any registered architecture from its card. The baselines of
:mod:`dwscli.nn.baselines` (MLP on flattened weights, NFN, NFT, neural graphs, …) are registered
at the end of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from torch import nn

from dwscli.errors import DwsError
from dwscli.train.schema import build_section
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
    #: the task kinds it can be built for ("invariant", "equivariant")
    kinds: tuple[str, ...] = ("invariant", "equivariant")
    #: the trainer permutes hidden neurons of every training batch, whatever
    #: ``train.permutation_augmentation`` says (``mlp-aug``)
    force_permutation_augmentation: bool = False
    description: str = ""

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
            description="DWSNets",
        )
    )


def _register_dws_probes() -> None:
    from dwscli.nn.models import DWSProbesConfig

    register_arch(
        Arch(
            name="dws-probes",
            options_type=DWSProbesConfig,
            reserved=("out_features",),
            build=_build_dws,
            fit_normalizer=_fit_dws_normalizer,
            card_config=_dws_card,
            kinds=("invariant",),
            description="DWSNets + functional probes (labelled for classifiers)",
        )
    )


_register_dws()
_register_dws_probes()


# ------------------------------------------------------------------------------------------------
# baselines (dwscli.nn.baselines): mlp, mlp-aug, mlp-align, inr2vec, transformer, nfn-np,
# nfn-hnp, nft, graph, statnn


def _baseline_card(options: Any, out_features: int) -> dict[str, Any]:
    return {**asdict(options), "out_features": out_features}


def _register_baselines() -> None:
    from dwscli.nn.baselines import BASELINES, fit_baseline

    for baseline in BASELINES:
        register_arch(
            Arch(
                name=baseline.name,
                options_type=baseline.options_type,
                reserved=(),
                build=baseline.build,
                fit_normalizer=fit_baseline,
                card_config=_baseline_card,
                kinds=baseline.kinds,
                force_permutation_augmentation=baseline.force_permutation_augmentation,
                description=baseline.description,
            )
        )


_register_baselines()

__all__ = ["ARCHS", "Arch", "get_arch", "register_arch"]
