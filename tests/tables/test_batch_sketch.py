"""The bulk path's sketch estimates equal the one-key path's, window by window."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tables_oracle import hll_estimate

from clickwise.tables.batch import _sketch_estimates
from clickwise.tables.sketch import estimate_distinct, value_hash


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 3000),
    distinct=st.integers(1, 2500),
    windows=st.lists(st.tuples(st.integers(0, 2999), st.integers(0, 3000)), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
def test_folded_registers_give_the_same_estimates(
    rows: int, distinct: int, windows: list[tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    pool = np.array([value_hash(f"v{i}") for i in range(distinct)], dtype=np.uint64)
    values = pool[rng.integers(0, distinct, rows)]
    valid = rng.random(rows) < 0.9
    spans = [(min(a, rows), min(max(a, b), rows)) for a, b in windows]
    # growing windows from one first row (the common case) and windows that shrink or move
    spans += [(0, end) for end in sorted(rng.integers(0, rows + 1, 5).tolist())]
    start = np.array([a for a, _ in spans], dtype=np.int64)
    end = np.array([b for _, b in spans], dtype=np.int64)
    got = _sketch_estimates(values, valid, start, end)
    for i, (a, b) in enumerate(spans):
        window = values[a:b][valid[a:b]]
        assert got[i] == estimate_distinct(window, 0), (a, b)


def test_estimates_across_the_linear_counting_limit_follow_the_definition() -> None:
    """Windows from a few thousand to 120k distinct values: linear counting below 2.5 x 16,384,
    the raw estimate above, each equal to the one-key path and to the oracle's exact definition."""
    texts = [f"v{i}" for i in range(120_000)]
    values = np.array([value_hash(t) for t in texts], dtype=np.uint64)
    valid = np.ones(len(values), dtype=np.bool_)
    ends = [3_000, 30_000, 38_000, 41_000, 45_000, 70_000, 120_000]
    start = np.zeros(len(ends) + 1, dtype=np.int64)
    start[-1] = 60_000  # a window that does not start at the first row
    end = np.array([*ends, 120_000], dtype=np.int64)
    got = _sketch_estimates(values, valid, start, end)
    for i, (a, b) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        expected = hll_estimate(texts[a:b])
        assert got[i] == expected == estimate_distinct(values[a:b], 0), (a, b, got[i], expected)
