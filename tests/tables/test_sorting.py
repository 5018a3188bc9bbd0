"""The run merge, the radix sorts and the rank sort against numpy's stable sorts; the late count
against a walk in arrival order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.tables.runs import key_order
from clickwise.tables.sorting import (
    Permutation,
    _msd_argsort,
    count_late,
    first_rows,
    member_mask,
    merge_key_blocks,
    merge_sorted_blocks,
    radix_argsort,
    rank_argsort,
    rank_order,
    time_order,
)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 200), min_size=1, max_size=9),
    spread=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_merging_sorted_blocks_is_a_stable_sort(sizes: list[int], spread: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    first = rng.integers(0, spread, total).astype(np.uint64)
    second = rng.integers(0, spread, total).astype(np.int64)
    third = rng.integers(0, spread, total).astype(np.int64)
    offsets = np.cumsum([0, *sizes])
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):  # sort each block on its own
        block = np.lexsort((third[a:b], second[a:b], first[a:b])) + a
        first[a:b], second[a:b], third[a:b] = first[block], second[block], third[block]
    got = merge_sorted_blocks(offsets, first, second, third)
    assert np.array_equal(got, np.lexsort((third, second, first)))  # lexsort is stable


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 3000), bits=st.sampled_from([1, 8, 20, 64]), seed=st.integers(0, 2**32 - 1))
def test_radix_argsort_is_a_stable_argsort(count: int, bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, count, dtype=np.int64).astype(np.uint64) >> np.uint64(64 - bits)
    values = values | (values << np.uint64(63 if bits < 64 else 0))  # the top bit set too, sometimes
    assert np.array_equal(radix_argsort(values), np.argsort(values, kind="stable"))


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 3000), keys=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
def test_most_significant_digit_first_is_a_stable_argsort(count: int, keys: int, seed: int) -> None:
    """Hashes in buckets of the top digit, then parts of the next: parts of up to 32 values are
    ordered by insertion, larger ones (a key repeated, or hashes alike in their top 22 bits) by a
    merge sort; ties keep their order."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, keys, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    pool[: keys // 2] = (pool[: keys // 2] >> np.uint64(22)) | np.uint64(0xABC << 42)  # one part
    values = pool[rng.integers(0, keys, count)]
    first, ordered, slots, positions = _msd_argsort(values)
    order = first[positions]
    assert np.array_equal(order, np.argsort(values, kind="stable"))
    assert np.array_equal(ordered, values[order])
    staged = np.empty_like(values)
    staged[slots] = values  # the first pass, then the second: the same order
    assert np.array_equal(staged[positions], values[order])


def test_radix_argsort_of_many_hashes_is_a_stable_argsort() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64)[rng.integers(0, 50_000, 200_000)]
    assert np.array_equal(radix_argsort(values), np.argsort(values, kind="stable"))


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    spread=st.sampled_from([1, 5, 50, 10**4]),
    in_blocks=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_time_order_is_a_stable_sort_by_event_then_arrival(
    sizes: list[int], spread: int, in_blocks: bool, seed: int
) -> None:
    """Blocks each in event-time order (as lake files are: the merge path), or rows in any order
    (the general sort); event times and arrival times tie often."""
    rng = np.random.default_rng(seed)
    event_ms = rng.integers(0, spread, sum(sizes))
    arrival_ms = event_ms + rng.integers(0, 3, len(event_ms))
    if in_blocks:
        offsets = np.cumsum([0, *sizes])
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            event_ms[a:b] = np.sort(event_ms[a:b])
    order = time_order(event_ms, arrival_ms)
    expected = np.lexsort((arrival_ms, event_ms))  # (stable)
    if order is None:
        assert np.array_equal(expected, np.arange(len(event_ms)))
    else:
        assert np.array_equal(order, expected)


