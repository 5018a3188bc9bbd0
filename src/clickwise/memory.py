"""Hand memory that is free but still held by allocators back to the operating system.

Loading table state decodes gigabytes of Parquet: Arrow's pool and the C heap keep the freed
buffers for reuse, which shows up as resident memory a long-running service never needs again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pyarrow as pa


def release_free_memory() -> None:
    """Return unused memory of Arrow's pool and (with glibc) of the C heap to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only
    except OSError:
        return None
