"""Process-level settings that make torch on CPU faster for dws workloads.

glibc serves allocations above a dynamic threshold (at most 32 MiB) with fresh ``mmap`` pages and
returns them to the kernel on free, so every large activation of a weight-space network (a batch
of W_i features is tens of MB) is page-faulted in again on every forward and backward: a third
of the run time of a training step on 2 cores. Raising the mmap and trim thresholds keeps freed
blocks in the heap for reuse. The cost is that memory freed after a peak stays with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import TYPE_CHECKING

from dwscli.errors import DwsError

if TYPE_CHECKING:
    import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit
_done = False


def tune_allocator() -> bool:
    """Keep large freed blocks for reuse (glibc only; a no-op elsewhere). Returns True if set.

    Set ``DWS_NO_MALLOC_TUNING=1`` to leave the allocator alone.
    """
    global _done
    if _done or os.environ.get("DWS_NO_MALLOC_TUNING"):
        return _done
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)) and ok
    _done = ok
    return ok


def resolve_device(name: str = "auto") -> torch.device:
    """``--device``: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise DwsError(f"unknown device {name!r}", hint="choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise DwsError(
            "device cuda was asked for, but CUDA is not available here",
            hint="use --device cpu or auto",
        )
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
