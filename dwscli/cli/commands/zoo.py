"""``dws zoo …``: make model zoos (INRs, sine INRs, classifiers), inspect, export and merge them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dwscli.cli.commands import add_commands
from dwscli.cli.options import ForceOption, JsonOption, ThreadsOption
from dwscli.cli.output import Output, key_value_table, make_table, progress_bar

zoo_app = typer.Typer(
    name="zoo",
    help="Make model zoos (INRs, sine INRs, classifiers); inspect, export, merge and split them.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OutOption = Annotated[str, typer.Option("--out", "-o", metavar="DIR", help="Zoo directory.")]
CountOption = Annotated[int, typer.Option("--count", "-n", min=1, help="Number of nets.")]
SeedOption = Annotated[
    int, typer.Option("--seed", min=0, help="Zoo seed (every net's seed derives from it).")
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Make only part I of N (1-based) of the zoo, e.g. for a job array; join the parts "
        "with 'dws zoo merge'.",
    ),
]
ShardSizeOption = Annotated[
    int | None, typer.Option("--shard-size", min=1, help="Nets per shard file (default: ~16 MB).")
]
RecipeOption = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        metavar="diverse|FILE.yaml",
        help="Draw every net's fitting recipe from ranges: 'diverse' (optimiser Adam or SGD "
        "with momentum, log-uniform learning rate, initialisation, batch size, weight decay; "
        "see README) or a recipe file FILE.yaml naming the ranges. Default: one recipe.",
    ),
]
HoldOutOption = Annotated[
    str | None,
    typer.Option(
        "--hold-out",
        metavar="KEY=A|B,KEY=LOW..HIGH",
        help="Hold a recipe region out of train and val: its nets make up the extra split "
        "test_heldout_recipe, e.g. 'optimizer=sgd,init=dwsnets' or 'lr=1e-3..1e-2' "
        "(keys are the recorded hparams; LOW <= value < HIGH).",
    ),
]


def _setup(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


def _make(
    maker: Any, description: str, total: int, out_dir: str, part: str | None, **kw: Any
) -> None:
    """Run a zoo maker with a progress bar and report what was made."""
    with progress_bar(total, description) as advance:
        zoo = maker(out_dir, part=part, progress=advance, **kw)
    _report(Output(), zoo, out_dir, part)


def _report(out: Output, zoo: Any, directory: str, part: str | None) -> None:
    if zoo is None:
        message = f"part {part} of {directory} is done" if part else f"{directory} is not finished"
        out.success(message + ("; join the parts with 'dws zoo merge'" if part else ""))
        return
    out.success(f"zoo {directory}: {len(zoo)} nets")


# ------------------------------------------------------------------------------------------------


def inrs_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="mnist or fashion-mnist.")],
    out_dir: OutOption,
    count: Annotated[
        int | None,
        typer.Option("--count", "-n", min=1, help="Nets (default: one per image, 70,000)."),
    ] = None,
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="Fitting preset: 'default' (2-32-32-32-1, SIREN init, Adam 3e-3, <= 300 steps, "
            "35 dB) or 'dwsnets' (the DWSNets authors' recipe: 2-32-32-1, small uniform init, "
            "zero sine biases, output + 0.5, Adam 5e-4, <= 1,000 steps, 40 dB); the options "
            "below override the preset. Or a recipe-diverse zoo with the conventions of "
            "'dwsnets': 'diverse' (every net draws optimiser Adam/SGD, log-uniform lr, step "
            "budget, PSNR target or none, init, pixels per step, weight decay; see README) or "
            "a recipe file FILE.yaml naming the ranges.",
        ),
    ] = "default",
    steps: Annotated[int | None, typer.Option(help="Step budget per net.")] = None,
    psnr_target: Annotated[float | None, typer.Option(help="Stop a net at this PSNR (dB).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    spec: Annotated[str | None, typer.Option(help="SIREN spec.")] = None,
    chunk: Annotated[
        int | None, typer.Option(min=1, help="Nets fitted together (default 128).")
    ] = None,
    compile_step: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the fitting step.")
    ] = True,
    shared_init: Annotated[
        bool,
        typer.Option(
            "--shared-init/--own-init",
            help="Start every SIREN from one shared initialisation (default: each its own).",
        ),
    ] = False,
    test_first: Annotated[
        bool,
        typer.Option(
            "--test-first/--in-order",
            help="Make the shards of the test images first (the zoo is the same; an "
            "interrupted run already has its test split).",
        ),
    ] = False,
    hold_out: HoldOutOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    shard_size: ShardSizeOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Fit one SIREN per image of MNIST or Fashion-MNIST (official train images, then test).

    Resumable: run the same command again after an interruption and it continues from the
    last finished shard. The INR conventions (grid, coordinate range, output scaling, w0) are
    written into the zoo and into every exported checkpoint.
    """
    from dwscli import api

    _setup(threads)
    fitting = api.inr_recipe(recipe, spec=spec)  # checks the name; the spec the zoo will have
    total = api.zoo_part_size(count or 70_000, part=shard, shard_size=shard_size, spec=fitting.spec)
    _make(
        api.make_inr_zoo,
        f"INRs {dataset}",
        total,
        out_dir,
        shard,
        dataset=dataset,
        count=count,
        recipe=recipe,
        steps=steps,
        psnr_target=psnr_target,
        lr=lr,
        spec=spec,
        chunk=chunk,
        compiled=compile_step,
        shared_init=shared_init,
        seed=seed,
        shard_size=shard_size,
        test_first=test_first,
        hold_out=api.hold_out_region(hold_out),
    )


