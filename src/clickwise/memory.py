"""Hand memory that is free but still held by allocators back to the operating system, or keep it
for a while on purpose.

Loading table state decodes gigabytes of Parquet: Arrow's pool and the C heap keep the freed
buffers for reuse, which shows up as resident memory a long-running service never needs again.

A long catch-up is the opposite case: it frees and allocates arrays of hundreds of megabytes many
times over. glibc maps each one afresh and unmaps it when freed, so the kernel zeroes every page
again; under a hypervisor that reclaims free guest memory (virtio-balloon free page reporting),
touching that memory again costs about a second per GB. :func:`reused_memory` keeps freed memory
in the C heap for the next allocation while a catch-up runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator

import pyarrow as pa


def release_free_memory() -> None:
    """Return unused memory of Arrow's pool and (with glibc) of the C heap to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# glibc's mallopt parameters, and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEEP_UP_TO = 2**31 - 1  # (mallopt takes a C int)


@contextlib.contextmanager
def reused_memory() -> Iterator[None]:
    """Inside the block, memory the C heap frees stays in the heap for the next allocations (no
    fresh mapping per large array, no trimming), and Arrow allocates from that heap too (its own
    pool would take fresh pages for the buffers that numpy's freed memory could hold); afterwards
    glibc's defaults and Arrow's pool return, and free memory goes back to the system. Without
    glibc, the block runs unchanged."""
    mallopt = _libc_function("mallopt")
    if mallopt is None or not mallopt(_M_MMAP_MAX, 0):
        yield
        return
    mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO)
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())  # (a buffer is freed by the pool that made it)
    try:
        yield
    finally:
        pa.set_memory_pool(pool)
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        release_free_memory()


def _malloc_trim() -> Callable[[int], int] | None:
    return _libc_function("malloc_trim")


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name, None)  # glibc only
    except OSError:
        return None
