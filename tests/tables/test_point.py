"""The one-key distinct count (a small hash set) against numpy's unique, edges included: a hash
of 0, hashes equal in their low bits, rows left out by the mask, and the exact bound."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.tables.point import distinct_in


@settings(max_examples=80, deadline=None)
@given(
    count=st.integers(0, 400),
    values=st.integers(1, 300),
    limit=st.integers(0, 320),
    dtype=st.sampled_from([np.uint64, np.int64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_distinct_in_counts_like_unique(count: int, values: int, limit: int, dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, values, dtype=np.int64).astype(np.uint64)
    pool[0] = 0  # a hash of 0 is a value like any other
    pool[-1] = (pool[-1] << np.uint64(20)) | np.uint64(7)  # the same low bits as its neighbour
    if values > 1:
        pool[-2] = (pool[-2] << np.uint64(20)) | np.uint64(7)
    hashes = pool[rng.integers(0, values, count)].astype(dtype)
    valid = rng.random(count) < 0.8
    start = int(rng.integers(0, count + 1))
    end = int(rng.integers(start, count + 1))
    exact = len(np.unique(hashes[start:end][valid[start:end]]))
    assert distinct_in(hashes, valid, start, end, limit) == (exact if exact <= limit else -1)