def sines_command(
    out_dir: OutOption,
    count: CountOption = 5000,
    spec: Annotated[str, typer.Option(help="SIREN spec.")] = "1-32-32-1:sine;w0=30",
    steps: Annotated[int, typer.Option(help="Step budget per net.")] = 1000,
    compile_step: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the fitting step.")
    ] = True,
    recipe: RecipeOption = None,
    hold_out: HoldOutOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    shard_size: ShardSizeOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Fit 1-D SIRENs to a·sin(b·x) on [-π, π] with a, b ~ U(0, 10) (a, b recorded as labels)."""
    from dwscli import api
    from dwscli.data.recipes import resolve_recipe

    if recipe is not None:
        resolve_recipe(recipe, "sine")  # a bad recipe is refused before anything else
    region = api.hold_out_region(hold_out)
    _setup(threads)
    total = api.zoo_part_size(count, part=shard, shard_size=shard_size, spec=spec)
    _make(
        api.make_sine_zoo,
        "sine INRs",
        total,
        out_dir,
        shard,
        count=count,
        spec=spec,
        steps=steps,
        compiled=compile_step,
        recipe=recipe,
        seed=seed,
        shard_size=shard_size,
        hold_out=region,
    )


def classifiers_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="fashion-mnist or mnist.")],
    out_dir: OutOption,
    count: CountOption = 5000,
    preset: Annotated[
        str,
        typer.Option(
            help="Hyper-parameter ranges: 'spread' (accuracies from chance to good, for "
            "accuracy prediction) or 'adaptation' (decent source classifiers)."
        ),
    ] = "spread",
    spec: Annotated[str, typer.Option(help="Classifier spec (inputs = pooled pixels).")] = (
        "196-32-32-10:relu"
    ),
    pool: Annotated[int, typer.Option(min=1, help="Average-pool factor of the 28x28 images.")] = 2,
    eval_corruption: Annotated[
        str | None,
        typer.Option(help="Also record accuracy on the test set under this corruption."),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            metavar="diverse|FILE.yaml",
            help="Also draw every net's optimiser (Adam, or SGD with momentum and its own lr "
            "range), initialisation (torch-linear, he-normal, xavier-uniform) and minibatch "
            "size: 'diverse' or a recipe file FILE.yaml. Default: Adam, torch init, batch 128.",
        ),
    ] = None,
    hold_out: HoldOutOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    shard_size: ShardSizeOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Train MLP classifiers, each with its own learning rate, weight decay, init scale,
    number of steps, training subset, label noise, dropout and seed; record test accuracy,
    train accuracy and loss of every net."""
    from dwscli import api
    from dwscli.data.recipes import resolve_recipe

    api.classifier_preset(preset)  # an unknown preset is refused before anything else
    if recipe is not None:
        resolve_recipe(recipe, "classifier")
    region = api.hold_out_region(hold_out)
    _setup(threads)
    total = api.zoo_part_size(count, part=shard, shard_size=shard_size, spec=spec)
    _make(
        api.make_classifier_zoo,
        f"classifiers {dataset}",
        total,
        out_dir,
        shard,
        dataset=dataset,
        count=count,
        preset=preset,
        spec=spec,
        pool=pool,
        eval_corruption=eval_corruption,
        recipe=recipe,
        seed=seed,
        shard_size=shard_size,
        hold_out=region,
    )


