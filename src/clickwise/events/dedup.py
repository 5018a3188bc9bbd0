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
        """Keep the runs in size tiers, largest first: a new run merges with the last one while it
        is at least half as large, so there are O(log n) runs and each hash is merged O(log n)
        times (merging everything every few batches re-sorted the whole index)."""
        if not len(sorted_hashes):
            return
        self._runs.append(sorted_hashes)
        while len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2]):
            last = self._runs.pop()
            # both are sorted: a stable sort of the two is one linear merge (timsort)
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]), kind="stable")
