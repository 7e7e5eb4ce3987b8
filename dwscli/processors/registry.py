"""The shipped processors: ``<name>.yaml`` cards and ``<name>.safetensors`` weights in this folder.

Listing and choosing processors reads only their cards (:mod:`dwscli.processors.card`), which
needs pyyaml but not torch, so ``dws processors`` stays fast. Which processor a command uses
when none is named is said by the cards themselves (``default_for``), not by the code.
"""

from __future__ import annotations

from pathlib import Path

from dwscli.errors import DwsError
from dwscli.processors.card import ProcessorCard, read_card
from dwscli.weights.spec import MLPSpec

PROCESSORS_DIR = Path(__file__).resolve().parent


def load_card(path: str | Path) -> ProcessorCard:
    """Read and check one processor card (YAML)."""
    return read_card(path)


def list_processors(directory: str | Path | None = None) -> list[ProcessorCard]:
    """Cards of the processors shipped in ``directory`` (default: this package folder), by name."""
    folder = PROCESSORS_DIR if directory is None else Path(directory)
    cards = [load_card(p) for p in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))]
    return sorted(cards, key=lambda card: card.name)


def fitting_processors(
    spec: MLPSpec, cards: list[ProcessorCard] | None = None
) -> list[ProcessorCard]:
    """The shipped processors that accept networks of ``spec``."""
    return [card for card in (list_processors() if cards is None else cards) if card.fits(spec)]


def find_processor(name: str, directory: str | Path | None = None) -> ProcessorCard:
    """The shipped processor called ``name``."""
    cards = list_processors(directory)
    for card in cards:
        if card.name == name:
            return card
    names = ", ".join(card.name for card in cards) or "none"
    raise DwsError(f"no processor named {name!r}", hint=f"available: {names}")


def default_processor(
    task: str,
    *,
    dataset: str | None = None,
    op: str | None = None,
    directory: str | Path | None = None,
) -> ProcessorCard:
    """The shipped processor whose card says it is the default for ``task`` (and ``dataset``,
    ``op``); a one-line error saying what is shipped when there is none."""
    cards = list_processors(directory)
    for card in cards:
        if card.is_default_for(task, dataset=dataset, op=op):
            return card
    wanted = task + (f" with op {op}" if op else "") + (f" on {dataset}" if dataset else "")
    offered = [c for c in cards if c.default_for is not None and c.default_for.task == task]
    choices = sorted(
        {str(c.default_for.dataset or c.default_for.op) for c in offered if c.default_for}
    )
    hint = "pass -p PROCESSOR (a shipped name or a card's path)"
    if choices:
        hint += f"; shipped defaults for {task}: {', '.join(choices)}"
    raise DwsError(f"no shipped processor does {wanted}", hint=hint)


__all__ = [
    "PROCESSORS_DIR",
    "ProcessorCard",
    "default_processor",
    "find_processor",
    "fitting_processors",
    "list_processors",
    "load_card",
]
