"""Sorting that knows what it sorts: merging runs that are already sorted, and a radix sort of hashes.

Compaction merges runs, each already sorted by (key, event time, arrival time); a general sort
would redo that work, so :func:`merge_sorted_blocks` merges them pairwise in linear passes. Grouping
a batch of events by key hash needs a stable sort of 64-bit values; :func:`radix_argsort` does it
in a few linear passes (one per 11-bit digit that varies) instead of a comparison sort.

>>> none = np.zeros(4, np.int64)
>>> merge_sorted_blocks(np.array([0, 2, 4]), np.array([1, 5, 2, 3]), none, none)
array([0, 2, 3, 1])
>>> radix_argsort(np.array([3, 1, 2, 1], dtype=np.uint64))
array([1, 3, 2, 0])
"""

from __future__ import annotations

import numba
import numpy as np


def merge_sorted_blocks(
    offsets: np.ndarray, first: np.ndarray, second: np.ndarray, third: np.ndarray
) -> np.ndarray:
    """The stable sort of a concatenation of blocks ``[offsets[i], offsets[i + 1])``, each already
    sorted by ``(first, second, third)``; equal rows keep their block order."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    return _merge_blocks(
        offsets, np.ascontiguousarray(first), np.ascontiguousarray(second), np.ascontiguousarray(third)
    )


def merge_key_blocks(
    by_key: np.ndarray,
    key_hash: np.ndarray,
    row_low: np.ndarray,
    row_high: np.ndarray,
    event_ms: np.ndarray,
    arrival_ms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge runs key by key. ``key_hash[g]`` is the hash of key block ``g`` (the concatenated keys
    of every run), whose rows are ``[row_low[g], row_high[g])`` of the concatenated rows, sorted by
    (event time, arrival time; ``arrival_ms`` may be empty); ``by_key`` orders the blocks by hash,
    blocks of the same hash in run order. Returns the rows in (key, time, arrival) order (ties keep
    run order), and per distinct key its first block and its number of rows. A key held by one run
    is copied as it is; the others merge a handful of short blocks: one pass over the rows."""
    return _merge_key_blocks(
        np.ascontiguousarray(by_key, dtype=np.int64),
        np.ascontiguousarray(key_hash),
        np.ascontiguousarray(row_low, dtype=np.int64),
        np.ascontiguousarray(row_high, dtype=np.int64),
        np.ascontiguousarray(event_ms, dtype=np.int64),
        np.ascontiguousarray(arrival_ms, dtype=np.int64),
    )


