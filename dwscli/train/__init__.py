"""One trainer for every task: ``dws train CONFIG.yaml`` and :func:`train`.

    >>> from dwscli.train import train
    >>> result = train("configs/fmnist-accuracy.yaml")
    >>> result.metrics["test"]["kendall_tau"]

The pieces: :mod:`~dwscli.train.config` (the YAML schema), :mod:`~dwscli.train.tasks` (what is
optimised and measured, one module per task), :mod:`~dwscli.nn.archs` (which model),
:mod:`~dwscli.train.loop` (the loop), :mod:`~dwscli.train.distributed` (torchrun/DDP),
:mod:`~dwscli.train.state` (resuming), :mod:`~dwscli.train.card` (the processor it writes).
"""

from __future__ import annotations

from dwscli.train.config import TrainConfig, TrainSettings, load_config
from dwscli.train.loop import train
from dwscli.train.report import Reporter, TrainReporter, TrainResult
from dwscli.train.tasks import TASKS, Task

__all__ = [
    "TASKS",
    "Reporter",
    "Task",
    "TrainConfig",
    "TrainReporter",
    "TrainResult",
    "TrainSettings",
    "load_config",
    "train",
]
