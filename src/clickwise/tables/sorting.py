"""Sorting that knows what it sorts: merging runs that are already sorted, and a radix sort of hashes.

Compaction merges runs, each already sorted by (key, event time, arrival time); a general sort
would redo that work, so :func:`merge_key_blocks` merges them key by key. Grouping events by key
hash needs a stable sort of 64-bit values; :func:`radix_sort` does it in linear passes instead of a
comparison sort, and returns a :class:`Permutation` that moves the other columns in two
cache-friendly steps. Also here: set membership of hashes and the count of late events.

>>> none = np.zeros(4, np.int64)
>>> merge_sorted_blocks(np.array([0, 2, 4]), np.array([1, 5, 2, 3]), none, none)
array([0, 2, 3, 1])
>>> radix_argsort(np.array([3, 1, 2, 1], dtype=np.uint64))
array([1, 3, 2, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa


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


def rank_order(ranks: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable argsort of ``ranks`` (integers in ``[0, count)``, few distinct: a key's number among
    the sorted distinct keys), and how many rows hold each rank: one counting pass."""
    return _rank_order(np.ascontiguousarray(ranks), count)


@numba.njit(cache=True, nogil=True)
def _rank_order(ranks: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(count, dtype=np.int64)
    for i in range(len(ranks)):
        counts[ranks[i]] += 1
    position = np.empty(count, dtype=np.int64)
    total = 0
    for rank in range(count):
        position[rank] = total
        total += counts[rank]
    order = np.empty(len(ranks), dtype=np.int64)
    for i in range(len(ranks)):
        order[position[ranks[i]]] = i
        position[ranks[i]] += 1
    return order, counts


def member_mask(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Whether each of the unsigned 64-bit ``values`` (hashes) is one of ``wanted``: one probe of
    a small hash table per value."""
    return _member_mask(np.ascontiguousarray(values, dtype=np.uint64), np.unique(wanted).astype(np.uint64))


def first_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For unsigned 64-bit ``values`` with few distinct ones (hashes of countries, campaigns): the
    first row holding each distinct value, in order of appearance, and each row's number among them
    (int32): one probe of a small hash table per row, no sort."""
    return _first_rows(np.ascontiguousarray(values, dtype=np.uint64))


@numba.njit(cache=True, nogil=True)
def _first_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = 1024
    mask = np.uint64(size - 1)
    slots = np.full(size, -1, dtype=np.int64)  # which distinct value sits there
    firsts = np.empty(64, dtype=np.int64)
    found = 0
    number = np.empty(len(values), dtype=np.int32)
    for i in range(len(values)):
        slot = values[i] & mask
        while slots[slot] >= 0 and values[firsts[slots[slot]]] != values[i]:
            slot = (slot + np.uint64(1)) & mask
        if slots[slot] < 0:  # a new value
            if found == len(firsts):
                firsts = np.concatenate((firsts, np.empty(found, dtype=np.int64)))
            firsts[found] = i
            slots[slot] = found
            found += 1
            if 2 * found > size:  # keep the table at most half full
                size *= 2
                mask = np.uint64(size - 1)
                slots = np.full(size, -1, dtype=np.int64)
                for known in range(found):
                    slot = values[firsts[known]] & mask
                    while slots[slot] >= 0:
                        slot = (slot + np.uint64(1)) & mask
                    slots[slot] = known
            number[i] = found - 1
        else:
            number[i] = slots[slot]
    return firsts[:found].copy(), number


@numba.njit(cache=True, nogil=True)
def _hash_slots(keys: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """An open-addressing table of distinct hashes (at most half full): each slot holds the position
    in ``keys`` of the hash there, or -1; a hash starts probing at its low bits (``& mask``)."""
    size = 2
    while size < 2 * len(keys):
        size *= 2
    mask = np.uint64(size - 1)
    slots = np.full(size, -1, dtype=np.int64)  # (the keys are hashes already: no hashing again)
    for i in range(len(keys)):
        slot = keys[i] & mask
        while slots[slot] >= 0:
            slot = (slot + np.uint64(1)) & mask
        slots[slot] = i
    return slots, mask


_FILTER_BITS = 22  # (a bitmap of 512 KB at most)


@numba.njit(cache=True, nogil=True)
def _member_mask(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    slots, mask = _hash_slots(wanted)
    # A bit per value of the top bits, set for the wanted hashes: most values are not wanted, and
    # one look at this small bitmap (cached) rules them out before two random reads of the table.
    top_bits = 10
    while top_bits < _FILTER_BITS and (1 << top_bits) < 32 * len(wanted):
        top_bits += 1
    shift = np.uint64(64 - top_bits)
    seen = np.zeros(1 << (top_bits - 3), dtype=np.uint8)
    for k in range(len(wanted)):
        bit = wanted[k] >> shift
        seen[bit >> np.uint64(3)] |= np.uint8(1) << np.uint8(bit & np.uint64(7))
    found = np.zeros(len(values), dtype=np.bool_)
    for i in range(len(values)):
        bit = values[i] >> shift
        if not seen[bit >> np.uint64(3)] & (np.uint8(1) << np.uint8(bit & np.uint64(7))):
            continue
        slot = values[i] & mask
        while slots[slot] >= 0:
            if wanted[slots[slot]] == values[i]:
                found[i] = True
                break
            slot = (slot + np.uint64(1)) & mask
    return found


def radix_argsort(values: np.ndarray) -> np.ndarray:
    """A stable argsort of unsigned 64-bit values.

    Hashes (whose top bits vary) are sorted most significant digit first: one pass over the whole
    array places each value in its bucket by the top 11 bits, then each bucket, small enough for the
    cache, is split by the next 11 bits and the few values of each part are put in order there.
    Other values are sorted least significant 11-bit digit first, skipping digits that are the same
    in every value.
    """
    return radix_sort(values)[0].order


def radix_sort(values: np.ndarray) -> tuple[Permutation, np.ndarray]:
    """:func:`radix_argsort` as a :class:`Permutation`, and the values in that order."""
    data = np.ascontiguousarray(values, dtype=np.uint64)
    if len(data) >= _MSD_MIN and int(data.max()) >> (64 - _DIGIT_BITS) > 0:
        first, ordered, slots, positions = _msd_argsort(data)
        return Permutation(None, slots, positions, first), ordered
    order, ordered = _radix_argsort(data)
    return Permutation(order), ordered


@dataclass
class Permutation:
    """A reordering of rows: row ``k`` of the result is row ``order[k]`` of the input.

    A sort by hash sends rows to random places, and gathering a long column in that order misses the
    cache on almost every row. A most-significant-digit sort also knows its first pass: ``slots``
    (where each input row went, bucketed by its top bits) and ``positions`` (which slot each result
    row comes from, within the same bucket). Applying it in those two steps reads and writes memory
    in a few thousand streams, and about four times faster for columns of millions of rows.
    (``first`` is the first pass's order: ``order`` is ``first[positions]``, made when asked for.)
    """

    _order: np.ndarray | None
    slots: np.ndarray | None = None
    positions: np.ndarray | None = None
    first: np.ndarray | None = None

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            assert self.first is not None and self.positions is not None
            self._order = self.first[self.positions]
        return self._order

    def __len__(self) -> int:
        return len(self.positions) if self.positions is not None else len(self.order)

    def order_at(self, rows: np.ndarray) -> np.ndarray:
        """``order[rows]`` (without making all of ``order``)."""
        if self._order is None and self.first is not None and self.positions is not None:
            return self.first[self.positions[rows]]
        return self.order[rows]

    def apply(self, data: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
        """``data`` (one value per input row) in the result's order. ``scratch`` (bytes, at least
        as many as ``data`` holds) saves allocating the first step's memory for each column."""
        if self.slots is None or self.positions is None:
            return data[self.order]
        if scratch is not None and scratch.nbytes >= data.nbytes:
            staged = scratch[: data.nbytes].view(data.dtype)
        else:
            staged = np.empty(len(data), dtype=data.dtype)
        staged[self.slots] = data
        return staged[self.positions]

    def apply_parts(self, parts: Sequence[np.ndarray], scratch: np.ndarray | None = None) -> np.ndarray:
        """:meth:`apply` of ``parts`` read as one array: with the two steps, each part is scattered
        where it goes, without joining the parts first."""
        if len(parts) == 1 or self.slots is None or self.positions is None:
            return self.apply(parts[0] if len(parts) == 1 else np.concatenate(parts), scratch)
        dtype = np.result_type(*parts)
        if scratch is not None and scratch.nbytes >= len(self) * dtype.itemsize:
            staged = scratch[: len(self) * dtype.itemsize].view(dtype)
        else:
            staged = np.empty(len(self), dtype=dtype)
        base = 0
        for part in parts:
            staged[self.slots[base : base + len(part)]] = part
            base += len(part)
        return staged[self.positions]

    def apply_texts(self, parts: Sequence[pa.Array]) -> pa.Array:
        """Texts without nulls (one per input row, in ``parts`` read as one) in the result's order
        (a large string array): bytes are moved in the same two steps as :meth:`apply`."""
        parts = [part.cast(pa.large_string()) for part in parts]
        if self.slots is None or self.positions is None:
            return pa.concat_arrays(parts).take(pa.array(self.order))
        sources = [_text_buffers(part) for part in parts]
        width = _common_width([offsets for offsets, _ in sources])
        if width is not None:  # (ids of one length: each text moves as one fixed-size item)
            return self._apply_fixed_width(sources, width)
        staged_offsets = np.zeros(len(self) + 1, dtype=np.int64)
        base = 0
        for offsets, _ in sources:  # each part read in order, its texts sent to their buckets
            _scatter_lengths(offsets, self.slots[base : base + len(offsets) - 1], staged_offsets)
            base += len(offsets) - 1
        np.cumsum(staged_offsets, out=staged_offsets)
        staged = np.empty(staged_offsets[-1], dtype=np.uint8)
        base = 0
        for offsets, data in sources:
            _scatter_bytes(offsets, data, self.slots[base : base + len(offsets) - 1], staged_offsets, staged)
            base += len(offsets) - 1
        out_offsets, out_data = _gather_texts(staged_offsets, staged, self.positions)
        return pa.LargeStringArray.from_buffers(len(self), pa.py_buffer(out_offsets), pa.py_buffer(out_data))

    def _apply_fixed_width(self, sources: list[tuple[np.ndarray, np.ndarray]], width: int) -> pa.Array:
        """:meth:`apply_texts` of texts that all have ``width`` bytes (nonzero), moved as items."""
        assert self.slots is not None and self.positions is not None
        item = np.dtype((np.void, width))
        staged = np.empty(len(self), dtype=item)
        base = 0
        for offsets, data in sources:
            count = len(offsets) - 1
            staged[self.slots[base : base + count]] = data[offsets[0] : offsets[-1]].view(item)
            base += count
        moved = staged[self.positions]
        offsets = np.arange(0, (len(self) + 1) * width, width, dtype=np.int64)
        return pa.LargeStringArray.from_buffers(
            len(self), pa.py_buffer(offsets), pa.py_buffer(moved.view(np.uint8))
        )

    def after(self, first: np.ndarray) -> Permutation:
        """The reordering ``first``, then this one."""
        return Permutation(first[self.order])


def _text_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (of this array's rows) and the bytes of a large string array without nulls."""
    if texts.null_count:
        raise ValueError("texts with nulls cannot be moved as bytes")
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.zeros(0, np.uint8) if buffers[2] is None else np.frombuffer(buffers[2], dtype=np.uint8)
    return offsets, data


def _common_width(offsets: list[np.ndarray]) -> int | None:
    """The byte length every text has, when they all have the same nonzero one."""
    widths = {int(part[1] - part[0]) for part in offsets if len(part) > 1}
    if len(widths) != 1 or 0 in widths:
        return None
    width = widths.pop()
    if any(int(part[-1] - part[0]) != width * (len(part) - 1) for part in offsets):
        return None
    if all(_all_steps(part, width) for part in offsets):
        return width
    return None


@numba.njit(cache=True, nogil=True)
def _all_steps(offsets: np.ndarray, width: int) -> bool:
    for i in range(len(offsets) - 1):
        if offsets[i + 1] - offsets[i] != width:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _scatter_lengths(offsets: np.ndarray, slots: np.ndarray, lengths: np.ndarray) -> None:
    for i in range(len(slots)):  # (lengths[slot + 1]: a running sum turns them into offsets)
        lengths[slots[i] + 1] = offsets[i + 1] - offsets[i]


@numba.njit(cache=True, nogil=True)
def _scatter_bytes(
    offsets: np.ndarray, data: np.ndarray, slots: np.ndarray, out_offsets: np.ndarray, out: np.ndarray
) -> None:
    for i in range(len(slots)):
        start, target = offsets[i], out_offsets[slots[i]]
        for j in range(offsets[i + 1] - start):
            out[target + j] = data[start + j]


@numba.njit(cache=True, nogil=True)
def _gather_texts(
    offsets: np.ndarray, data: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    count = len(positions)
    out_offsets = np.empty(count + 1, dtype=np.int64)
    out_offsets[0] = 0
    for k in range(count):
        out_offsets[k + 1] = out_offsets[k] + offsets[positions[k] + 1] - offsets[positions[k]]
    out = np.empty(out_offsets[count], dtype=np.uint8)
    for k in range(count):
        start, target = offsets[positions[k]], out_offsets[k]
        for j in range(offsets[positions[k] + 1] - start):
            out[target + j] = data[start + j]
    return out_offsets, out


def group_sorted(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of sorted ``ordered`` and where each one's rows start (plus the end;
    int32 when the rows allow)."""
    distinct, starts = _group_sorted(np.ascontiguousarray(ordered))
    return distinct, starts.astype(np.int32) if len(ordered) < 2**31 else starts


@numba.njit(cache=True, nogil=True)
def _group_sorted(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = len(ordered)
    groups = 1 if count else 0
    for i in range(1, count):
        if ordered[i] != ordered[i - 1]:
            groups += 1
    distinct = np.empty(groups, dtype=ordered.dtype)
    starts = np.empty(groups + 1, dtype=np.int64)
    group = 0
    for i in range(count):
        if i == 0 or ordered[i] != ordered[i - 1]:
            distinct[group] = ordered[i]
            starts[group] = i
            group += 1
    starts[groups] = count
    return distinct, starts


def time_order(event_ms: np.ndarray, arrival_ms: np.ndarray) -> np.ndarray | None:
    """The stable order of rows by (event time, arrival time), or ``None`` when they are in it.

    Lake files are each sorted by event time, and a window reads a handful of them: the rows are
    a few long stretches in event-time order. Each stretch is put in order by arrival where its
    event times tie (a local step), then the stretches are merged pairwise: a few linear passes,
    where a general sort compares every row about log n times. Rows in many short stretches are
    sorted by a general stable sort.

    >>> time_order(np.array([1, 3, 2, 3]), np.array([0, 0, 5, 0]))
    array([0, 2, 1, 3])
    >>> time_order(np.array([1, 2]), np.array([9, 0])) is None
    True
    """
    event_ms = np.ascontiguousarray(event_ms, dtype=np.int64)
    arrival_ms = np.ascontiguousarray(arrival_ms, dtype=np.int64)
    starts = np.flatnonzero(event_ms[1:] < event_ms[:-1]) + 1
    if len(starts) * _SHORTEST_STRETCH > len(event_ms):
        return np.lexsort((arrival_ms, event_ms))  # (stable: ties keep their row order)
    rows, moves = _order_ties(event_ms, arrival_ms, _SHORTEST_STRETCH * len(event_ms))
    if moves < 0:  # (long ties in reverse arrival order: insertion would take quadratic time)
        return np.lexsort((arrival_ms, event_ms))
    if moves == 0 and len(starts) == 0:
        return None
    offsets = np.concatenate(([0], starts, [len(event_ms)])).astype(np.int64)
    return _merge_rows(offsets, event_ms, arrival_ms, np.arange(len(rows), dtype=np.int64), rows)


_SHORTEST_STRETCH = 64  # rows in event-time order, on average, for a merge to beat a sort


@numba.njit(cache=True, nogil=True)
def _order_ties(event_ms: np.ndarray, arrival_ms: np.ndarray, budget: int) -> tuple[np.ndarray, int]:
    """Row numbers, with each run of equal event times (between rows in event-time order) put in
    arrival order by insertion; and how many steps rows moved (-1: more than ``budget``, given up)."""
    rows = np.arange(len(event_ms))
    moves = 0
    for i in range(1, len(rows)):
        j = i
        while j > 0 and event_ms[rows[j - 1]] == event_ms[i] and arrival_ms[rows[j - 1]] > arrival_ms[i]:
            rows[j] = rows[j - 1]
            j -= 1
        if j != i:
            rows[j] = i
            moves += i - j
            if moves > budget:
                return rows, -1
    return rows, moves


def count_late(
    event_ms: np.ndarray, arrival_ms: np.ndarray, high_ms: int, lateness_ms: int
) -> tuple[int, int]:
    """Events whose time was more than ``lateness_ms`` behind the highest event time seen before
    they arrived (``high_ms`` before the first), in arrival order (ties: in the given order); and the
    highest event time after them all.

    Without sorting: arrival times fall in buckets, and an event is late when the highest time of
    the earlier buckets is too far ahead of it, on time when even its own bucket's is not; only the
    rare event between the two looks at its own bucket in arrival order.
    """
    if len(event_ms) == 0:
        return 0, high_ms
    return _count_late(
        np.ascontiguousarray(event_ms, dtype=np.int64),
        np.ascontiguousarray(arrival_ms, dtype=np.int64),
        high_ms,
        lateness_ms,
    )


@numba.njit(cache=True, nogil=True)
def _count_late(
    event_ms: np.ndarray, arrival_ms: np.ndarray, high_ms: int, lateness_ms: int
) -> tuple[int, int]:
    count = len(event_ms)
    low, top = arrival_ms.min(), arrival_ms.max()
    width = max(np.int64(1), (top - low) // count + 1)  # at most about one bucket per event
    buckets = (top - low) // width + 1
    highest = np.full(buckets, np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(count):
        b = (arrival_ms[i] - low) // width
        highest[b] = max(highest[b], event_ms[i])
    before = np.empty(buckets, dtype=np.int64)  # the highest time of the earlier buckets
    running = high_ms
    for b in range(buckets):
        before[b] = running
        running = max(running, highest[b])
    late = 0
    unsure = np.zeros(buckets, dtype=np.bool_)
    for i in range(count):
        b = (arrival_ms[i] - low) // width
        if event_ms[i] + lateness_ms < before[b]:  # (not before - lateness: none yet is the minimum)
            late += 1
        elif event_ms[i] + lateness_ms < highest[b]:
            unsure[b] = True
    if unsure.any():  # those buckets' events in arrival order (stable), each against those before it
        members = np.zeros(buckets + 1, dtype=np.int64)
        for i in range(count):
            members[(arrival_ms[i] - low) // width + 1] += 1
        members = np.cumsum(members)
        rows = np.empty(count, dtype=np.int64)
        fill = members[:-1].copy()
        for i in range(count):
            b = (arrival_ms[i] - low) // width
            rows[fill[b]] = i
            fill[b] += 1
        for b in np.flatnonzero(unsure):
            bucket = rows[members[b] : members[b + 1]]
            seen = before[b]
            for i in bucket[np.argsort(arrival_ms[bucket], kind="mergesort")]:
                if seen > event_ms[i] + lateness_ms >= before[b]:
                    late += 1  # (late against the earlier buckets: counted above)
                seen = max(seen, event_ms[i])
    return late, running


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
    return _merge_rows(offsets, first, second, third, np.arange(offsets[-1], dtype=np.int64))


@numba.njit(cache=True, nogil=True)
def _merge_rows(
    offsets: np.ndarray, first: np.ndarray, second: np.ndarray, third: np.ndarray, source: np.ndarray
) -> np.ndarray:
    """Blocks ``[offsets[i], offsets[i + 1])`` of ``source`` (row numbers, each block's rows in
    order of ``(first, second, third)`` at those rows) merged pairwise into one ordered list."""
    total = offsets[-1]
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
    slots, mask = _hash_slots(distinct)
    ranks = np.empty(len(values), dtype=np.int64)
    for i in range(len(values)):
        slot = values[i] & mask
        while distinct[slots[slot]] != values[i]:  # every value is one of distinct
            slot = (slot + np.uint64(1)) & mask
        ranks[i] = slots[slot]
    return _rank_order(ranks, len(distinct))


_MSD_MIN = 1 << 16  # fewer values: least significant digit first, with fewer buckets to clear
_SMALL = 32  # parts this small are ordered by insertion; larger ones by a merge sort


@numba.njit(cache=True, nogil=True)
def _msd_argsort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sorted values and the sort's two steps: the first pass's order, where each value went in
    it, and where each sorted value comes from in it (see :class:`Permutation`)."""
    count = len(values)
    top = np.uint64(64 - _DIGIT_BITS)
    starts = np.zeros(_RADIX + 1, dtype=np.int64)
    for i in range(count):
        starts[(values[i] >> top) + np.uint64(1)] += 1
    starts = np.cumsum(starts)
    fill = starts[:-1].copy()
    first_order = np.empty(count, dtype=np.int64)
    slots = np.empty(count, dtype=np.int64)
    keys = np.empty(count, dtype=np.uint64)
    for i in range(count):  # stable: each bucket keeps the values' order
        slot = fill[values[i] >> top]
        fill[values[i] >> top] = slot + 1
        first_order[slot] = i
        slots[i] = slot
        keys[slot] = values[i]
    order = np.arange(count)  # (while the buckets are sorted: positions after the first pass)
    spare_order = np.empty(count, dtype=np.int64)
    spare_keys = np.empty(count, dtype=np.uint64)
    inner = np.zeros(_RADIX + 1, dtype=np.int64)
    next_shift = np.uint64(64 - 2 * _DIGIT_BITS)
    mask = np.uint64(_RADIX - 1)
    for bucket in range(_RADIX):
        low, high = starts[bucket], starts[bucket + 1]
        if high - low <= _SMALL:
            _insertion_sort(keys, order, low, high)
            continue
        inner[:] = 0
        for i in range(low, high):
            inner[((keys[i] >> next_shift) & mask) + np.uint64(1)] += 1
        for digit in range(_RADIX):
            inner[digit + 1] += inner[digit]
        for i in range(low, high):
            digit = (keys[i] >> next_shift) & mask
            slot = low + inner[digit]
            inner[digit] += 1
            spare_order[slot] = order[i]
            spare_keys[slot] = keys[i]
        part = low  # inner[digit] now ends each part
        for digit in range(_RADIX):
            end = low + inner[digit]
            if end - part <= _SMALL:
                _insertion_sort(spare_keys, spare_order, part, end)
            else:
                by_key = np.argsort(spare_keys[part:end], kind="mergesort")  # stable
                spare_order[part:end] = spare_order[part:end][by_key]
                spare_keys[part:end] = spare_keys[part:end][by_key]
            part = end
        order[low:high] = spare_order[low:high]
        keys[low:high] = spare_keys[low:high]
    return first_order, keys, slots, order


@numba.njit(cache=True, nogil=True, inline="always")
def _insertion_sort(keys: np.ndarray, order: np.ndarray, low: int, high: int) -> None:
    for i in range(low + 1, high):
        key, row = keys[i], order[i]
        j = i
        while j > low and keys[j - 1] > key:  # strictly greater: equal keys keep their order
            keys[j] = keys[j - 1]
            order[j] = order[j - 1]
            j -= 1
        keys[j] = key
        order[j] = row


@numba.njit(cache=True, nogil=True)
def _radix_argsort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    return order, keys