def rank_argsort(values: np.ndarray, distinct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stable argsort of unsigned 64-bit ``values`` drawn from the sorted ``distinct`` (few of
    them: countries, campaigns), and how many of each: each value finds its rank in a small hash
    table, then one counting pass places the rows."""
    return _rank_argsort(np.ascontiguousarray(values, dtype=np.uint64), np.ascontiguousarray(distinct))


def radix_argsort(values: np.ndarray) -> np.ndarray:
    """A stable argsort of unsigned 64-bit values (least significant 11-bit digit first; digits that
    are the same in every value are skipped)."""
    return _radix_argsort(np.ascontiguousarray(values, dtype=np.uint64))


_DIGIT_BITS = 11  # six passes with 2,048 buckets (the counts stay in the first-level cache)
_RADIX = 1 << _DIGIT_BITS


@numba.njit(cache=True, nogil=True, inline="always")
def _less(first: np.ndarray, second: np.ndarray, third: np.ndarray, i: int, j: int) -> bool:
    if first[i] != first[j]:
        return first[i] < first[j]
    if second[i] != second[j]:
        return second[i] < second[j]
    return third[i] < third[j]


@numba.njit(cache=True, nogil=True)
def _merge_blocks(
    offsets: np.ndarray, first: np.ndarray, second: np.ndarray, third: np.ndarray
) -> np.ndarray:
    total = offsets[-1]
    source = np.arange(total, dtype=np.int64)
    target = np.empty(total, dtype=np.int64)
    bounds = offsets.copy()
    blocks = len(bounds) - 1
    while blocks > 1:
        merged = np.empty((blocks + 1) // 2 + 1, dtype=np.int64)
        merged[0] = 0
        count = 0
        for left in range(0, blocks, 2):
            a, a_end = bounds[left], bounds[left + 1]
            b = a_end
            b_end = bounds[left + 2] if left + 1 < blocks else a_end
            out = a
            while a < a_end and b < b_end:
                if _less(first, second, third, source[b], source[a]):  # strictly less: stable
                    target[out] = source[b]
                    b += 1
                else:
                    target[out] = source[a]
                    a += 1
                out += 1
            while a < a_end:
                target[out] = source[a]
                a += 1
                out += 1
            while b < b_end:
                target[out] = source[b]
                b += 1
                out += 1
            count += 1
            merged[count] = b_end
        source, target = target, source
        bounds = merged[: count + 1]
        blocks = count
    return source


@numba.njit(cache=True, nogil=True)
def _merge_key_blocks(
    by_key: np.ndarray,
    key_hash: np.ndarray,
    row_low: np.ndarray,
    row_high: np.ndarray,
    event_ms: np.ndarray,
    arrival_ms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    blocks = len(by_key)
    total = 0
    for g in range(blocks):
        total += row_high[g] - row_low[g]
    order = np.empty(total, dtype=np.int64)
    firsts = np.empty(blocks, dtype=np.int64)
    counts = np.empty(blocks, dtype=np.int64)
    positions = np.empty(blocks, dtype=np.int64)  # the next row of each block in a group
    by_arrival = len(arrival_ms) > 0  # (no arrival times: ties on time keep run order)
    out = 0
    keys = 0
    i = 0
    while i < blocks:
        wanted = key_hash[by_key[i]]
        j = i + 1
        while j < blocks and key_hash[by_key[j]] == wanted:
            j += 1
        begin = out
        if j == i + 1:  # one run holds the key: its rows as they are
            for row in range(row_low[by_key[i]], row_high[by_key[i]]):
                order[out] = row
                out += 1
        else:
            for k in range(i, j):
                positions[k] = row_low[by_key[k]]
            while True:
                best = -1
                for k in range(i, j):  # the earliest block wins a tie: stable
                    row = positions[k]
                    if row == row_high[by_key[k]]:
                        continue
                    if best < 0:
                        best = k
                        continue
                    chosen = positions[best]
                    if event_ms[row] < event_ms[chosen]:
                        best = k
                    elif event_ms[row] == event_ms[chosen] and by_arrival:
                        if arrival_ms[row] < arrival_ms[chosen]:
                            best = k
                if best < 0:
                    break
                order[out] = positions[best]
                positions[best] += 1
                out += 1
        firsts[keys] = by_key[i]
        counts[keys] = out - begin
        keys += 1
        i = j
    return order, firsts[:keys], counts[:keys]


@numba.njit(cache=True, nogil=True)
def _rank_argsort(values: np.ndarray, distinct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = 1
    while size < 2 * len(distinct):
        size *= 2
    mask = np.uint64(size - 1)
    slots = np.full(size, -1, dtype=np.int64)  # open addressing: the values are hashes already
    for rank in range(len(distinct)):
        slot = distinct[rank] & mask
        while slots[slot] >= 0:
            slot = (slot + np.uint64(1)) & mask
        slots[slot] = rank
    ranks = np.empty(len(values), dtype=np.int64)
    counts = np.zeros(len(distinct), dtype=np.int64)
    for i in range(len(values)):
        slot = values[i] & mask
        while distinct[slots[slot]] != values[i]:  # every value is one of distinct
            slot = (slot + np.uint64(1)) & mask
        ranks[i] = slots[slot]
        counts[slots[slot]] += 1
    position = np.empty(len(distinct), dtype=np.int64)
    total = 0
    for rank in range(len(distinct)):
        position[rank] = total
        total += counts[rank]
    order = np.empty(len(values), dtype=np.int64)
    for i in range(len(values)):
        order[position[ranks[i]]] = i
        position[ranks[i]] += 1
    return order, counts


@numba.njit(cache=True, nogil=True)
def _radix_argsort(values: np.ndarray) -> np.ndarray:
    count = len(values)
    order = np.arange(count, dtype=np.int64)
    spare = np.empty(count, dtype=np.int64)
    keys = values.copy()
    spare_keys = np.empty(count, dtype=np.uint64)
    histogram = np.zeros(_RADIX, dtype=np.int64)
    for shift in range(0, 64, _DIGIT_BITS):
        histogram[:] = 0
        for i in range(count):
            histogram[(keys[i] >> np.uint64(shift)) & np.uint64(_RADIX - 1)] += 1
        if count == 0 or histogram.max() == count:  # this digit is the same everywhere
            continue
        position = 0
        for digit in range(_RADIX):
            size = histogram[digit]
            histogram[digit] = position
            position += size
        for i in range(count):
            digit = (keys[i] >> np.uint64(shift)) & np.uint64(_RADIX - 1)
            slot = histogram[digit]
            histogram[digit] = slot + 1
            spare[slot] = order[i]
            spare_keys[slot] = keys[i]
        order, spare = spare, order
        keys, spare_keys = spare_keys, keys
    return order
