"""``dws classify``, ``dws edit`` and ``dws embed``: processors for INRs (and any invariant one).

Thin wrappers over :mod:`dwscli.api`, with the conventions of the classifier commands
(paths, ``-p``, ``--device``, ``--batch-size``, ``--fail-fast``, per-file errors, progress bar).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    csv_value,
    finish,
    run_over_paths,
)
from dwscli.cli.commands import add_commands
from dwscli.cli.options import JsonOption
from dwscli.cli.output import Output, key_value_table, make_table

ConventionsForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        "-f",
        help="Run INRs whose conventions (w0, grid, coordinate range, output scaling) differ "
        "from the processor's card.",
    ),
]
WriteForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        "-f",
        help="Overwrite existing outputs, and run INRs whose conventions (w0, grid, coordinate "
        "range, output scaling) differ from the processor's card.",
    ),
]


def _top_k_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{c['class']} {100 * c['probability']:.1f} %" for c in row["top_k"])


def classify_command(
    paths: PathsArgument,
    processor: ProcessorOption = None,
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Write CSV on stdout.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes listed per INR.")] = 3,
    force: ConventionsForceOption = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
    ood_warnings: OodWarningsOption = True,
) -> None:
    """Classify what each INR draws, from its weights alone (no rendering).

    One row per INR, in input order: the predicted class, its probability and the top-k list
    (plus the true label when the metadata records one). Without -p each INR goes to the
    shipped classifier of the data set its metadata names (dws zoo export records it), else
    mnist-inr-classify.
    """
    from dwscli.api import classify

    out = Output(json_mode=json_output)
    rows, failures = run_over_paths(
        paths,
        "classify",
        classify,
        processor=processor,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        ood_warnings=ood_warnings,
    )
    if csv_output:
        _write_classify_csv(rows)
    else:
        out.emit(rows, render=lambda: _classify_table(rows))
    finish(out, failures, len(rows))


def _classify_table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return None
    with_label = any("label" in r for r in rows)
    columns = ["path", "class", "probability", "top-k"] + (["label"] if with_label else [])
    cells = [
        [r["path"], r["class"], f"{100 * r['probability']:.1f} %", _top_k_text(r)]
        + ([r.get("label", "")] if with_label else [])
        for r in rows
    ]
    return make_table(columns, cells, no_wrap=("class", "probability", "label"))


def _write_classify_csv(rows: list[dict[str, Any]]) -> None:
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(
        ["path", "processor", "class", "class_index", "probability", "top_k", "label", *OOD_COLUMNS]
    )
    for r in rows:
        ranked = ";".join(f"{c['class']}:{c['probability']}" for c in r["top_k"])
        writer.writerow(
            [
                r["path"],
                r["processor"],
                r["class"],
                r["class_index"],
                r["probability"],
                ranked,
                r.get("label", ""),
                *(csv_value(r.get(column)) for column in OOD_COLUMNS),
            ]
        )


def edit_command(
    paths: PathsArgument,
    op: Annotated[
        str | None,
        typer.Option(
            "--op", metavar="OP", help="The edit (dilate, …): uses processor mnist-inr-OP."
        ),
    ] = None,
    output: OutputOption = None,
    out_dir: OutDirOption = None,
    processor: ProcessorOption = None,
    preview: Annotated[
        str | None,
        typer.Option(
            "--preview",
            metavar="GRID.png",
            help="Also write a before/after PNG: per INR (first 16) input | output | "
            "the input edited in pixels.",
        ),
    ] = None,
    force: WriteForceOption = False,
    json_output: JsonOption = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
    ood_warnings: OodWarningsOption = True,
) -> None:
    """Edit what INRs draw (dilate, …) in one forward pass, without rendering and refitting.

    Writes new INR checkpoints with each input's keys, dtypes and metadata, plus provenance
    (dws.operation=edit, dws.edit_op, dws.processor, dws.processor_version). Inputs are never
    overwritten unless --force.
    """
    from dwscli.api import edit
    from dwscli.errors import DwsError

    if (output is None) == (out_dir is None):
        raise DwsError("pass exactly one of -o OUT and --out-dir DIR", exit_code=2)
    out = Output(json_mode=json_output)
    rows, failures = run_over_paths(
        paths,
        "edit",
        edit,
        op=op,
        processor=processor,
        output=Path(output) if output else None,
        out_dir=Path(out_dir) if out_dir else None,
        preview=Path(preview) if preview else None,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        ood_warnings=ood_warnings,
    )
    out.emit(
        rows,
        render=lambda: (
            None
            if not rows
            else make_table(["input", "output"], [[r["input"], r["output"]] for r in rows])
        ),
    )
    if rows:
        out.success(f"edited {len(rows)} INR{'s' if len(rows) != 1 else ''}")
        if preview:
            out.success(f"wrote preview {preview}")
    finish(out, failures, len(rows))


def embed_command(
    paths: PathsArgument,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Embeddings file: .npy (+ OUT.paths.txt), .csv, .jsonl or .safetensors.",
        ),
    ],
    processor: ProcessorOption = None,
    plot: Annotated[
        str | None,
        typer.Option("--plot", metavar="TSNE.png", help="Also draw a 2-D t-SNE of the rows."),
    ] = None,
    color_by: Annotated[
        str | None,
        typer.Option(
            "--color-by",
            metavar="KEY",
            help="Colour the plot by this metadata field (a, label, … as dws inspect shows; "
            "dws zoo export's dws.zoo.label.KEY etc. are found by KEY).",
        ),
    ] = None,
    force: WriteForceOption = False,
    json_output: JsonOption = False,
    batch_size: BatchOption = 1024,
    device: DeviceOption = "auto",
    fail_fast: FailFastOption = False,
    ood_warnings: OodWarningsOption = True,
) -> None:
    """Embed networks as vectors, one row per checkpoint in input order, with its path.

    The default, sine-embed, gives the pooled features of its contrastively trained DWSNet;
    an embedding processor trained with embedding: output gives its output; any other
    invariant processor (-p) gives its pooled features before the head.
    """
    from dwscli.api import embed

    out = Output(json_mode=json_output)
    summary, failures = run_over_paths(
        paths,
        "embed",
        embed,
        output=Path(output),
        processor=processor,
        plot=Path(plot) if plot else None,
        color_by=color_by,
        batch_size=batch_size,
        device=device,
        force=force,
        fail_fast=fail_fast,
        ood_warnings=ood_warnings,
    )
    shown = {**summary, "files": ", ".join(summary["files"]), "plot": summary["plot"] or "-"}
    out.emit(summary, render=lambda: key_value_table(shown))
    out.success(f"wrote {summary['rows']} embeddings of dimension {summary['dim']} to {output}")
    finish(out, failures, int(summary["rows"]))


EXAMPLES = {
    "classify": (
        "  dws classify example:mnist-inr\n\n"
        "  dws classify inrs/ --top-k 3 --json\n\n"
        "  dws classify 'inrs/*.safetensors' -p fmnist-inr-classify --csv > classes.csv"
    ),
    "edit": (
        "  dws edit example:mnist-inr --op dilate -o dilated.safetensors --preview p.png\n\n"
        "  dws edit inrs/ --op dilate --out-dir dilated/"
    ),
    "embed": (
        "  dws embed sines/ -o embeddings.npy\n\n"
        "  dws embed sines/ -o emb.csv --plot tsne.png --color-by a\n\n"
        "  dws embed inrs/ -p mnist-inr-classify -o emb.jsonl --plot tsne.png --color-by label"
    ),
}


def register(app: typer.Typer) -> None:
    add_commands(
        app,
        {
            "classify": classify_command,
            "edit": edit_command,
            "embed": embed_command,
        },
        EXAMPLES,
    )
