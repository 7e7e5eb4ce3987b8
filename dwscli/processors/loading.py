"""Load a processor: ``<name>.safetensors`` (model weights) + ``<name>.yaml`` (its card).

The card (:class:`~dwscli.processors.card.ProcessorCard`) holds the task, the model's
architecture, kind and options, the input spec and preprocessing, training provenance and
measured metrics; the model is rebuilt from it and the weights loaded into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dwscli.errors import DwsError
from dwscli.processors import registry
from dwscli.processors.card import ProcessorCard

if TYPE_CHECKING:  # imported for types only: this module stays light for `dws processors`
    from torch import nn

    from dwscli.processors.feature_ood import FeatureProfile
    from dwscli.processors.ood import OodProfile
    from dwscli.weights.spec import MLPSpec


@dataclass
class Processor:
    """A loaded processor: its card and its model (in eval mode)."""

    card: ProcessorCard
    model: nn.Module
    path: Path
    ood: OodProfile | None = None  # from the card's ``ood`` section; None when it has none
    # the check of its pooled features (the card's ``ood.features``), when it records one
    feature_ood: FeatureProfile | None = None

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def kind(self) -> str:
        return self.card.model.kind

    @property
    def spec(self) -> MLPSpec:
        return self.card.spec


def resolve_processor_path(name_or_path: str) -> Path:
    """A shipped processor name (``fmnist-accuracy``) or a path to its .yaml/.safetensors."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".safetensors") or candidate.exists():
        card = candidate.with_suffix(".yaml")
        if not card.is_file():
            raise DwsError(f"{card}: processor card not found")
        return card
    shipped = registry.PROCESSORS_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in registry.PROCESSORS_DIR.glob("*.yaml"))
    raise DwsError(
        f"no processor named {name_or_path!r}",
        hint=f"shipped: {', '.join(names)}" if names else "none is shipped",
    )


def build_model(card: ProcessorCard) -> nn.Module:
    """The card's model, untrained: any architecture of :data:`dwscli.nn.archs.ARCHS`, built
    for the card's input spec and kind from its ``model.config``."""
    from dwscli.nn.archs import get_arch

    source = None if card.path is None else str(card.path)
    arch = get_arch(card.model.arch, source)
    options, out_features = arch.options_from_card(card.model.config, source)
    return arch.build(card.spec, card.model.kind, options, out_features)


def ood_profile(card: ProcessorCard) -> OodProfile | None:
    """The card's out-of-distribution profile, or None when it records none."""
    from dwscli.processors.ood import OodProfile

    if not card.ood:
        return None
    source = str(card.path) if card.path is not None else f"processor {card.name}"
    return OodProfile.from_section(card.ood, card.spec.depth, source)


def load_processor(name_or_path: str, *, device: str = "cpu") -> Processor:
    from safetensors.torch import load_file

    card_path = resolve_processor_path(name_or_path)
    card = ProcessorCard.read(card_path)
    profile = ood_profile(card)
    model = build_model(card)
    weights_path = card_path.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise DwsError(f"{weights_path}: processor weights not found")
    try:
        state = load_file(str(weights_path), device=device)
    except Exception as error:  # safetensors raises several error types
        raise DwsError(f"{weights_path}: cannot read processor weights ({error})") from error
    from dwscli.processors.feature_ood import TENSOR_PREFIX, FeatureProfile

    checks = {k: state.pop(k) for k in list(state) if k.startswith(TENSOR_PREFIX)}
    section = (card.ood or {}).get("features")
    feature_ood = None
    if section is not None:
        if not isinstance(section, dict):
            raise DwsError(f"{card_path}: ood.features: expected a mapping")
        from dwscli.nn.models import pooled_features

        if pooled_features(model) is None:
            raise DwsError(
                f"{card_path}: ood.features checks pooled features, and a "
                f"{card.model.arch} {card.model.kind} model has none"
            )
        feature_ood = FeatureProfile.from_tensors(
            checks, section, str(card_path), str(weights_path)
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DwsError(
            f"{weights_path}: weights do not match the card "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )
    check_solve_grid(model, card, card_path, weights_path)
    model.to(device).eval()
    return Processor(card, model, card_path, profile, feature_ood)


def check_solve_grid(model: nn.Module, card: ProcessorCard, card_path: Path, weights: Path) -> None:
    """An editor's closed-form output layer solves on the pixel grid stored in its weights;
    the card's ``input.conventions`` are what inputs are checked against. Refuse a processor
    whose two disagree, or whose grid is damaged, when it is read rather than mid-run."""
    import math

    from dwscli.data.zoo import conventions_metadata
    from dwscli.nn.output_solve import GRID_FIELDS
    from dwscli.weights.inr import InrConventions

    solve = getattr(model, "output_solve", None)
    if solve is None:
        return
    try:
        stored = solve.conventions()
    except DwsError as error:
        raise DwsError(f"{weights}: output_solve.grid: {error.message}") from None
    if card.edit is not None and dict(card.edit) != dict(solve.edit):
        raise DwsError(
            f"{card_path}: the card's edit is {card.edit}, but its output solve draws {solve.edit}"
        )
    conventions = card.input.conventions
    if not isinstance(conventions, dict):
        raise DwsError(f"{card_path}: model.output_solve needs the card's input.conventions")
    wanted = InrConventions.from_metadata(conventions_metadata(conventions), source=str(card_path))
    for field in GRID_FIELDS:
        a, b = getattr(stored, field), getattr(wanted, field)
        if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            raise DwsError(
                f"{weights}: the output solve's pixel grid has {field} {a:g}, but the card's "
                f"input conventions say {b:g}"
            )
