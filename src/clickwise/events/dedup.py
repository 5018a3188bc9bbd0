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
        fresh = np.ones(len(hashes), dtype=bool)
        for run in self._runs:
            position = np.searchsorted(run, hashes)
            position[position == len(run)] = 0
            fresh &= run[position] != hashes if len(run) else True
        _, first = np.unique(hashes, return_index=True)
        first_mask = np.zeros(len(hashes), dtype=bool)
        first_mask[first] = True
        fresh &= first_mask
        self._add(hashes[fresh])
        return fresh

    def _add(self, hashes: np.ndarray) -> None:
        if len(hashes):
            self._runs.append(np.sort(hashes))
        if len(self._runs) > _MERGE_AFTER:
            self._runs = [np.sort(np.concatenate(self._runs))]
