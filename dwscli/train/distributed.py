"""Distributed training with ``torchrun``: detection, process group, and the few collectives.

``torchrun --nproc-per-node N -m dwscli train CONFIG.yaml`` starts N copies of the same command
with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` set; with a world
size above one the trainer joins a process group (gloo on CPU, NCCL on CUDA, one GPU per local
rank) and wraps the model in ``DistributedDataParallel``. Without those variables everything
here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dwscli import runtime
from dwscli.errors import DwsError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_torchrun() -> DistEnv:
    """Rank and world size from torchrun's environment (one process when absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise DwsError(f"cannot read the torchrun environment ({error})") from error
    return DistEnv(rank, world, local) if world > 1 else DistEnv()


def resolve_device(preference: str, env: DistEnv) -> torch.device:
    """:func:`dwscli.runtime.resolve_device`; under torchrun each rank takes its local GPU."""
    if runtime.resolve_device(preference).type == "cpu":
        return torch.device("cpu")
    index = env.local_rank % torch.cuda.device_count() if env.enabled else 0
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def setup(env: DistEnv, device: torch.device) -> None:
    """Join the process group (no-op for one process, or when already joined)."""
    if not env.enabled or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise DwsError("WORLD_SIZE > 1 but no MASTER_ADDR/MASTER_PORT: start with torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


def teardown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def all_gather_objects(env: DistEnv, value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, …]`` on every rank (``[value]`` alone)."""
    if not env.enabled:
        return [value]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, value)
    return out


def all_reduce_sum(env: DistEnv, values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over ranks (in place; float64 on the values' device)."""
    if env.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_object(env: DistEnv, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not env.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


__all__ = [
    "DistEnv",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "env_from_torchrun",
    "resolve_device",
    "setup",
    "teardown",
]
