"""What the trainer shows while it trains: training metrics beside validation, live head units,
and a warning when the training loss stops moving."""

from __future__ import annotations

from pathlib import Path

from dwscli.train import Reporter, train
from dwscli.train.config import TrainConfig


class Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _config(zoo: Path, out: Path, lr: float, epochs: int, head_norm: str = "batch") -> TrainConfig:
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
