"""``dws evaluate PROCESSOR ZOO``: a processor's task metrics and OOD flag rate on a zoo split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dwscli.cli.batch import BatchOption, DeviceOption
from dwscli.cli.commands import doc_help
from dwscli.cli.options import JsonOption, ThreadsOption
from dwscli.cli.output import Output, format_number, make_table

if TYPE_CHECKING:
    from dwscli.train.evaluate_processor import Evaluation

EPILOG = (
    "Examples:\n\n"
    "  dws evaluate mnist-inr-classify zoos/mnist-inr\n\n"
    "  dws evaluate sine-embed zoos/sines-diverse --split all --by optimizer --by init\n\n"
    "  dws evaluate fmnist-accuracy zoos/fmnist-clf --split test_heldout_recipe --json\n\n"
    "  dws evaluate mnist-inr-classify zoos/mnist-inr-diverse --split all --where psnr=25.."
)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _metrics_text(metrics: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {format_number(v)}" for k, v in (metrics or {}).items()) or "-"


def render(result: Evaluation) -> object:
    """One row for the split, one per recipe-field value, one per outcome."""
    flagged = None if result.ood is None else result.ood["flagged_fraction"]
    rows: list[list[object]] = [
        [result.split, result.nets, _metrics_text(result.metrics), _percent(flagged)]
    ]
    if result.card_metrics:
        nets = f", nets with {result.card_where}" if result.card_where else ""
        rows.append(
            [
                f"{result.split} (card: training zoo{nets})",
                "",
                _metrics_text(result.card_metrics),
                "",
            ]
        )
    for name, groups in result.by.items():
        for value, group in groups.items():
            rows.append(
                [
                    f"{name}={value}",
                    group["nets"],
                    _metrics_text(group["metrics"]),
                    _percent(group["flagged_fraction"]),
                ]
            )
    for label, group in (result.outcome or {}).items():
        rows.append([f"processor {label}", group["nets"], "", _percent(group["flagged_fraction"])])
    title = f"{result.processor} ({result.task}) on {result.zoo}"
    if result.where:
        title += f", nets with {result.where}"
    return make_table(["nets", "count", "metrics", "OOD flagged"], rows, title=title)


def evaluate_command(
    processor: Annotated[
        str, typer.Argument(help="A shipped processor name or a .yaml/.safetensors path.")
    ],
    zoo: Annotated[str, typer.Argument(metavar="ZOO", help="Zoo directory.")],
    split: Annotated[
        str,
        typer.Option("--split", help="test, val, train, test_heldout_recipe or all (every split)."),
    ] = "test",
    max_nets: Annotated[
        int | None,
        typer.Option("--max-nets", min=1, help="Score at most N nets (evenly spaced)."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            metavar="FIELD",
            help="Also break the metrics down by a recorded recipe field (optimizer, init, …).",
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            metavar="KEY=A|B,KEY=LOW..HIGH",
            help="Score only the nets whose recorded recipe, fit metric or label meets every "
            "condition, e.g. 'psnr=25..' (nets that fit their image to 25 dB or better) or "
            "'optimizer=adam,steps=..300' (LOW <= value < HIGH).",
        ),
    ] = None,
    batch_size: BatchOption = 128,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Score a processor on a zoo split with the metrics its task reports in dws train, and the
    fraction of those nets its out-of-distribution check flags.

    On the processor's own training zoo the metrics equal its card's. On other zoos (another
    seed, another fitting recipe) they show how far the processor holds; --by breaks them down
    by a recipe field the nets record."""
    import torch

    from dwscli import api

    if threads is not None:
        torch.set_num_threads(threads)
    out = Output(json_mode=json_output)
    result = api.evaluate(
        processor,
        zoo,
        split=split,
        max_nets=max_nets,
        by=by,
        where=where,
        batch_size=batch_size,
        device=device,
    )
    out.emit(result.to_dict(), render=lambda: render(result))


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=doc_help(evaluate_command), epilog=EPILOG)(evaluate_command)
