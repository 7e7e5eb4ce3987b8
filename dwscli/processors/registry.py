"""The shipped processors: ``<name>.yaml`` cards and ``<name>.safetensors`` weights in this folder.

Listing and choosing processors reads only their cards (:mod:`dwscli.processors.card`), which
needs pyyaml but not torch, so ``dws processors`` stays fast. Which processor a command uses
when none is named is said by the cards themselves (``default_for``), not by the code.
"""

from __future__ import annotations

from pathlib import Path

from dwscli.errors import DwsError
from dwscli.processors.card import ProcessorCard, read_card
from dwscli.processors.domains import Domain, domain_matches, parse_domain, parse_target
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
    spec: MLPSpec | None = None,
    directory: str | Path | None = None,
) -> ProcessorCard:
    """The shipped processor whose card says it is the default for ``task`` (and ``dataset``,
    ``op``); a one-line error saying what is shipped when there is none. When several are
    (e.g. classifiers of one data set for INRs of different architectures), the first by name
    that accepts networks of ``spec``."""
    cards = list_processors(directory)
    defaults = [card for card in cards if card.is_default_for(task, dataset=dataset, op=op)]
    if defaults:
        return preferred_for_spec(defaults, spec)
    wanted = task + (f" with op {op}" if op else "") + (f" on {dataset}" if dataset else "")
    offered = [c for c in cards if c.default_for is not None and c.default_for.task == task]
    choices = sorted(
        {str(c.default_for.dataset or c.default_for.op) for c in offered if c.default_for}
    )
    hint = "pass -p PROCESSOR (a shipped name or a card's path)"
    if choices:
        hint += f"; shipped defaults for {task}: {', '.join(choices)}"
    raise DwsError(f"no shipped processor does {wanted}", hint=hint)


# ------------------------------------------------------------------------------------------
# adapt processors by target domain (``dws adapt --target``)

ADAPT_TASK = "adapt"


def adapt_domains(directory: str | Path | None = None) -> dict[str, str]:
    """``{processor name: target_domain as its card writes it}`` of the shipped adapt processors
    that record a target domain, by name."""
    return {
        card.name: card.target_domain
        for card in list_processors(directory)
        if card.task == ADAPT_TASK and card.target_domain
    }


def card_domain(card: ProcessorCard) -> Domain:
    """The card's target domain, severities filled in; a bad one is an error naming the card."""
    source = str(card.path) if card.path is not None else f"processor {card.name}"
    if not card.target_domain:
        raise DwsError(f"{source}: target_domain: the card records no target domain")
    try:
        return parse_domain(card.target_domain, fill_defaults=True)
    except DwsError as error:
        raise DwsError(f"{source}: target_domain: {error.message}", hint=error.hint) from None


def adapt_processors_for(target: str, directory: str | Path | None = None) -> list[ProcessorCard]:
    """The shipped adapt processors whose target domain is ``target``, the default first, then
    by name; a one-line error naming the shipped domains when none is.

    ``target`` is a corruption name (aliases and any case accepted), composed with ``+``; a part
    without a severity matches any severity, a part with one matches that severity only.
    """
    wanted = parse_target(target)
    cards = [c for c in list_processors(directory) if c.task == ADAPT_TASK and c.target_domain]
    found = [card for card in cards if domain_matches(card_domain(card), wanted)]
    if not found:
        shipped = ", ".join(sorted({str(card.target_domain) for card in cards})) or "none"
        raise DwsError(
            f"no shipped adapt processor for domain {target!r}; shipped domains: {shipped}",
            hint="dws processors --task adapt lists them; -p CARD runs one of your own",
        )
    return sorted(found, key=lambda card: (not card.is_default_for(ADAPT_TASK), card.name))


def preferred_for_spec(cards: list[ProcessorCard], spec: MLPSpec | None) -> ProcessorCard:
    """Of processors in preference order, the first that accepts ``spec`` (when given and one
    does), else the first."""
    if spec is not None:
        for card in cards:
            if card.fits(spec):
                return card
    return cards[0]


def adapt_processor_for(
    target: str, spec: MLPSpec | None = None, directory: str | Path | None = None
) -> ProcessorCard:
    """The shipped adapt processor for domain ``target``: of those that match, the one that
    accepts networks of ``spec``, then the default, then the first by name."""
    return preferred_for_spec(adapt_processors_for(target, directory), spec)


def check_adapt_domain(card: ProcessorCard, target: str) -> None:
    """Refuse a processor (named with ``-p``) whose target domain is not ``target``."""
    wanted = parse_target(target)
    if not card.target_domain:
        raise DwsError(
            f"processor {card.name} records no target domain, so it cannot be checked "
            f"against {target!r}",
            hint="drop --target to run it as it is",
        )
    if not domain_matches(card_domain(card), wanted):
        raise DwsError(
            f"processor {card.name} adapts to {card.target_domain}, not to {target!r}",
            hint="drop -p to pick the processor by --target, or drop --target",
        )


__all__ = [
    "ADAPT_TASK",
    "PROCESSORS_DIR",
    "ProcessorCard",
    "adapt_domains",
    "adapt_processor_for",
    "adapt_processors_for",
    "card_domain",
    "check_adapt_domain",
    "default_processor",
    "find_processor",
    "fitting_processors",
    "list_processors",
    "load_card",
    "preferred_for_spec",
]
