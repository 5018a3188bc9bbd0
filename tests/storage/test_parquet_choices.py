"""Which columns are written as Parquet dictionaries: the ones whose values repeat over the whole
table, judged from a sample spread over it (an encoding changes sizes and speed, never values)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clickwise.storage import repetitive_columns


def test_repeated_values_are_dictionaries_and_unique_or_wide_ones_are_not() -> None:
    rng = np.random.default_rng(3)
    rows = 300_000
    table = pa.table(
        {
            "country": pa.array(rng.choice(["US", "DE", "FR", "BR"], rows)),
            "impression_id": pa.array([f"i{n:08x}" for n in range(rows)]),
            "price": rng.integers(0, 9_000, rows) / 1000,  # more values than a sample sees, yet repeating
            "ratio": rng.random(rows),  # continuous
            "count": rng.integers(0, 300, rows),
            "wide": rng.integers(0, 150_000, rows),  # repeats, but its dictionary would overflow
            "bot": rng.random(rows) < 0.1,
        }
    )
    assert repetitive_columns(table) == ["country", "price", "count"]
    assert repetitive_columns(table, texts_only=True) == ["country"]
    assert repetitive_columns(table.slice(0, 0)) == []
    sink = io.BytesIO()  # the choice is a valid writer argument and round-trips the values
    pq.write_table(table, sink, use_dictionary=repetitive_columns(table))
    assert pq.read_table(io.BytesIO(sink.getvalue())).equals(table)
