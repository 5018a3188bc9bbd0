"""The run merge, the radix sort and the rank sort against numpy's stable sorts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.tables.runs import key_order
from clickwise.tables.sorting import merge_sorted_blocks, radix_argsort, rank_argsort


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
    order, distinct, starts = key_order(values)
    assert np.array_equal(order, np.argsort(values, kind="stable"))
    expected, counts = np.unique(values, return_counts=True)
    assert np.array_equal(distinct, expected)
    assert np.array_equal(starts, np.r_[0, np.cumsum(counts)])
