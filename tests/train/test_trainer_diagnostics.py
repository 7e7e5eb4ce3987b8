"""What the trainer shows while it trains: training metrics beside validation, live head units,
and a warning when the training loss stops moving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dwscli.nn.heads import net_batch_norms
from dwscli.train import Reporter, distributed, train
from dwscli.train.config import TrainConfig
from dwscli.train.loop import Trainer


class Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _config(
    zoo: Path, out: Path, lr: float, epochs: int, head_norm: str = "batch", **train: Any
) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "name": "diag",
            "task": "inr-classify",
            "zoo": str(zoo),
            "output": str(out),
            "model": {
                "hidden_channels": 4,
                "num_layers": 1,
                "head_hidden": [8],
                "head_norm": head_norm,
            },
            "train": {
                "epochs": epochs,
                "batch_size": 8,
                "lr": lr,
                "schedule": "constant",
                "seed": 0,
                "device": "cpu",
                "stall_evals": 2,
                **train,
            },
        }
    )


def test_every_validation_reports_training_metrics_and_live_units(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    reporter = Messages()
    result = train(_config(small_inr_zoo, tmp_path, 3e-3, 3), reporter=reporter)
    validated = [r for r in result.history if "train" in r]
    assert len(validated) == 3
    for record in validated:
        assert set(record["train"]) == set(record["val"])
        alive, total = record["live_head_units"]
        assert total == 8 and 0 <= alive <= total
    assert result.metrics["train"] == result.train_sample
    assert not any("has not moved" in line for line in reporter.lines)


def test_a_training_loss_that_does_not_move_is_warned_about_once(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    """A model that does not learn (a learning rate of 1e-12; no batch norm, whose batch
    statistics would make the loss jitter) keeps the same training loss epoch after epoch."""
    reporter = Messages()
    train(_config(small_inr_zoo, tmp_path, 1e-12, 5, head_norm="none"), reporter=reporter)
    warnings = [line for line in reporter.lines if "has not moved" in line]
    assert len(warnings) == 1
    assert "last 2 validations" in warnings[0] and "live head units" in warnings[0]


def _head_input_statistics(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance of what the head's batch norm sees over the whole training
    sample, one net at a time, with the trainer's current weights and nothing in training mode."""
    norm = net_batch_norms(trainer.model)[0]
    seen: list[torch.Tensor] = []
    handle = norm.register_forward_pre_hook(lambda _m, args: seen.append(args[0].double()))
    trainer.model.eval()
    try:
        with torch.no_grad():
            for position in trainer.sample_positions:
                space = trainer.train_nets.batch(position[None]).space
                trainer.task.eval_forward(trainer.model, space)
    finally:
        handle.remove()
    features = torch.cat(seen)
    return features.mean(0), features.var(0)


def test_evaluations_normalise_with_statistics_of_the_evaluated_weights(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    """Before every validation the head norm's running statistics are recomputed from the
    current weights over the training sample (not an average that trails training), so the
    kept model carries the statistics of its own weights; with the option off they trail.
    Training itself is the same either way: only what evaluation sees changes."""
    runs = {}
    for recalibrate in (True, False):
        config = _config(
            small_inr_zoo, tmp_path / str(recalibrate), 3e-2, 2, recalibrate_norms=recalibrate
        )
        trainer = Trainer(config, distributed.env_from_torchrun(), torch.device("cpu"), None)
        runs[recalibrate] = trainer.run(resume=False)  # ends with the best model loaded
        norm = net_batch_norms(trainer.model)[0]
        mean, var = _head_input_statistics(trainer)
        recalibrated = torch.allclose(
            norm.running_mean.double(), mean, atol=1e-4, rtol=1e-4
        ) and torch.allclose(norm.running_var.double(), var, atol=1e-4, rtol=1e-3)
        assert recalibrated == recalibrate
    losses = {k: [r["train_loss"] for r in run.history[1:]] for k, run in runs.items()}
    assert losses[True] == losses[False]


def test_grid_probes_with_geometric_augmentation_are_warned_about(
    small_inr_zoo: Path, tmp_path: Path
) -> None:
    def run(augment: dict[str, float] | None, grid: bool) -> list[str]:
        data = _config(small_inr_zoo, tmp_path / f"{grid}{augment}", 1e-3, 1).to_dict()
        data["model"] = {**data["model"], "probes": 8, "probe_grid": grid}
        data["train"] = {**data["train"], "augment": augment}
        reporter = Messages()
        train(TrainConfig.from_dict(data), reporter=reporter)
        return [line for line in reporter.lines if "probe_grid" in line]

    warned = run({"rotate": 10.0}, grid=True)
    assert len(warned) == 1 and warned[0].startswith("warning: model.probe_grid")
    assert run({"noise": 0.05}, grid=True) == []  # weight noise keeps the image on the grid
    assert run({"rotate": 10.0}, grid=False) == []
