"""Exactly-once storage by event id: an index of the ids a stream's lake already holds.

A record whose id is already stored is either a **duplicate** (the same content delivered again:
dropped and counted) or a **conflict** (the id was stored with different content: a real log whose
ids are not unique, or a producer that reuses them). Content is what
:func:`clickwise.events.validate.content_fields` says: every declared field but the arrival time,
with the event time as a moment. Within a batch the first record of an id (in input order) is
the one stored.

The index holds, per stored id, a 64-bit hash of the id, the record's event time and a 64-bit digest
of its content, sorted by id hash. It is rebuilt from the lake's id and event-time columns when first
needed, so it never disagrees with the lake and needs no file of its own; the content of an id
stored before this process started is read from the lake (from its event time's hour only) the
first time that id comes again. Two different ids share a hash with probability about
``n / 2**64`` per lookup (1e-12 at ten million ids); the content digest covers the id too, so
even then a different record is a conflict, never a silent duplicate. Memory: 24 bytes per id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from clickwise.events.lake import Lake
from clickwise.events.validate import CONTENT_DIGEST, EVENT_MS, content_digests, content_fields
from clickwise.spec import StreamDef
from clickwise.time import MS_PER_HOUR

_NONE = np.zeros(0, dtype=np.int64)
_UNKNOWN = np.uint64(0)  # content not read yet (a real digest of 0 is only read again: still right)


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Stable-within-a-process 64-bit hashes of event ids."""
    series = pl.Series(values=ids).cast(pl.String)
    return series.hash(seed=0x5EED).to_numpy()


@dataclass
class _Run:
    """Stored ids sorted by hash, with each one's event time and content digest."""

    ids: np.ndarray
    event_ms: np.ndarray
    digests: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Verdict:
    """What to do with each record of a batch (rows count from 0 in the batch)."""

    fresh: np.ndarray
    """True for the records to store."""
    conflicts: np.ndarray
    """Rows whose id is stored (or comes earlier in the batch) with different content."""
    conflict_stored_ms: np.ndarray
    """Per conflict, the event time of the record its id is stored with."""

    @property
    def duplicates(self) -> int:
        """Records dropped as re-deliveries of a stored record."""
        return len(self.fresh) - int(self.fresh.sum()) - len(self.conflicts)


