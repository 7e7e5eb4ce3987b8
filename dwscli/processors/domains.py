"""Target domains of adapt processors, and how a requested domain matches a card's.

A domain is a corruption as :mod:`dwscli.data.corruptions` names it: ``rotation``,
``contrast:0.8``, ``rotation:30+gaussian-noise:0.2``. Names are read through that module's
parser, so aliases (``noise``, ``gaussian-blur``), case and ``_`` for ``-`` are accepted.

A card's ``target_domain`` is read with every severity filled in (a part without one means the
corruption's default, which is what training used). A requested domain matches part by part,
in order (corruptions compose left to right, so ``rotation+noise`` is not ``noise+rotation``):
the names must be equal, and a part that states a severity must state the card's.

The corruptions module imports torch, so it is imported only when a domain is parsed; listing
processors (``dws processors``) never parses one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dwscli.errors import DwsError


@dataclass(frozen=True)
class DomainPart:
    """One corruption of a domain: its canonical name and severity (None: any severity)."""

    name: str
    severity: float | None

    def __str__(self) -> str:
        return self.name if self.severity is None else f"{self.name}:{self.severity:g}"


Domain = tuple[DomainPart, ...]


def parse_domain(text: str, *, fill_defaults: bool) -> Domain:
    """``"Noise+rotation:30"`` → ``(gaussian-noise:any, rotation:30)``; with ``fill_defaults``
    a part without a severity gets the corruption's default (how a card's domain is read).

    A bad name or severity is a :class:`DwsError` from the corruptions parser.
    """
    from dwscli.data.corruptions import parse_corruption

    steps = parse_corruption(text)
    stated = [bool(part.partition(":")[2].strip()) for part in text.split("+")]
    return tuple(
        DomainPart(corruption.name, severity if (fill_defaults or given) else None)
        for (corruption, severity), given in zip(steps, stated)
    )


def domain_matches(card_domain: Domain, wanted: Domain) -> bool:
    """Whether a card's domain (severities filled in) is the one ``wanted`` asks for."""
    if len(card_domain) != len(wanted):
        return False
    return all(
        own.name == asked.name
        and (
            asked.severity is None
            or (own.severity is not None and math.isclose(own.severity, asked.severity))
        )
        for own, asked in zip(card_domain, wanted)
    )


def parse_target(target: str) -> Domain:
    """A requested domain (``--target``); a bad one is a one-line error saying so."""
    try:
        return parse_domain(target, fill_defaults=False)
    except DwsError as error:
        raise DwsError(f"bad target domain {target!r}: {error.message}", hint=error.hint) from None


__all__ = ["Domain", "DomainPart", "domain_matches", "parse_domain", "parse_target"]