# ------------------------------------------------------------------------------------------------


def _distribution_rows(info: dict[str, Any]) -> list[list[object]]:
    rows = []
    for group in ("metrics", "labels", "hparams"):
        for key, stats in (info.get(group) or {}).items():
            if not stats.get("count"):
                continue
            missing = stats.get("missing") or 0
            rows.append(
                [
                    f"{group[:-1] if group != 'hparams' else 'hparam'} {key}",
                    f"{stats['count']} (+{missing} none)" if missing else stats["count"],
                    *(f"{stats[k]:.4g}" for k in ("min", "p10", "median", "p90", "max", "mean")),
                ]
            )
    return rows


def _category_rows(info: dict[str, Any]) -> list[list[object]]:
    """One row per categorical field (e.g. ``hparam optimizer | adam 61, sgd 39``)."""
    rows: list[list[object]] = []
    for group, fields in (info.get("categories") or {}).items():
        label = "hparam" if group == "hparams" else group[:-1]
        for key, counts in fields.items():
            rows.append([f"{label} {key}", ", ".join(f"{v} {n}" for v, n in counts.items())])
    return rows


def info_command(
    directory: Annotated[str, typer.Argument(metavar="DIR")], json_output: JsonOption = False
) -> None:
    """Counts, splits, spec and the distribution of every recorded metric and label."""
    from dwscli.api import zoo_info

    info = zoo_info(directory)
    out = Output(json_mode=json_output)

    def render() -> object:
        from rich.console import Group

        summary = {
            "zoo": info["path"],
            "kind": info["kind"],
            "spec": info["spec"],
            "dataset": info.get("dataset"),
            "nets": info.get("nets", info.get("count")),
            "splits": ", ".join(f"{k} {v}" for k, v in (info.get("splits") or {}).items()),
            "size": f"{info.get('size_bytes', 0) / 1e6:.1f} MB",
        }
        if not info.get("finished", True):
            summary["progress"] = f"{info.get('shards_done')} of {info.get('num_shards')} shards"
        table = make_table(
            ["field", "count", "min", "p10", "median", "p90", "max", "mean"],
            _distribution_rows(info),
        )
        problems = info.get("problems") or []
        parts: list[Any] = [key_value_table(summary), table]
        categories = _category_rows(info)
        if categories:
            parts.append(make_table(["field", "values (count)"], categories))
        if problems:
            parts.append(key_value_table({"problem": "; ".join(problems)}))
        return Group(*parts)

    out.emit(info, render=render)
    if info.get("problems"):
        raise typer.Exit(1)


def export_command(
    directory: Annotated[str, typer.Argument(metavar="DIR")],
    ids: Annotated[
        str | None,
        typer.Option("--ids", help="Comma-separated net ids (see manifest.jsonl)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Export (the first --limit nets of) a split.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many.")] = None,
    out_dir: Annotated[str, typer.Option("--out", "-o", metavar="OUTDIR")] = ".",
    force: ForceOption = False,
    json_output: JsonOption = False,
) -> None:
    """Write single nets of a zoo as standalone safetensors checkpoints (with their metadata)."""
    from dwscli.api import export_zoo

    chosen = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    paths = export_zoo(directory, out_dir, ids=chosen, split=split, limit=limit, force=force)
    out = Output(json_mode=json_output)
    out.emit([str(p) for p in paths], render=lambda: None)
    out.success(f"wrote {len(paths)} checkpoints to {out_dir}")


