"""``dws processors``: the pretrained processors shipped with dws."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import JsonOption
from dwscli.cli.output import Output, make_table

if TYPE_CHECKING:
    from dwscli.processors.registry import ProcessorCard

EPILOG = (
    "Examples:\n\n  dws processors\n\n  dws processors --task adapt\n\n"
    "  dws processors --json | jq '.[].name'"
)


def _format(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _metrics_text(metrics: dict[str, object]) -> str:
    """The test metrics (the split the card reports as the result), then the baselines' test
    metrics; ``--json`` has everything, the validation split included."""
    test = metrics.get("test")
    if not isinstance(test, dict):
        return "-"
    parts = [f"{k} {_format(v)}" for k, v in test.items() if k != "loss"]
    baselines = metrics.get("baselines")
    if isinstance(baselines, dict):
        for name, splits in baselines.items():
            scores = splits.get("test", {}) if isinstance(splits, dict) else {}
            shown = ", ".join(f"{k} {_format(v)}" for k, v in scores.items() if k != "loss")
            if shown:
                parts.append(f"[{name}: {shown}]")
    return ", ".join(parts)


def render(cards: list[ProcessorCard]) -> object:
    """The table; the ``domain`` column (an adapt processor's target domain) only when a listed
    card has one, so that narrow terminals keep their width for the rest."""
    columns = ["name", "task", "domain", "input spec", "test metrics", "version"]
    rows = [
        [
            card.name,
            card.task,
            card.target_domain or "",
            card.input_spec,
            _metrics_text(card.metrics),
            card.version,
        ]
        for card in cards
    ]
    widest = max(len(row[2]) for row in rows) if rows else 0
    if not widest:
        del columns[2]
        for row in rows:
            del row[2]
    return make_table(
        columns,
        rows,
        min_width={"domain": min(widest, 24)},  # a domain reads whole (contrast:0.8)
    )


def processors_command(
    json_output: JsonOption = False,
    task: Annotated[
        str | None,
        typer.Option(
            "--task", metavar="TASK", help="Only processors of TASK (adapt, accuracy, ...)."
        ),
    ] = None,
) -> None:
    """List the shipped processors: task, target domain (adapt), the networks they accept, and
    measured metrics."""
    from dwscli.api import processors

    out = Output(json_mode=json_output)
    cards = processors(task=task)
    if not cards:
        out.message(f"no {task} processors shipped" if task else "no processors shipped yet")
        if json_output:
            out.emit([])
        return
    out.emit([card.to_dict() for card in cards], render=lambda: render(cards))


def register(app: typer.Typer) -> None:
    app.command("processors", help=doc_help(processors_command), epilog=EPILOG)(processors_command)
