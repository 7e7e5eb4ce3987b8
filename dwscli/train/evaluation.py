"""Collecting a task's per-net values of a model over a split: shared by the trainer (``dws
train``) and ``dws evaluate``, so a processor is scored the same way in both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dwscli.train import data, distributed

if TYPE_CHECKING:
    from torch import nn

    from dwscli.train.netstore import SplitNets
    from dwscli.train.tasks import Task


def training_sample(count: int, limit: int, seed: int) -> Tensor:
    """The positions of the fixed sample of training nets a run fits its input normaliser on
    (and ``embed`` its linear probe): ``limit`` of ``count``, drawn from ``seed``, sorted."""
    picks = torch.randperm(count, generator=data.generator(seed, "sample"))
    return picks[: min(limit, count)].sort().values


def collect_values(
    task: Task,
    model: nn.Module,
    nets: SplitNets,
    *,
    batch_size: int,
    device: torch.device,
    positions: Tensor | None = None,
    env: distributed.DistEnv | None = None,
) -> dict[str, Tensor]:
    """The task's per-net values of ``model`` on ``nets`` (all, or ``positions``), in that
    order; under torchrun each rank scores its share and all ranks get the whole."""
    env = env or distributed.DistEnv()
    chosen = torch.arange(len(nets)) if positions is None else positions
    mine = chosen[env.rank :: env.world_size]
    values: dict[str, list[Tensor]] = {}
    model.eval()
    with torch.no_grad():
        for part in mine.split(batch_size):
            batch = nets.batch(part)
            output = task.eval_forward(model, batch.space.to(device))
            for key, value in task.evaluate(output, batch).items():
                values.setdefault(key, []).append(value.detach().cpu())
    local = {key: torch.cat(parts) for key, parts in values.items()}
    gathered = distributed.all_gather_objects(env, (mine, local))
    order = torch.cat([g[0] for g in gathered]).argsort()
    return {
        key: torch.cat([g[1][key] for g in gathered if key in g[1]])[order]
        for key in gathered[0][1]
    }


__all__ = ["collect_values", "training_sample"]
