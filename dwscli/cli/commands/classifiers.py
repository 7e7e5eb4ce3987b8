"""``dws predict-accuracy`` and ``dws adapt``: processors for classifier checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dwscli.cli.batch import (
    OOD_COLUMNS,
    BatchOption,
    DeviceOption,
    FailFastOption,
    OodWarningsOption,
    OutDirOption,
    OutputOption,
    PathsArgument,
    ProcessorOption,
    finish,
    run_over_paths,
    write_csv,
)
from dwscli.cli.commands import add_commands
from dwscli.cli.options import ForceOption, JsonOption
from dwscli.cli.output import Output, make_table


def predict_accuracy_command(
    paths: PathsArgument,
    processor: ProcessorOption = None,
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Write CSV on stdout.")] = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
    ood_warnings: OodWarningsOption = True,
) -> None:
    """Predict each classifier's test accuracy from its weights alone (no data needed).

    One row per checkpoint, in input order. Hidden widths may differ from the processor's
    training nets; depth, input and output widths and activation must match. Each row says
    whether the net looks like the processor's training nets (ood_score, in_distribution); a
    warning names each one that does not.
    """
    from dwscli.api import predict_accuracy

    out = Output(json_mode=json_output)
    rows, failures = run_over_paths(
        paths,
        "predict-accuracy",
        predict_accuracy,
        processor=processor,
        batch_size=batch_size,
        device=device,
        fail_fast=fail_fast,
        ood_warnings=ood_warnings,
    )
    if csv_output:
        write_csv(rows, ["path", "spec", "predicted_accuracy", *OOD_COLUMNS])
    else:
        out.emit(
            rows,
            render=lambda: make_table(
                ["path", "spec", "predicted accuracy"],
                [[r["path"], r["spec"], f"{100 * r['predicted_accuracy']:.1f} %"] for r in rows],
                no_wrap=("predicted accuracy",),
            ),
        )
    finish(out, failures, len(rows))


TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="DOMAIN",
        help="Pick the shipped processor by its target domain: a corruption (rotation, noise, "
        "blur, contrast; compose with +); a bare name matches any severity, 'rotation:25' only "
        "that one. 'dws processors --task adapt' lists the shipped domains.",
    ),
]


def adapt_command(
    paths: PathsArgument,
    output: OutputOption = None,
    out_dir: OutDirOption = None,
    processor: ProcessorOption = None,
    target: TargetOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
    ood_warnings: OodWarningsOption = True,
) -> None:
    """Adapt classifiers to a new input domain in one forward pass (no retraining, no labels).

    The processor is -p, or the shipped one for the domain --target names, or the shipped
    default. Writes new checkpoints with each input's keys, dtypes and metadata, plus provenance
    (the processor, its version and target domain). Inputs are never overwritten unless --force.
    """
    from dwscli.api import adapt
    from dwscli.errors import DwsError

    if (output is None) == (out_dir is None):
        raise DwsError("pass exactly one of -o OUT and --out-dir DIR", exit_code=2)
    out = Output(json_mode=json_output)
    rows, failures = run_over_paths(
        paths,
        "adapt",
        adapt,
        output=Path(output) if output else None,
        out_dir=Path(out_dir) if out_dir else None,
        processor=processor,
        target=target,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        ood_warnings=ood_warnings,
    )
    out.emit(
        rows,
        render=lambda: make_table(["input", "output"], [[r["input"], r["output"]] for r in rows]),
    )
    if rows:
        out.success(f"adapted {len(rows)} checkpoint{'s' if len(rows) != 1 else ''}")
    finish(out, failures, len(rows))


EXAMPLES = {
    "predict-accuracy": (
        "  dws predict-accuracy model.safetensors\n\n"
        "  dws predict-accuracy runs/ --csv > accuracies.csv\n\n"
        "  find runs -name '*.safetensors' | dws predict-accuracy - --json"
    ),
    "adapt": (
        "  dws adapt model.safetensors -o model-adapted.safetensors\n\n"
        "  dws adapt 'runs/*.safetensors' --out-dir adapted/\n\n"
        "  dws adapt example:fmnist-mlp -p fmnist-adapt-contrast -o /tmp/adapted.safetensors\n\n"
        "  dws adapt example:fmnist-mlp --target contrast -o /tmp/adapted.safetensors\n\n"
        "  dws processors --task adapt   # the shipped target domains"
    ),
}


def register(app: typer.Typer) -> None:
    add_commands(
        app,
        {
            "predict-accuracy": predict_accuracy_command,
            "adapt": adapt_command,
        },
        EXAMPLES,
    )