def test_time_order_of_one_long_tie_in_reverse_arrival_order() -> None:
    """Insertion would move each row past all before it; the general sort takes over."""
    event_ms = np.full(20_000, 7, dtype=np.int64)
    arrival_ms = np.arange(20_000, 0, -1, dtype=np.int64)
    assert np.array_equal(time_order(event_ms, arrival_ms), np.arange(19_999, -1, -1))


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 3000),
    wanted=st.integers(0, 5000),
    bits=st.sampled_from([3, 20, 64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_member_mask_equals_isin(count: int, wanted: int, bits: int, seed: int) -> None:
    """Hashes in a few values (many collide in the filter's top bits) or spread over 64 bits."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**bits - 1, count, dtype=np.uint64, endpoint=True)
    if bits == 3:
        values <<= np.uint64(61)  # (the filter reads the top bits)
    picked = rng.choice(values, min(wanted, count)) if count else np.zeros(0, np.uint64)
    others = rng.integers(0, 2**64 - 1, wanted // 3, dtype=np.uint64, endpoint=True)
    keys = np.concatenate([picked, others, np.zeros(wanted % 2, np.uint64)])
    assert np.array_equal(member_mask(values, keys), np.isin(values, keys))


@settings(max_examples=80, deadline=None)
@given(
    count=st.integers(0, 400),
    delay=st.sampled_from([1, 10, 1000, 10**6]),
    lateness=st.sampled_from([0, 10, 1000]),
    high=st.one_of(st.none(), st.integers(0, 10**4)),
    ties=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_count_late_equals_a_walk_in_arrival_order(
    count: int, delay: int, lateness: int, high: int | None, ties: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    event_ms = rng.integers(0, 10**4, count)
    arrival_ms = event_ms + rng.integers(0, delay, count)
    if ties and count:
        arrival_ms[rng.integers(0, count, count // 2)] = arrival_ms[0]
    start = int(np.iinfo(np.int64).min) if high is None else high
    seen, late = start, 0
    for row in np.argsort(arrival_ms, kind="stable"):
        late += int(event_ms[row] + lateness < seen)
        seen = max(seen, int(event_ms[row]))
    assert count_late(event_ms, arrival_ms, start, lateness) == (late, seen)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 3000), keys=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_rank_argsort_is_a_stable_argsort(count: int, keys: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, keys, dtype=np.int64).astype(np.uint64)
    pool[0] = pool[0] | np.uint64(2**63)  # the top bit, and hashes equal in their low bits
    pool[-1] = (pool[0] & np.uint64(0xFF)) | np.uint64(0x100)
    values = pool[rng.integers(0, keys, count)]
    distinct = np.unique(values)
    order, counts = rank_argsort(values, distinct)
    assert np.array_equal(order, np.argsort(values, kind="stable"))
    assert np.array_equal(counts, [np.count_nonzero(values == d) for d in distinct])


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 20000), keys=st.sampled_from([1, 5, 300, 10**5]), seed=st.integers(0, 2**32 - 1))
def test_key_order_groups_rows_stably_with_few_or_many_keys(count: int, keys: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, keys, dtype=np.int64).astype(np.uint64)[rng.integers(0, keys, count)]
    permutation, distinct, starts = key_order(values)
    assert np.array_equal(permutation.order, np.argsort(values, kind="stable"))
    assert np.array_equal(permutation.apply(values * 3), values[permutation.order] * 3)
    expected, counts = np.unique(values, return_counts=True)
    assert np.array_equal(distinct, expected)
    assert np.array_equal(starts, np.r_[0, np.cumsum(counts)])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=8),
    keys=st.integers(1, 40),
    spread=st.integers(1, 5),
    with_arrival=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_merging_runs_key_by_key_is_a_stable_sort(
    sizes: list[int], keys: int, spread: int, with_arrival: bool, seed: int
) -> None:
    """Runs (blocks of rows sorted by key hash, then time, then arrival) merged key by key equal a
    stable lexsort of their concatenation; ties on time (and arrival) keep run order."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, keys, dtype=np.int64).astype(np.uint64)
    hashes, times, arrivals, lows, highs, key_hashes, key_offsets = [], [], [], [], [], [], [0]
    row = 0
    for size in sizes:
        key = pool[rng.integers(0, keys, size)]
        time = rng.integers(0, spread, size).astype(np.int64)
        arrival = rng.integers(0, spread, size).astype(np.int64)
        block = np.lexsort((arrival, time, key)) if with_arrival else np.lexsort((time, key))
        key, time, arrival = key[block], time[block], arrival[block]
        distinct, first, count = np.unique(key, return_index=True, return_counts=True)
        hashes.append(key), times.append(time), arrivals.append(arrival), key_hashes.append(distinct)
        lows.append(first + row), highs.append(first + count + row)
        key_offsets.append(key_offsets[-1] + len(distinct))
        row += size
    all_keys = np.concatenate(key_hashes)
    zeros = np.zeros(len(all_keys), dtype=np.int64)
    by_key = merge_sorted_blocks(np.array(key_offsets), all_keys, zeros, zeros)
    key, time, arrival = np.concatenate(hashes), np.concatenate(times), np.concatenate(arrivals)
    low, high = np.concatenate(lows), np.concatenate(highs)
    given_arrival = arrival if with_arrival else zeros[:0]
    order, first, counts = merge_key_blocks(by_key, all_keys, low, high, time, given_arrival)
    expected = np.lexsort((arrival, time, key)) if with_arrival else np.lexsort((time, key))
    assert np.array_equal(order, expected)  # lexsort is stable: ties keep their concatenated order
    assert np.array_equal(all_keys[first], np.unique(key))
    assert np.array_equal(counts, np.unique(key, return_counts=True)[1])
    runs_of_first = np.searchsorted(key_offsets, first, side="right") - 1
    runs_holding = [np.searchsorted(key_offsets, g, side="right") - 1 for g in range(len(all_keys))]
    for distinct, run in zip(all_keys[first], runs_of_first, strict=True):  # the earliest run holding it
        assert run == min(r for r, k in zip(runs_holding, all_keys, strict=True) if k == distinct)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab\u00e9\u4e2d", max_size=9), min_size=1, max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=3),
    seed=st.integers(0, 2**32 - 1),
    width=st.sampled_from([None, 1, 7, 16]),
)
def test_texts_follow_a_permutation_in_two_steps(
    texts: list[str], cuts: list[int], seed: int, width: int | None
) -> None:
    """Texts split over several arrays (one a slice of a larger one) moved bucket by bucket equal
    a take in the sort's order; texts of one byte length move as fixed-size items."""
    rng = np.random.default_rng(seed)
    if width is not None:  # (ASCII: as many bytes as characters)
        texts = [
            (text.encode("ascii", "replace").decode() * width)[:width].ljust(width, "x") for text in texts
        ]
    values = rng.integers(0, 2**63, len(texts), dtype=np.int64).astype(np.uint64) << np.uint64(1)
    first, _, slots, positions = _msd_argsort(values)
    order = first[positions]
    bounds = sorted({0, len(texts), *(c for c in cuts if c < len(texts))})
    whole = pa.array(["-", *texts], pa.string()).slice(1)
    parts = [whole.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    moved = Permutation(None, slots, positions, first).apply_texts(parts)
    assert moved.to_pylist() == [texts[row] for row in order]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 3000), max_size=3000),
    high_bits=st.booleans(),
)
def test_first_rows_find_each_value_where_it_first_appears(values: list[int], high_bits: bool) -> None:
    """Against a dict: the first row of each distinct value in order of appearance, and each row's
    number among them (enough values to grow the table several times)."""
    data = np.array(values, dtype=np.uint64)
    if high_bits:  # (values that differ only above the table's bits probe the same slots)
        data = data << np.uint64(40)
    numbers: dict[int, int] = {}
    for row, value in enumerate(data.tolist()):
        numbers.setdefault(value, row)
    expected_firsts = list(numbers.values())
    rank = {value: n for n, value in enumerate(numbers)}
    firsts, number = first_rows(data)
    assert firsts.tolist() == expected_firsts
    assert number.tolist() == [rank[v] for v in data.tolist()]


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_parts_follow_a_permutation_without_being_joined(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, sum(sizes), dtype=np.int64).astype(np.uint64) << np.uint64(1)
    first, _, slots, positions = _msd_argsort(values)
    data = rng.integers(-(2**31), 2**31, len(values)).astype(np.int32)
    parts = np.split(data, np.cumsum(sizes)[:-1])
    scratch = np.empty(data.nbytes, np.uint8)
    moved = Permutation(None, slots, positions, first).apply_parts(parts, scratch)
    assert np.array_equal(moved, data[first[positions]])


@settings(max_examples=40, deadline=None)
@given(ranks=st.lists(st.integers(0, 6), max_size=400))
def test_rank_order_is_a_stable_argsort_with_counts(ranks: list[int]) -> None:
    data = np.array(ranks, dtype=np.int32)
    order, counts = rank_order(data, 7)
    assert np.array_equal(order, np.argsort(data, kind="stable"))
    assert np.array_equal(counts, np.bincount(data, minlength=7))