class EventIdIndex:
    """The event ids already stored for one stream."""

    def __init__(self, lake: Lake, stream: str, definition: StreamDef) -> None:
        if definition.event_id is None:
            raise ValueError(f"stream {stream!r} declares no event_id")
        self._lake = lake
        self._stream = stream
        self._definition = definition
        self._id_field = definition.event_id
        self._runs: list[_Run] = []
        files = lake.files(stream)
        if files:
            stored = lake.root.read_parquet([f.path for f in files], columns=[self._id_field, EVENT_MS])
            hashes = hash_ids(stored.column(self._id_field))
            unique, first = np.unique(hashes, return_index=True)  # sorted; one entry per id
            event_ms = stored.column(EVENT_MS).to_numpy()[first]
            self._runs.append(_Run(unique, event_ms, np.full(len(unique), _UNKNOWN, dtype=np.uint64)))

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def check_many(self, batch: pa.Table) -> Verdict:
        """Judge a validated batch (with its ``_content_digest`` column) against the stored ids and
        against itself; the records to store are added to the index, so call it once per batch,
        before storing the batch."""
        hashes = hash_ids(batch.column(self._id_field))
        digests = batch.column(CONTENT_DIGEST).to_numpy()
        event_ms = batch.column(EVENT_MS).to_numpy()
        order = np.argsort(hashes, kind="stable")  # equal ids stay in input order
        ordered = hashes[order]  # sorted needles make the searches below cache-friendly
        taken = np.r_[False, ordered[1:] == ordered[:-1]]  # an id seen earlier in the batch
        hits: list[tuple[_Run, np.ndarray, np.ndarray]] = []  # (run, sorted rows, their positions)
        for run in self._runs:
            if not len(run):
                continue
            position = np.minimum(np.searchsorted(run.ids, ordered), len(run) - 1)
            hit = run.ids[position] == ordered
            if hit.any():
                hits.append((run, np.flatnonzero(hit), position[hit]))
                taken |= hit
        if not taken.any():  # the usual batch: every record is new
            self._add(_Run(ordered, event_ms[order], digests[order]))
            return Verdict(np.ones(len(hashes), dtype=bool), _NONE, _NONE)
        fresh = np.empty(len(hashes), dtype=bool)
        fresh[order] = ~taken
        # each record not stored is judged against its reference: the stored record of its id, else
        # the first of its id in the batch
        judged = np.flatnonzero(taken)
        reference = order[np.searchsorted(ordered, ordered[judged])]
        ref_digest, ref_ms = digests[reference], event_ms[reference]
        for run, rows, positions in hits:
            self._read_unknown(run, positions[run.digests[positions] == _UNKNOWN])
            at = np.searchsorted(judged, rows)
            ref_digest[at], ref_ms[at] = run.digests[positions], run.event_ms[positions]
        # (a stored id whose record could not be read back is taken as a duplicate, as before)
        conflicting = (digests[order[judged]] != ref_digest) & (ref_digest != _UNKNOWN)
        conflicts = order[judged[conflicting]]
        rank = np.argsort(conflicts, kind="stable")  # in input order
        added = order[~taken]
        self._add(_Run(ordered[~taken], event_ms[added], digests[added]))
        return Verdict(fresh, conflicts[rank], ref_ms[conflicting][rank])

    def _read_unknown(self, run: _Run, positions: np.ndarray) -> None:
        """Fill in the content digests of stored ids read at start-up (from their hours' files)."""
        if not len(positions):
            return
        hours = {int(ms) // MS_PER_HOUR * MS_PER_HOUR for ms in run.event_ms[positions]}
        paths = [f.path for f in self._lake.files(self._stream) if f.hour_ms in hours]
        if not paths:
            return
        found = self._lake.root.read_parquet(paths)  # every column: older files may lack a field
        frame = pl.from_arrow(found.select([c for c in found.column_names if c in self._wanted()]))
        assert isinstance(frame, pl.DataFrame)
        found_ids = hash_ids(found.column(self._id_field))
        found_digests = content_digests(frame, self._definition).to_numpy()
        found_ms = found.column(EVENT_MS).to_numpy()
        wanted = {(int(run.ids[p]), int(run.event_ms[p])): int(p) for p in positions}
        for id_hash, moment, digest in zip(
            found_ids.tolist(), found_ms.tolist(), found_digests.tolist(), strict=True
        ):
            position = wanted.pop((id_hash, moment), None)
            if position is not None:
                run.digests[position] = digest

    def _wanted(self) -> set[str]:
        return set(content_fields(self._definition))

    def _add(self, run: _Run) -> None:
        """Keep the runs in size tiers, largest first: a new run merges with the last one while it
        is at least half as large, so there are O(log n) runs and each id is merged O(log n)
        times (merging everything every few batches re-sorted the whole index)."""
        if not len(run):
            return
        self._runs.append(run)
        while len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2]):
            last = self._runs.pop()
            self._runs[-1] = _merge(self._runs[-1], last)


def _merge(old: _Run, new: _Run) -> _Run:
    """One sorted run of two (whose ids are disjoint), in linear time plus a search per new id."""
    into = np.searchsorted(old.ids, new.ids) + np.arange(len(new))
    rest = np.ones(len(old) + len(new), dtype=bool)
    rest[into] = False
    merged = []
    for old_values, new_values in (
        (old.ids, new.ids),
        (old.event_ms, new.event_ms),
        (old.digests, new.digests),
    ):
        values = np.empty(len(rest), dtype=old_values.dtype)
        values[into] = new_values
        values[rest] = old_values
        merged.append(values)
    return _Run(*merged)
