"""Load a processor: ``<name>.safetensors`` (model weights) + ``<name>.yaml`` (its card).

A card holds the task, the model kind (invariant/equivariant) and hyper-parameters, the input
spec and preprocessing, training provenance and measured metrics (DESIGN.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dwscli.errors import DwsError
from dwscli.safe_yaml import load_yaml_file

if TYPE_CHECKING:  # imported for types only: this module stays light for `dws processors`
    from torch import nn

    from dwscli.weights.spec import MLPSpec

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class Processor:
    """A loaded processor: its card, its model (in eval mode) and the input spec it takes."""

    name: str
    card: dict
    model: nn.Module
    path: Path
    kind: str
    spec: MLPSpec


def resolve_processor_path(name_or_path: str) -> Path:
    """A shipped processor name (``fmnist-accuracy``) or a path to its .yaml/.safetensors."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".safetensors") or candidate.exists():
        card = candidate.with_suffix(".yaml")
        if not card.is_file():
            raise DwsError(f"{card}: processor card not found")
        return card
    shipped = PACKAGE_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in PACKAGE_DIR.glob("*.yaml"))
    raise DwsError(
        f"no processor named {name_or_path!r}",
        hint=f"shipped: {', '.join(names)}" if names else "no processors are shipped yet",
    )


def build_model(card: dict, source: str | None = None):
    """``(spec, kind, model)`` of a card: any architecture of the trainer's registry
    (``model.arch``, ``dws`` when absent), built from its ``model.config``."""
    from dwscli.train.archs import get_arch
    from dwscli.weights.spec import MLPSpec

    where = f"{source}: " if source else ""
    try:
        spec = MLPSpec.parse(card["input"]["spec"])
        model = card["model"]
        kind = model["kind"]
        arch_name = model.get("arch", "dws")
        config = model.get("config") or {}
    except (KeyError, TypeError) as error:
        raise DwsError(f"{where}processor card is missing {error}") from error
    if kind not in ("invariant", "equivariant"):
        raise DwsError(
            f"{where}unknown processor kind {kind!r}", hint="use 'invariant' or 'equivariant'"
        )
    if not isinstance(config, dict):
        raise DwsError(f"{where}model.config must be a mapping")
    arch = get_arch(str(arch_name), source)
    options, out_features = arch.options_from_card(config, source)
    return spec, kind, arch.build(spec, kind, options, out_features)


def load_processor(name_or_path: str, *, device: str = "cpu") -> Processor:
    from safetensors.torch import load_file

    card_path = resolve_processor_path(name_or_path)
    card = load_yaml_file(card_path, "processor card")
    if not isinstance(card, dict):
        raise DwsError(f"{card_path}: processor card must be a mapping")
    spec, kind, model = build_model(card, str(card_path))
    weights_path = card_path.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise DwsError(f"{weights_path}: processor weights not found")
    try:
        state = load_file(str(weights_path), device=device)
    except Exception as error:  # safetensors raises several error types
        raise DwsError(f"{weights_path}: cannot read processor weights ({error})") from error
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DwsError(
            f"{weights_path}: weights do not match the card "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )
    model.to(device).eval()
    return Processor(card.get("name", card_path.stem), card, model, card_path, kind, spec)
