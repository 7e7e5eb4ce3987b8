"""``dws processors``: the pretrained processors shipped with dws."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import JsonOption
from dwscli.cli.output import Output, make_table

if TYPE_CHECKING:
    from dwscli.processors.registry import ProcessorCard

EPILOG = "Examples:\n\n  dws processors\n\n  dws processors --json | jq '.[].name'"


def _flat_metrics(metrics: dict[str, object], prefix: str = "") -> list[str]:
    """``key=value`` items, nested sections joined with dots (``baselines.statnn.test.r2=…``)."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            parts.extend(_flat_metrics(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={value}")
    return parts


def _metrics_text(metrics: dict[str, object]) -> str:
    return ", ".join(_flat_metrics(metrics)) or "-"


def render(cards: list[ProcessorCard]) -> object:
    rows = [
        (card.name, card.task, card.input_spec, _metrics_text(card.metrics), card.version)
        for card in cards
    ]
    return make_table(("name", "task", "input spec", "metrics", "version"), rows)


def processors_command(json_output: JsonOption = False) -> None:
    """List the shipped processors: task, the networks they accept, and measured metrics."""
    from dwscli.api import processors

    out = Output(json_mode=json_output)
    cards = processors()
    if not cards:
        out.message("no processors shipped yet")
        if json_output:
            out.emit([])
        return
    out.emit([card.to_dict() for card in cards], render=lambda: render(cards))


def register(app: typer.Typer) -> None:
    app.command("processors", help=doc_help(processors_command), epilog=EPILOG)(processors_command)