def split_command(
    directory: Annotated[str, typer.Argument(metavar="DIR")],
    hold_out: Annotated[
        str,
        typer.Option(
            "--hold-out",
            metavar="KEY=A|B,KEY=LOW..HIGH",
            help="The recipe region to hold out of train and val (its nets become the split "
            "test_heldout_recipe), e.g. 'optimizer=sgd,init=dwsnets' or 'lr=1e-3..1e-2'; "
            "'none' splits without one.",
        ),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Rewrite the zoo's split even though that changes which nets are test nets.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Split a finished zoo again with a held-out recipe region (rewrites zoo.json's split and
    splits.json; the nets stay as they are). Source images still stay in one split."""
    from dwscli.api import split_zoo

    region = None if hold_out.strip().lower() == "none" else hold_out
    zoo = split_zoo(directory, hold_out=region, force=force)
    counts = {name: len(ids) for name, ids in zoo.splits.items()}
    out = Output(json_mode=json_output)
    out.emit(counts, render=lambda: None)
    out.success(f"split {directory}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def merge_command(
    parts: Annotated[list[str], typer.Argument(metavar="PART...", help="Part directories.")],
    out_dir: OutOption,
) -> None:
    """Join zoo parts made with --shard I/N into one zoo, checking nothing is missing or doubled."""
    from dwscli.api import merge_zoos

    zoo = merge_zoos([*parts], out_dir)
    Output().success(f"merged {len(parts)} parts into {out_dir}: {len(zoo)} nets")


EXAMPLES = {
    "inrs": (
        "  dws zoo inrs --dataset mnist -o zoos/mnist-inr\n\n"
        "  dws zoo inrs --dataset fashion-mnist -o zoos/fmnist-inr --shard 2/8\n\n"
        "  dws zoo inrs --dataset mnist --count 500 -o /tmp/small --no-compile\n\n"
        "  dws zoo inrs -d mnist --recipe diverse --hold-out 'optimizer=sgd' -o zoos/mnist-div"
    ),
    "sines": (
        "  dws zoo sines --count 5000 -o zoos/sines\n\n"
        "  dws zoo sines --count 5000 --recipe my-recipes.yaml -o zoos/sines-div"
    ),
    "classifiers": (
        "  dws zoo classifiers --dataset fashion-mnist --count 5000 -o zoos/fmnist-clf\n\n"
        "  dws zoo classifiers -d fashion-mnist -n 2000 --preset adaptation "
        "--eval-corruption rotation -o zoos/fmnist-clf-da"
    ),
    "info": "  dws zoo info zoos/mnist-inr\n\n  dws zoo info zoos/mnist-inr --json | jq .splits",
    "export": (
        "  dws zoo export zoos/mnist-inr --ids mnist-inr-000007 -o inrs/\n\n"
        "  dws zoo export zoos/mnist-inr --split test --limit 10 -o inrs/"
    ),
    "merge": "  dws zoo merge part1 part2 part3 -o zoos/fmnist-inr",
    "split": (
        "  dws zoo split zoos/mnist-inr-diverse --hold-out 'optimizer=sgd,init=dwsnets' --force"
        "\n\n  dws zoo split zoos/mnist-inr-diverse --hold-out 'lr=1e-3..3e-3' --force"
    ),
}


def register(app: typer.Typer) -> None:
    add_commands(
        zoo_app,
        {
            "inrs": inrs_command,
            "sines": sines_command,
            "classifiers": classifiers_command,
            "info": info_command,
            "export": export_command,
            "merge": merge_command,
            "split": split_command,
        },
        EXAMPLES,
    )
    app.add_typer(zoo_app, name="zoo")
