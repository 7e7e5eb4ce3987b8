"""``dws train CONFIG.yaml``: train a weight-space processor (a thin wrapper over dwscli.train)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dwscli.cli.commands import doc_help
from dwscli.cli.options import JsonOption, ThreadsOption, TrainDeviceOption
from dwscli.cli.output import (
    Output,
    format_number,
    key_value_table,
    make_table,
    safe_text,
    stderr_console,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

EPILOG = (
    "Examples:\n\n"
    "  dws train configs/fmnist-accuracy.yaml\n\n"
    "  dws train configs/mnist-inr-classify.yaml --device cuda --json > result.json\n\n"
    "  dws train configs/fmnist-accuracy.yaml --no-resume   # start over\n\n"
    "  torchrun --nproc-per-node 4 -m dwscli train configs/fmnist-accuracy.yaml   # DDP"
)


def _metrics_text(metrics: dict[str, Any] | None) -> str:
    return " ".join(f"{k} {format_number(v)}" for k, v in (metrics or {}).items())


class TrainProgress:
    """Live training progress on stderr: a rich bar per epoch with the current loss and the
    best validation score, or one plain line per epoch when stderr is not a terminal."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self.live = self.console.is_terminal
        self.progress: Progress | None = None
        self.task_id: TaskID | None = None
        self.epochs = 0
        self.best_metric = ""

    # context manager: the bar stops even when training fails
    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _print(self, text: str) -> None:
        from rich.text import Text

        target = self.progress.console if self.progress is not None else self.console
        target.print(Text(safe_text(text)), soft_wrap=True)

    # Reporter interface ---------------------------------------------------------------------
    def start(self, info: dict[str, Any]) -> None:
        self.epochs, self.best_metric = info["epochs"], info["best_metric"]
        from dwscli.data.zoo_format import HELDOUT_SPLIT

        nets = "/".join(str(info["nets"][k]) for k in ("train", "val", "test"))
        if HELDOUT_SPLIT in info["nets"]:
            nets += f" (+{info['nets'][HELDOUT_SPLIT]} held-out-recipe test)"
        self._print(
            f"training {info['name']} ({info['task']}): {nets} train/val/test nets, "
            f"{info['parameters']:,} parameters, {info['device']}, "
            f"{info['world_size']} process(es); initial val {_metrics_text(info['initial']['val'])}"
        )
        if self.live and info["start_epoch"] < self.epochs:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TextColumn("{task.fields[loss]}"),
                TextColumn("{task.fields[best]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task_id = self.progress.add_task(
                "", total=info["steps_per_epoch"], loss="", best=""
            )

    def step(self, epoch: int, step: int, steps: int, loss: float, lr: float) -> None:
        if self.progress is None or self.task_id is None:
            return
        if step == 1:
            self.progress.reset(self.task_id, total=steps)
        self.progress.update(
            self.task_id,
            completed=step,
            description=f"epoch {epoch}/{self.epochs}",
            loss=f"loss {loss:.4g} lr {lr:.2e}",
        )

    def epoch(self, record: dict[str, Any]) -> None:
        best = record.get("best_val") or {}
        best_text = (
            f"best {self.best_metric} {format_number(best.get(self.best_metric))} "
            f"@{record['best_epoch']}"
        )
        val = f"  val {_metrics_text(record['val'])}" if "val" in record else ""
        train = f"  train {_metrics_text(record['train'])}" if "train" in record else ""
        live = record.get("live_head_units")
        head = f"  head units {live[0]}/{live[1]} alive" if live else ""
        mark = " *" if record.get("best") else ""
        self._print(
            f"epoch {record['epoch']}/{self.epochs}  "
            f"train loss {format_number(record['train_loss'])}"
            f"{train}{val}{mark}{head}  ({best_text}, {record['seconds']:.1f} s)"
        )
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, best=best_text)

    def message(self, text: str) -> None:
        self._print(text)


def _render(result: dict[str, Any]) -> object:
    from rich.console import Group

    from dwscli.data.zoo_format import HELDOUT_SPLIT

    summary = key_value_table(
        {
            "processor": result["processor"],
            "weights": result["weights"],
            "epochs": f"{result['epochs_run']} (best {result['best_epoch']}"
            + (", stopped early)" if result["stopped_early"] else ")"),
            "training time": f"{result['seconds']:.1f} s on {result['device']} "
            f"× {result['world_size']} process(es)",
        }
    )
    rows = [
        ("val, before training", result["initial"]["val"]),
        ("train sample, before", result["initial"]["train_sample"]),
        ("train sample, best model", result["train_sample"]),
        ("val, best epoch", result["metrics"]["val"]),
        ("test, best model", result["metrics"]["test"]),
        *(
            [("test, held-out recipes", result["metrics"][HELDOUT_SPLIT])]
            if HELDOUT_SPLIT in result["metrics"]
            else []
        ),
        *((f"test, {name}", by_split["test"]) for name, by_split in result["baselines"].items()),
    ]
    names = list(result["metrics"]["test"])
    table = make_table(
        ["split", *names], [[label, *(format_number(m.get(n)) for n in names)] for label, m in rows]
    )
    return Group(summary, table)


def train_command(
    config: Annotated[str, typer.Argument(metavar="CONFIG.yaml", help="Training config.")],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue from <output>/<name>.last.pt when it exists, or start over.",
        ),
    ] = True,
    device: TrainDeviceOption = None,
    threads: ThreadsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train a weight-space processor as CONFIG.yaml says and write it as
    <output>/<name>.safetensors + <name>.yaml (the card, with test metrics).

    The config names the task (accuracy, inr-classify, adapt), the zoo, the model and the training
    settings; mistakes are reported before any work. The run keeps the model that is best on
    the validation split, evaluates it on the test split at the end, and saves its state every
    epoch: run the same command again after an interruption and it resumes. Under torchrun it
    trains with DistributedDataParallel (gloo on CPU, NCCL on GPU); train.batch_size is then the
    global batch, split across the processes.
    """
    import torch

    from dwscli import api

    if threads is not None:
        torch.set_num_threads(threads)
    settings = api.load_train_config(config, device=device)
    with TrainProgress() as progress:
        result = api.train(settings, resume=resume, reporter=progress)
    if result.rank != 0:
        return
    data = result.to_dict()
    out = Output(json_mode=json_output)
    out.emit(data, render=lambda: _render(data))
    out.success(f"wrote processor {result.processor}")


def register(app: typer.Typer) -> None:
    app.command("train", help=doc_help(train_command), epilog=EPILOG)(train_command)
