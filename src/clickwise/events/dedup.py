"""Exactly-once storage by event id: an index of the ids a stream's lake already holds.

The index holds 64-bit hashes of the ids, sorted, and is rebuilt from the lake's own id column when
first needed, so it never disagrees with the lake and needs no file of its own. Two different ids
share a hash with probability about ``n / 2**64`` per lookup (1e-12 at ten million ids).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from clickwise.events.lake import Lake

_MERGE_AFTER = 8


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Stable-within-a-process 64-bit hashes of event ids."""
    series = pl.Series(values=ids).cast(pl.String)
    return series.hash(seed=0x5EED).to_numpy()


class EventIdIndex:
    """The event ids already stored for one stream."""

    def __init__(self, lake: Lake, stream: str, id_field: str) -> None:
        self._runs: list[np.ndarray] = []
        files = lake.files(stream)
        if files:
            stored = lake.root.read_parquet([f.path for f in files], columns=[id_field]).column(id_field)
            self._runs.append(np.sort(hash_ids(stored)))

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def new_mask(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """True for each id seen neither before nor earlier in this same batch.

        The ids kept are added to the index, so call it once per batch, before storing the batch.
        """
        hashes = hash_ids(ids)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]  # sorted needles make the searches below cache-friendly
        fresh_sorted = np.r_[True, ordered[1:] != ordered[:-1]]  # first of equal hashes, in input order
        for run in self._runs:
            position = np.minimum(np.searchsorted(run, ordered), len(run) - 1)
            fresh_sorted &= run[position] != ordered
        fresh = np.empty(len(hashes), dtype=bool)
        fresh[order] = fresh_sorted
        self._add(ordered[fresh_sorted])
        return fresh

    def _add(self, sorted_hashes: np.ndarray) -> None:
        if len(sorted_hashes):
            self._runs.append(sorted_hashes)
        if len(self._runs) > _MERGE_AFTER:
            self._runs = [np.sort(np.concatenate(self._runs))]
