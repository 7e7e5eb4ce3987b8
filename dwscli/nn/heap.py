"""Handing freed heap memory back to the kernel between the blocks of a blocked forward.

glibc's malloc keeps freed memory of its heap mapped (and resident) for reuse. A blocked
forward frees and reallocates its row blocks and their temporaries many times, between small
allocations that live longer (the pooled statistics); the heap's free space then fragments, and
how much of it stays resident depends on the order of the allocations, which varies from run to
run. Measured on a 784-2048-2048-2048-10 net, the same ``dws adapt`` command peaked anywhere
between 584 and 810 MiB, with 114-220 MiB of it free heap memory, whatever the mmap threshold.
``malloc_trim(0)`` returns the free pages (anywhere in the heap, not only at its top) to the
kernel; called once per row block, it costs a small share of the block's own work.

Elsewhere than glibc (macOS, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any


@cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` from the symbols already loaded, or None."""
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def release_free_heap() -> bool:
    """Return the heap's free pages to the kernel; True when the C library can (glibc)."""
    function = _malloc_trim()
    if function is None:
        return False
    function(0)
    return True


__all__ = ["release_free_heap"]
