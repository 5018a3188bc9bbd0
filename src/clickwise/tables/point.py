"""Compiled pieces of a point read (one key, one moment, one run): the key's rows and its window
edges in one call, and exact distinct counts of a window without building a Python set.

They replace numpy calls of a few microseconds each on the hot path of ``get_one``; the answers
are those of :mod:`clickwise.tables.evaluate`'s general path (tests compare the two).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def locate(
    distinct: np.ndarray,
    starts: np.ndarray,
    times: np.ndarray,
    base_ms: int,
    key_hash: np.uint64,
    as_of_ms: int,
    windows: np.ndarray,
    hops: np.ndarray,
    out: np.ndarray,
) -> bool:
    """Find ``key_hash``'s rows ``[out[0], out[1])``, the end of the rows before ``as_of_ms``
    (``out[2]``) and the start of each window pair's rows (``out[3 + i]``, window lower edge
    ``floor(as_of_ms - windows[i], hops[i])``). ``times`` are event times minus ``base_ms``.
    False when the run has no row of the key."""
    position = np.searchsorted(distinct, key_hash)
    if position == len(distinct) or distinct[position] != key_hash:
        return False
    lo = np.int64(starts[position])
    hi = np.int64(starts[position + 1])
    out[0] = lo
    out[1] = hi
    out[2] = lo + _search(times, lo, hi, as_of_ms - base_ms)
    for i in range(len(windows)):
        edge = ((as_of_ms - windows[i]) // hops[i]) * hops[i]  # hops align on absolute time
        out[3 + i] = lo + _search(times, lo, hi, edge - base_ms)
    return True


@numba.njit(cache=True, nogil=True)
def _search(times: np.ndarray, lo: np.int64, hi: np.int64, target: int | np.int64) -> np.int64:
    """How many of ``times[lo:hi]`` (sorted) are below ``target`` (compared as int64: a target
    outside the int32 range of offsets still compares right)."""
    low, high = lo, hi
    while low < high:
        middle = (low + high) >> 1
        if np.int64(times[middle]) < target:
            low = middle + 1
        else:
            high = middle
    return low - lo


@numba.njit(cache=True, nogil=True)
def distinct_in(hashes: np.ndarray, valid: np.ndarray, start: int, end: int, limit: int) -> int:
    """The number of distinct ``hashes[start:end]`` where ``valid``; -1 when above ``limit`` (the
    caller then estimates from a sketch). One pass through a small open-addressing set (the
    hashes are random already, so their low bits pick the slot): no sort."""
    size = 16
    while size < 2 * (end - start):
        size *= 2
    mask = np.uint64(size - 1)
    slots = np.zeros(size, dtype=np.uint64)  # 0 marks an empty slot; a hash of 0 is counted apart
    zero = False
    count = 0
    for i in range(start, end):
        if not valid[i]:
            continue
        value = np.uint64(hashes[i])
        if value == 0:
            if not zero:
                zero = True
                count += 1
                if count > limit:
                    return -1
            continue
        slot = value & mask
        while slots[slot] != 0 and slots[slot] != value:
            slot = (slot + np.uint64(1)) & mask
        if slots[slot] == 0:
            slots[slot] = value
            count += 1
            if count > limit:
                return -1
    return count


@numba.njit(cache=True, nogil=True)
def last_valid_index(valid: np.ndarray, start: int, end: int) -> int:
    """The last row in ``[start, end)`` where ``valid`` (-1 when none)."""
    for i in range(end - 1, start - 1, -1):
        if valid[i]:
            return i
    return -1


@numba.njit(cache=True, nogil=True)
def first_valid_index(valid: np.ndarray, start: int, end: int) -> int:
    """The first row in ``[start, end)`` where ``valid`` (-1 when none)."""
    for i in range(start, end):
        if valid[i]:
            return i
    return -1
