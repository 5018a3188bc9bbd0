"""The event lake: append-only Parquet, partitioned by stream, date and hour of event time.

Layout under the root::

    lake/<stream>/date=YYYY-MM-DD/hour=HH/part-<tag>.parquet   events, sorted by event time
    lake/_manifest/<stream>/<digest>.json                     one entry per ingested input
    lake/_manifest/<stream>/compact-<n>.json                  one per merge of small files
    lake/_folded/<stream>.json                                old entries folded into one

Every file is written atomically. File names are derived from the input's content digest, so an
ingest that crashed half-way and is run again rewrites the same names instead of adding copies;
the manifest entry, written last, marks an input as done so a second ingest stores nothing.
Small files are merged later (:mod:`clickwise.events.compaction`): a merge's entry names the
files it replaces, which then no longer count. The lake is the source of truth for replay and
backfill.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickwise.errors import StorageError
from clickwise.events.folding import Folded, compaction_name, read_folded
from clickwise.events.validate import ARRIVAL_MS, EVENT_MS
from clickwise.spec import Pipeline
from clickwise.storage import Root, repetitive_columns
from clickwise.time import MS_PER_HOUR, ms_to_datetime

_PARTITION = re.compile(r"date=(\d{4})-(\d{2})-(\d{2})/hour=(\d{2})/")
_WRITERS = 2
_SNAPSHOT_TRIES = 10
_PARALLEL_TAKE_ROWS = 50_000


def partition_dir(stream: str, hour_ms: int) -> str:
    """``lake/<stream>/date=YYYY-MM-DD/hour=HH`` for the hour starting at ``hour_ms``."""
    moment = ms_to_datetime(hour_ms)
    return f"lake/{stream}/date={moment:%Y-%m-%d}/hour={moment:%H}"


def written_with_tag(name: str, tag: str, *, chunks: bool = False) -> bool:
    """Whether a file name is ``part-<tag>.parquet`` (``chunks``: ``part-<tag>-NNNNN.parquet``, a
    file input's chunk). Exact, so tag ``b1`` never takes the files of tag ``b10``.

    >>> written_with_tag("part-b1.parquet", "b1"), written_with_tag("part-b10.parquet", "b1")
    (True, False)
    """
    if chunks:
        return re.fullmatch(rf"part-{re.escape(tag)}-\d{{5}}\.parquet", name) is not None
    return name == f"part-{tag}.parquet"


def partition_hour_ms(path: str) -> int | None:
    """The hour a lake file's partition stands for, or None for a path outside the layout."""
    match = _PARTITION.search(path)
    if match is None:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    days = np.datetime64(f"{year:04d}-{month:02d}-{day:02d}", "D").astype(np.int64)
    return int(days) * 24 * MS_PER_HOUR + hour * MS_PER_HOUR


def _take(table: pa.Table, rows: pa.Array) -> pa.Table:
    """``table.take(rows)``, its columns gathered on the writer threads when the batch is large
    (``Table.take`` gathers one column after another)."""
    if len(rows) < _PARALLEL_TAKE_ROWS:  # (a small HTTP batch: threads would cost more)
        return table.take(rows)
    with ThreadPoolExecutor(_WRITERS) as pool:
        columns = list(pool.map(lambda column: column.take(rows), table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


@dataclass(frozen=True)
class Replacement:
    """One compaction: the merged file ``into`` holds the events of the ``replaced`` files."""

    number: int
    replaced: frozenset[str]
    into: str
    at_ms: int = 0  # when it was made


@dataclass(frozen=True)
class LakeFile:
    path: str
    hour_ms: int


class Lake:
    """Reads and writes one root's event lake for a pipeline."""

    def __init__(self, root: Root, pipeline: Pipeline) -> None:
        self.root = root
        self.pipeline = pipeline

    # --- writing ---------------------------------------------------------------------------

    def write(self, stream: str, events: pa.Table, tag: str) -> list[str]:
        """Write validated, enriched events into their hour partitions; returns the files written.

        Within a file, events are sorted by event time, then event id (the stable tie-break).
        """
        if events.num_rows == 0:
            return []
        ordered = _take(events, pc.sort_indices(events, sort_keys=self._sort_keys(stream)))
        event_ms = ordered.column(EVENT_MS).to_numpy()
        hours = event_ms // MS_PER_HOUR
        starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]])
        bounds = list(zip(starts.tolist(), [*starts[1:].tolist(), len(hours)], strict=True))
        jobs = [
            (
                f"{partition_dir(stream, int(hours[a]) * MS_PER_HOUR)}/part-{tag}.parquet",
                ordered.slice(a, b - a),
            )
            for a, b in bounds
        ]
        dictionary = repetitive_columns(ordered, texts_only=True)
        statistics = [EVENT_MS, ARRIVAL_MS]  # what readers select by (the rest cost 30% of a write)

        def write(path: str, table: pa.Table) -> int:
            return self.root.write_parquet(path, table, dictionary=dictionary, statistics=statistics)

        with ThreadPoolExecutor(_WRITERS) as pool:
            list(pool.map(lambda job: write(*job), jobs))
        return [path for path, _ in jobs]

    def _sort_keys(self, stream: str) -> list[tuple[str, str]]:
        keys = [(EVENT_MS, "ascending")]
        event_id = self.pipeline.streams[stream].event_id
        if event_id is not None:
            keys.append((event_id, "ascending"))
        keys.append((ARRIVAL_MS, "ascending"))
        return keys

    def remove_tag(self, stream: str, tag: str, *, chunks: bool = False) -> int:
        """Delete the files of an interrupted write tagged ``tag`` (``chunks``: a file input's,
        written per chunk); returns how many."""
        doomed = [
            f.path
            for f in self.files(stream, completed_only=False)
            if written_with_tag(f.path.rsplit("/", 1)[-1], tag, chunks=chunks)
        ]
        for path in doomed:
            self.root.delete(path)
        return len(doomed)

    # --- manifest --------------------------------------------------------------------------

    def _manifest_path(self, stream: str, digest: str) -> str:
        return f"lake/_manifest/{stream}/{digest}.json"

    def has_input(self, stream: str, digest: str) -> bool:
        return self.root.exists(self._manifest_path(stream, digest))

    def record_input(self, stream: str, digest: str, entry: dict[str, object]) -> None:
        self.root.write_bytes(
            self._manifest_path(stream, digest), orjson.dumps(entry, option=orjson.OPT_INDENT_2)
        )

    def input_entry(self, stream: str, digest: str) -> dict[str, Any] | None:
        """The manifest entry of one input, or None when it was never (completely) ingested."""
        try:
            entry: dict[str, Any] = orjson.loads(self.root.read_bytes(self._manifest_path(stream, digest)))
        except FileNotFoundError:
            return None
        return entry

    def inputs(self, stream: str) -> list[dict[str, object]]:
        """The manifest entries of a stream's inputs, less those folded into its summary (see
        :mod:`clickwise.events.folding`)."""
        return self._snapshot(stream)[1]

    def _snapshot(self, stream: str) -> tuple[Folded | None, list[dict[str, object]]]:
        """The stream's summary and the entries it does not cover, read consistently while a fold
        may run beside (it writes the summary, then deletes the entries it covers): the entries
        are listed before the summary is read, and an entry gone before it could be read means a
        fold finished meanwhile, so everything is read again."""
        for _ in range(_SNAPSHOT_TRIES):
            paths = self.root.list_files(f"lake/_manifest/{stream}", suffix=".json")
            folded = read_folded(self.root, stream)
            if folded is not None:
                paths = [p for p in paths if not folded.covers(p.rsplit("/", 1)[-1].removesuffix(".json"))]
            try:
                return folded, [orjson.loads(self.root.read_bytes(p)) for p in paths]
            except FileNotFoundError:
                continue
        raise StorageError(
            f"the manifest of stream {stream!r} at {self.root.url} changed {_SNAPSHOT_TRIES} times "
            "while it was read; is another process folding it in a loop?"
        )

    def completed_files(self, stream: str) -> list[str]:
        """Lake files of every input whose ingest finished (its manifest entry lists them), less
        those a compaction replaced (see :mod:`clickwise.events.compaction`)."""
        return self.catalog(stream)[0]

    def replacements(self, stream: str) -> list[Replacement]:
        """The compactions of a stream's files, in the order they were made."""
        return self.catalog(stream)[1]

    def catalog(self, stream: str) -> tuple[list[str], list[Replacement]]:
        """:meth:`completed_files` and :meth:`replacements` (those not folded) from one reading of
        the manifest."""
        folded, entries = self._snapshot(stream)
        files: list[str] = list(folded.files) if folded is not None else []
        replacements = []
        for entry in entries:
            listed = entry.get("files", [])
            if isinstance(listed, list):
                files.extend(str(path) for path in listed)
            replaces, number = entry.get("replaces"), entry.get("compaction")
            if isinstance(replaces, list) and isinstance(number, int) and isinstance(listed, list):
                replaced = frozenset(str(path) for path in replaces)
                made_ms = entry.get("compacted_ms")
                at_ms = made_ms if isinstance(made_ms, int) else 0
                replacements.append(Replacement(number, replaced, str(listed[0]), at_ms))
        if replacements:
            gone = {path for replacement in replacements for path in replacement.replaced}
            files = [path for path in files if path not in gone]
        return files, sorted(replacements, key=lambda replacement: replacement.number)

    def last_compaction(self, stream: str) -> int:
        """The number of the stream's latest compaction (0 before the first)."""
        folded = read_folded(self.root, stream)
        numbers = [r.number for r in self.replacements(stream)]
        return max([*numbers, folded.compactions_through if folded is not None else 0])

    def record_compaction(
        self, stream: str, number: int, files: list[str], replaces: list[str], *, events: int, at_ms: int
    ) -> None:
        """Make a merged file count instead of the files it replaces (one atomic write)."""
        entry = {"compaction": number, "files": files, "replaces": sorted(replaces), "events": events}
        self.record_input(stream, compaction_name(number), {**entry, "compacted_ms": at_ms})

    # --- reading ---------------------------------------------------------------------------

    def files(
        self,
        stream: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        completed_only: bool = True,
    ) -> list[LakeFile]:
        """Lake files of a stream whose hour overlaps ``[start_ms, end_ms)``, in time order.

        Only files of inputs whose ingest finished count (the manifest lists them): files left by
        an ingest that crashed are not events yet; they are removed when that input is redone.
        """
        completed = set(self.completed_files(stream)) if completed_only else None
        found = []
        for path in self.root.list_files(f"lake/{stream}", suffix=".parquet"):
            if completed is not None and path not in completed:
                continue
            hour_ms = partition_hour_ms(path)
            if hour_ms is None:
                continue
            if start_ms is not None and hour_ms + MS_PER_HOUR <= start_ms:
                continue
            if end_ms is not None and hour_ms >= end_ms:
                continue
            found.append(LakeFile(path, hour_ms))
        return sorted(found, key=lambda f: (f.hour_ms, f.path))

    def read(
        self,
        stream: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        columns: list[str] | None = None,
    ) -> Iterator[pa.Table]:
        """Events with ``start_ms <= event_ms < end_ms``, one table per hour, in event-time order.

        Ties on event time are broken by event id, then arrival time, so every read gives the same
        order.
        """
        files = self.files(stream, start_ms, end_ms)
        wanted = (
            None
            if columns is None
            else list(dict.fromkeys([*columns, *(k for k, _ in self._sort_keys(stream))]))
        )
        for hour_ms in sorted({f.hour_ms for f in files}):
            table = self.root.read_parquet([f.path for f in files if f.hour_ms == hour_ms], columns=wanted)
            event_ms = table.column(EVENT_MS)
            if start_ms is not None and hour_ms < start_ms:
                table = table.filter(pc.greater_equal(event_ms, start_ms))
            if end_ms is not None and hour_ms + MS_PER_HOUR > end_ms:
                table = table.filter(pc.less(table.column(EVENT_MS), end_ms))
            if table.num_rows == 0:
                continue
            table = table.take(pc.sort_indices(table, sort_keys=self._sort_keys(stream)))
            yield table.select(columns) if columns is not None else table

    def read_all(
        self,
        stream: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Like :meth:`read`, as one table (for small ranges and tests)."""
        parts = list(self.read(stream, start_ms, end_ms, columns))
        if parts:
            return pa.concat_tables(parts)
        return pa.table({})

    def count(self, stream: str) -> int:
        """Events stored for a stream (from Parquet footers; no data is read)."""
        total = 0
        for f in self.files(stream):
            total += pq.ParquetFile(self.root.path(f.path), filesystem=self.root.fs).metadata.num_rows
        return total


_NO_TIME = -(2**62)


def file_event_range(root: Root, path: str) -> tuple[int, int, int]:
    """Rows, lowest and highest ``_event_ms`` of a Parquet file from its footer (without statistics:
    the widest range, so that nothing is assumed)."""
    meta = pq.ParquetFile(root.path(path), filesystem=root.fs).metadata
    low, high = -_NO_TIME, _NO_TIME
    names = meta.schema.names
    if "_event_ms" not in names:
        return meta.num_rows, _NO_TIME, -_NO_TIME
    column = names.index("_event_ms")
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return meta.num_rows, _NO_TIME, -_NO_TIME
        low, high = min(low, int(stats.min)), max(high, int(stats.max))
    return meta.num_rows, low, high
