"""Runs: immutable, sorted columns of one feed's events, the unit of table state.

A run holds, for each event of a feed, its key hash, event time (and arrival time when the feed has
first/last), and one value column per aggregation, sorted by (key hash, event time, arrival time).
Reads binary-search a key's slice, then its window; prefix sums make counts and sums O(1) per run.
A catch-up gathers each feed's events in a :class:`RunBuilder` and sorts them into one run; runs
are merged by compaction. On disk a run is two Parquet files in one (events, then one row per key
with its hash, row count and text), see :meth:`Run.to_bytes`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clickwise.events.filters import filter_expr
from clickwise.memory import release_free_memory
from clickwise.storage import repetitive_columns
from clickwise.tables.feeds import FIXED_POINT_SCALE, AggPlan, Feed
from clickwise.tables.hashing import hash_text, hash_texts
from clickwise.tables.sketch import hash_values
from clickwise.tables.sorting import (
    Permutation,
    first_rows,
    group_sorted,
    member_mask,
    merge_key_blocks,
    merge_sorted_blocks,
    radix_sort,
    rank_argsort,
    rank_order,
)

KEY_SEPARATOR = "\x1f"
_EVENT_OFFSETS, _ARRIVAL_OFFSETS = "event_offset_ms", "arrival_offset_ms"
_TIME_COLUMNS = (_EVENT_OFFSETS, _ARRIVAL_OFFSETS, "event_ms", "arrival_ms")
_OFFSET_LIMIT = 2**31 - 1  # int32 offsets hold a run spanning up to 24.8 days
_FIXED_LIMIT = 9e9  # |value| beyond this would overflow the fixed-point grid; such values are clipped


def key_text(values: tuple[object, ...]) -> str:
    """The text of a key (fields joined by U+001F); a global table's key is the empty text."""
    return KEY_SEPARATOR.join(str(v) for v in values)


def frame_key_hashes(frame: pl.DataFrame, fields: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Key hashes of each row from its ``fields`` (the same text as the tables' own keys) and whether
    the key is complete (a null field means no key). No fields: the global table's key."""
    if not fields:
        return np.full(frame.height, hash_text(""), dtype=np.uint64), np.ones(frame.height, dtype=np.bool_)
    if len(fields) == 1 and frame.schema[fields[0]] == pl.String:  # the text itself: no copy to join
        text = frame.get_column(fields[0])
    else:
        keys = [pl.col(f).cast(pl.String) for f in fields]
        text = frame.select(pl.concat_str(keys, separator=KEY_SEPARATOR)).to_series()
    views = text.to_arrow(compat_level=pl.CompatLevel.newest())  # (string views: hashed without a copy)
    return hash_texts(views), text.is_not_null().to_numpy()


@dataclass
class Run:
    """Sorted columns of one feed's events. Treat as immutable; build one with :meth:`of`.

    ``distinct`` holds each key hash once (sorted), ``starts`` where its rows begin (one more entry
    than ``distinct``) and ``key_texts`` its text, so key texts are kept once per key, not per event.
    A text value column holds int32 codes into ``labels[column]`` (sorted, so codes order like the
    texts).

    Event times are kept as offsets from ``base_ms`` (and arrival times from ``arrival_base_ms``):
    int32 when the run spans less than 24.8 days, which halves the largest columns of a run.
    Offsets order and tie exactly like the times; :meth:`offsets` turns moments into the run's
    scale for searches (compiled searches take ``base_ms`` and shift the moment themselves).

    A column that is only ever summed (sums and means) is kept as its running total, ``totals``,
    of the included rows' values with a leading 0: reads need only the total, so the values
    themselves (their differences) are not kept too.
    """

    @classmethod
    def of(
        cls,
        event_ms: np.ndarray,
        arrival_ms: np.ndarray | None,
        values: dict[str, np.ndarray],
        distinct: np.ndarray,
        starts: np.ndarray,
        texts: pa.Array | Callable[[], pa.Array],
        labels: dict[str, np.ndarray] | None = None,
        summed: Collection[str] = (),
    ) -> Run:
        """A run from absolute event (and arrival) times in milliseconds; the ``summed`` columns of
        ``values`` are kept as running totals."""
        times, base_ms = _offsets(event_ms)
        arrivals, arrival_base_ms = (None, 0) if arrival_ms is None else _offsets(arrival_ms)
        values, totals = _split_totals(values, summed)
        labels = labels or {}
        return cls(times, base_ms, arrivals, arrival_base_ms, values, distinct, starts, texts, labels, totals)

    def event_ms(self, index: Any = slice(None)) -> np.ndarray:
        """Absolute event times (int64) of the rows at ``index`` (all rows by default)."""
        return self.times[index].astype(np.int64) + self.base_ms

    def arrival_ms(self, index: Any = slice(None)) -> np.ndarray | None:
        """Absolute arrival times (int64) of the rows at ``index``; None when the run keeps none."""
        if self.arrivals is None:
            return None
        return self.arrivals[index].astype(np.int64) + self.arrival_base_ms

    def time_at(self, row: int) -> int:
        """The event time of one row, in milliseconds."""
        return int(self.times[row]) + self.base_ms

    def offsets(self, moments_ms: Sequence[int] | np.ndarray) -> np.ndarray:
        """Moments on the scale of :attr:`times`, in its dtype (clipped: every time lies inside), so
        ``times.searchsorted`` never converts the run's column."""
        limit = np.iinfo(self.times.dtype)
        shifted = np.asarray(moments_ms, dtype=np.int64) - self.base_ms
        return np.clip(shifted, limit.min, limit.max).astype(self.times.dtype)

    @property
    def key_texts(self) -> pa.Array:
        """The text of each distinct key (loaded from the run file on first use)."""
        if callable(self.texts_ref):
            self.texts_ref = self.texts_ref()
        return self.texts_ref

    def decode(self, column: str, value: Any) -> Any:
        """A stored value as the user sees it (a code of a text column becomes its text)."""
        labels = self.labels.get(column)
        return value if labels is None else labels[int(value)]

    times: np.ndarray  # event time - base_ms, sorted within a key (int32 or int64)
    base_ms: int
    arrivals: np.ndarray | None  # arrival time - arrival_base_ms, when the feed has first/last
    arrival_base_ms: int
    values: dict[str, np.ndarray]  # per aggregation column name
    distinct: np.ndarray
    starts: np.ndarray
    texts_ref: pa.Array | Callable[[], pa.Array]  # or a loader: texts are read only when asked for
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # text columns: sorted distinct values
    totals: dict[str, np.ndarray] = field(default_factory=dict)  # summed columns: running totals
    _prefix: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.times)

    def key_slice(self, key_hash: int | np.uint64) -> tuple[int, int]:
        """The rows of one key: one binary search over the run's distinct keys."""
        position = int(self.distinct.searchsorted(np.uint64(key_hash)))  # a Python int would copy the array
        if position == len(self.distinct) or self.distinct[position] != key_hash:
            return 0, 0
        starts = self.starts  # (a Python list of a million starts cost 36 MB and 30 ms to build)
        return int(starts[position]), int(starts[position + 1])

    def prefix(self, column: str) -> np.ndarray:
        """Cumulative sums with a leading 0 (counts of a mask, or sums of fixed-point values)."""
        cached = self._prefix.get(column)
        if cached is None:
            data = self.values[column]
            cached = np.zeros(len(data) + 1, dtype=np.int64)
            np.cumsum(data, out=cached[1:], dtype=np.int64)
            self._prefix[column] = cached
        return cached

    def summed_values(self) -> dict[str, np.ndarray]:
        """The values of the summed columns, from their running totals (rows a mask leaves out
        read as 0: no read sums them)."""
        return {name: np.diff(total) for name, total in self.totals.items()}

    def to_parts(self) -> list[bytes | pa.Buffer]:
        """The run file in three parts: the length of the first Parquet file (8 bytes), then two
        Parquet files (events, then one row per key: hash, count and text).

        Event (and arrival) times are stored as the run keeps them, offsets from a base kept in the
        file's metadata (files written before hold absolute ``event_ms``/``arrival_ms``; both read).
        Times, key counts and key texts are delta-encoded, value columns whose values repeat
        (prices, domains) are dictionaries, and everything but the key hashes (random bits) and the
        delta-encoded numbers (zstd finds little left in them, at a third more writing time) is
        zstd-compressed, so a run is smaller than the lake events it came from and quick to write.
        """
        columns: dict[str, pa.Array] = {_EVENT_OFFSETS: pa.array(self.times)}
        bases = {_EVENT_OFFSETS: str(self.base_ms)}
        if self.arrivals is not None:
            columns[_ARRIVAL_OFFSETS] = pa.array(self.arrivals)
            bases[_ARRIVAL_OFFSETS] = str(self.arrival_base_ms)
        for name, data in {**self.values, **self.summed_values()}.items():
            labels = self.labels.get(name)
            if labels is None:
                columns[name] = pa.array(data)
            else:  # rows left out by the valid mask are stored as nulls
                valid = self.values.get(_valid_name(name))
                mask = ~valid if valid is not None else None
                codes = pa.array(data, pa.int32(), mask=mask)
                columns[name] = pa.DictionaryArray.from_arrays(codes, pa.array(labels, pa.string()))
        events = pa.table(columns).replace_schema_metadata({f"base:{k}": v for k, v in bases.items()})
        times: list[str] = [name for name in (_EVENT_OFFSETS, _ARRIVAL_OFFSETS) if name in columns]
        delta = dict.fromkeys(times, "DELTA_BINARY_PACKED")
        values = events.drop_columns([*times, *self.labels])
        dictionary = [*self.labels, *repetitive_columns(values)]
        counts = pa.array(np.diff(self.starts).astype(np.int64))
        first = _parquet(events, dictionary=dictionary, encodings=delta, plain=times)
        keys = pa.table({"hash": pa.array(self.distinct), "count": counts, "text": self.key_texts})
        key_encodings = {"count": "DELTA_BINARY_PACKED", "text": "DELTA_LENGTH_BYTE_ARRAY"}
        second = _parquet(keys, dictionary=[], encodings=key_encodings, plain=["hash", "count"])
        return [len(first).to_bytes(8, "little"), first, second]

    def to_bytes(self) -> bytes:
        """:meth:`to_parts` joined: the run file's bytes."""
        return b"".join(self.to_parts())

    @classmethod
    def from_bytes(
        cls,
        data: bytes | pa.Buffer,
        *,
        texts: Callable[[], pa.Array] | None = None,
        summed: Collection[str] = (),
    ) -> Run:
        """A run from :meth:`to_bytes` output, keeping the ``summed`` columns as running totals.
        With ``texts`` (a loader), key texts are not read now: only snapshots and key listings need
        them."""
        events_part, keys_part = _parts(data)
        schema = pq.read_schema(pa.BufferReader(events_part))
        names = schema.names
        texts_columns = [
            f.name
            for f in schema
            if f.name.startswith("v_") and (pa.types.is_string(f.type) or pa.types.is_dictionary(f.type))
        ]
        events = pq.ParquetFile(pa.BufferReader(events_part), read_dictionary=texts_columns)
        keys = pq.ParquetFile(pa.BufferReader(keys_part))  # (a column at a time: less memory at once)
        starts = starts_from_counts(_to_numpy(keys.read(columns=["count"]).column(0)))
        distinct = _to_numpy(keys.read(columns=["hash"]).column(0))

        def column(name: str) -> pa.ChunkedArray:  # one at a time: a decoded column is freed early
            release_free_memory()  # (the last column's decoding buffers)
            return events.read(columns=[name]).column(0)

        metadata = {key.decode(): value.decode() for key, value in (schema.metadata or {}).items()}

        def times_of(offsets: str, absolute: str) -> tuple[np.ndarray | None, int]:
            if offsets in names:
                return _to_numpy(column(offsets)), int(metadata[f"base:{offsets}"])
            if absolute in names:  # (a file written before offsets were stored)
                return _offsets(_to_numpy(column(absolute)))
            return None, 0

        times, base_ms = times_of(_EVENT_OFFSETS, "event_ms")
        assert times is not None
        arrivals, arrival_base_ms = times_of(_ARRIVAL_OFFSETS, "arrival_ms")
        values, labels = {}, {}
        for name in names:
            if name in texts_columns:
                values[name], labels[name] = _codes_from_dictionary(column(name))
            elif name not in _TIME_COLUMNS and name not in summed:
                values[name] = _to_numpy(column(name))
        totals = {  # (after the valid masks they read)
            name: _running_total(_to_numpy(column(name)), values.get(_valid_name(name)))
            for name in names
            if name in summed
        }
        texts = texts if texts is not None else read_key_texts(data)
        return cls(times, base_ms, arrivals, arrival_base_ms, values, distinct, starts, texts, labels, totals)


def _parts(data: bytes | pa.Buffer) -> tuple[pa.Buffer, pa.Buffer]:
    """The two Parquet files of a run file, as views of ``data`` (slicing bytes would copy)."""
    buffer = pa.py_buffer(data) if isinstance(data, bytes) else data
    size = int.from_bytes(buffer.slice(0, 8).to_pybytes(), "little")
    return buffer.slice(8, size), buffer.slice(8 + size)


def read_key_texts(data: bytes | pa.Buffer) -> pa.Array:
    """The key texts of a run file (one per distinct key, in hash order)."""
    keys_part = _parts(data)[1]
    return pq.read_table(pa.BufferReader(keys_part), columns=["text"]).column("text").combine_chunks()


def _parquet(
    table: pa.Table, *, dictionary: list[str], encodings: dict[str, str], plain: Sequence[str] = ()
) -> pa.Buffer:
    """One Parquet file, zstd-compressed except the ``plain`` columns.

    Columns without nulls are written as required: no definition level to encode per value (half
    the time of writing a plain column). The file goes into one buffer of its largest possible size
    (pages that stay unwritten are never touched): a growing buffer copies what it holds at each
    step and touches fresh memory each time, the slowest part of writing on a VM.
    """
    schema = pa.schema([f.with_nullable(table.column(f.name).null_count > 0) for f in table.schema])
    table = pa.Table.from_arrays(table.columns, schema=schema.with_metadata(table.schema.metadata))
    options = {
        "row_group_size": max(1, table.num_rows),  # one chunk per column: numpy views without copies
        "compression": {name: "none" if name in plain else "zstd" for name in table.column_names},
        "use_dictionary": dictionary,
        "column_encoding": encodings or None,
        "write_statistics": False,
    }
    buffer = pa.allocate_buffer(_largest_parquet(table))
    sink = pa.FixedSizeBufferWriter(buffer)
    try:
        pq.write_table(table, sink, **options)
    except OSError:  # ("write out of bounds": larger than the bound after all; a growing buffer)
        stream = pa.BufferOutputStream()
        pq.write_table(table, stream, **options)
        return stream.getvalue()
    return buffer.slice(0, sink.tell())


def _largest_parquet(table: pa.Table) -> int:
    """More bytes than a Parquet file of ``table`` takes: every encoding and zstd add at most a few
    bytes per page to the data, plus headers and the footer."""
    return int(table.nbytes * 1.05) + 4096 * (table.num_columns + 1) + (1 << 20)


def _codes_from_dictionary(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """int32 codes into sorted labels, from a (possibly chunked) dictionary column."""
    codes_parts, label_parts = [], []
    for chunk in column.chunks:
        label_parts.append(np.asarray(chunk.dictionary.to_pylist(), dtype=object))
        codes_parts.append(chunk.indices.fill_null(0).to_numpy(zero_copy_only=False))
    labels = np.unique(np.concatenate(label_parts)) if label_parts else np.zeros(0, dtype=object)
    codes = [  # (in int32 throughout: these columns have tens of millions of rows)
        np.searchsorted(labels, part).astype(np.int32)[c] if len(part) else np.zeros(len(c), dtype=np.int32)
        for part, c in zip(label_parts, codes_parts, strict=True)
    ]
    joined = codes[0] if len(codes) == 1 else np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32)
    return joined.astype(np.int32, copy=False), labels


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy(zero_copy_only=False)
    return column.to_numpy()


def _valid_name(column: str) -> str:
    """The valid mask of a value column (``n_<name>`` beside ``v_<name>``)."""
    return "n_" + column.removeprefix("v_")


def _running_total(data: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Cumulative sums of the rows where ``valid``, with a leading 0."""
    total = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(data if valid is None else np.where(valid, data, 0), out=total[1:], dtype=np.int64)
    return total


def _split_totals(
    values: dict[str, np.ndarray], summed: Collection[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``values`` without the ``summed`` columns, and those columns' running totals."""
    totals = {n: _running_total(v, values.get(_valid_name(n))) for n, v in values.items() if n in summed}
    return {n: data for n, data in values.items() if n not in summed}, totals


def _offsets(times_ms: np.ndarray) -> tuple[np.ndarray, int]:
    """Times as offsets from their minimum, and that minimum: int32 when they fit."""
    return _offsets_of([times_ms])


def starts_from_counts(counts: np.ndarray) -> np.ndarray:
    """Where each key's rows begin (plus the end), as int32 when the run allows (half the memory)."""
    total = int(counts.sum()) if len(counts) else 0
    starts = np.zeros(len(counts) + 1, dtype=np.int32 if total < 2**31 else np.int64)
    np.cumsum(counts, out=starts[1:], dtype=starts.dtype)
    return starts


def key_order(key_hash: np.ndarray) -> tuple[Permutation, np.ndarray, np.ndarray]:
    """A stable permutation grouping rows by key hash (ascending), the distinct hashes, and where
    each group starts. Rows already in time order stay in time order within their key.

    With few distinct keys (countries, campaigns) each row finds its key's rank in a small hash
    table and one counting pass places the rows; with many (users, impressions) the hashes
    themselves are radix sorted.
    """
    if len(key_hash) == 0:
        return (
            Permutation(np.zeros(0, dtype=np.int64)),
            np.zeros(0, dtype=np.uint64),
            np.zeros(1, dtype=np.int64),
        )
    sample = key_hash[:: max(1, len(key_hash) // 4096)]
    if len(np.unique(sample)) * 8 > len(sample):
        permutation, ordered = radix_sort(key_hash)
        distinct, starts = group_sorted(ordered)
        return permutation, distinct, starts
    distinct = np.sort(pl.Series(key_hash, dtype=pl.UInt64).unique().to_numpy())
    order, counts = rank_argsort(key_hash, distinct)
    return Permutation(order), distinct, starts_from_counts(counts)


@dataclass
class _Batch:
    """One batch of a feed's events in time order, not grouped by key yet. Key texts are kept as
    ``texts`` (one per row, with ``row_hash``), or when keys repeat (countries, campaigns, the
    global key) once each with their ``distinct_hash`` and each row's position ``text_index`` among
    them: 4 bytes per row instead of a hash of 8."""

    row_hash: np.ndarray | None
    event_ms: np.ndarray
    arrival_ms: np.ndarray | None
    values: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # text columns: the sorted texts their codes point into
    texts: pa.Array
    text_index: np.ndarray | None
    distinct_hash: np.ndarray | None = None

    @property
    def key_hash(self) -> np.ndarray:
        """Each row's key hash."""
        if self.row_hash is not None:
            return self.row_hash
        assert self.distinct_hash is not None and self.text_index is not None
        return self.distinct_hash[self.text_index]

    def __len__(self) -> int:
        return len(self.event_ms)

    def take(self, rows: np.ndarray) -> _Batch:
        """The batch's ``rows`` (ascending: still in time order)."""
        return _Batch(
            None if self.row_hash is None else self.row_hash[rows],
            self.event_ms[rows],
            None if self.arrival_ms is None else self.arrival_ms[rows],
            {name: data[rows] for name, data in self.values.items()},
            self.labels,
            self.texts,
            rows if self.text_index is None else self.text_index[rows],
            self.distinct_hash,
        )


class RunBuilder:
    """A feed's batches of events, kept as they come and grouped by key into one run at the end.

    A catch-up adds the events of each window and builds once: every event is sorted by key once,
    instead of once in its window's run and again when those runs merge. Meanwhile a join reads the
    rows of the keys it needs (:meth:`build` with ``keys``).
    """

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self._batches: list[_Batch] = []

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._batches)

    def add(self, events: pl.DataFrame) -> None:
        """Add a batch of the stream's events (lake columns, ordered by ``_event_ms``, then
        ``_arrival_ms``); events without a full key are left out."""
        batch = _batch(self.feed, events)
        if batch is not None:
            self._batches.append(batch)

    def build(self, keys: np.ndarray | None = None) -> Run | None:
        """One run of every event added, which the builder then forgets; with ``keys`` (sorted key
        hashes), a run of those keys' events only, and the builder keeps everything."""
        batches = self._batches
        if keys is None:
            self._batches = []
        else:
            batches = [b.take(np.flatnonzero(member_mask(b.key_hash, keys))) for b in batches]
            batches = [b for b in batches if len(b)]
        if not batches:
            return None
        return _assemble(batches, self.feed.summed_columns)


def build_run(feed: Feed, events: pl.DataFrame) -> Run | None:
    """A run from a batch of a stream's events (lake columns), keeping only events with a full key.

    ``events`` must be ordered by (``_event_ms``, ``_arrival_ms``).
    """
    builder = RunBuilder(feed)
    builder.add(events)
    return builder.build()


def _batch(feed: Feed, events: pl.DataFrame) -> _Batch | None:
    if events.height == 0:
        return None
    key_columns = [pl.col(f) for f in feed.key_fields]
    if key_columns:
        events = events.filter(pl.all_horizontal([c.is_not_null() for c in key_columns]))
        if events.height == 0:
            return None
        if len(key_columns) == 1 and events.schema[feed.key_fields[0]] == pl.String:
            texts = events.get_column(feed.key_fields[0]).to_arrow()
        else:
            keys = [c.cast(pl.String) for c in key_columns]
            texts = events.select(pl.concat_str(keys, separator=KEY_SEPARATOR)).to_series().to_arrow()
        row_hash, texts, text_index, distinct_hash = _hash_key_texts(texts)
    else:  # a global table: one key
        row_hash, distinct_hash = None, np.array([hash_text("")], dtype=np.uint64)
        texts, text_index = pa.array([""], pa.large_string()), np.broadcast_to(np.int32(0), events.height)
    values: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for agg in feed.aggs:
        values.update(_agg_columns(agg, events, labels))
    event_ms = events.get_column("_event_ms").to_numpy()
    arrival = events.get_column("_arrival_ms").to_numpy() if feed.needs_order else None
    return _Batch(row_hash, event_ms, arrival, values, labels, texts, text_index, distinct_hash)


def _hash_key_texts(
    texts: pa.Array,
) -> tuple[np.ndarray | None, pa.Array, np.ndarray | None, np.ndarray | None]:
    """Key hashes and texts: each row's hash and text, or when keys repeat (countries, campaigns)
    each row's position among the distinct texts, those texts and their hashes."""
    texts = texts.cast(pa.large_string())
    hashes = hash_texts(texts)
    if len(texts) > 4096 and len(np.unique(hashes[:4096])) * 16 < 4096:  # few keys
        firsts, index = first_rows(hashes)
        return None, texts.take(pa.array(firsts)).fill_null(""), index, hashes[firsts]
    return hashes, texts, None, None


def _assemble(batches: Sequence[_Batch], summed: Collection[str]) -> Run:
    """A run from batches, each in time order: rows ordered by time across batches (batches usually
    follow each other already), then grouped by key (stably), one key text kept per key."""
    sizes = np.cumsum([0, *(len(b) for b in batches)])
    times, base_ms = _offsets_of([b.event_ms for b in batches])
    arrivals, arrival_base_ms = None, 0
    if batches[0].arrival_ms is not None:
        arrivals, arrival_base_ms = _offsets_of([b.arrival_ms for b in batches])  # type: ignore[misc]
    by_time = None
    if not _follow_each_other(batches):  # (offsets order like the times they stand for)
        ties = np.zeros(len(times), dtype=np.int64) if arrivals is None else arrivals.astype(np.int64)
        by_time = merge_sorted_blocks(sizes, times.astype(np.int64), ties, np.zeros(len(times), np.int64))
    batch_hashes = [b.distinct_hash for b in batches if b.distinct_hash is not None]
    if len(batch_hashes) == len(batches):
        order, distinct, starts, texts = _group_few_keys(batches, batch_hashes, by_time)
    else:
        order, distinct, starts, texts = _group_keys(batches, sizes, by_time)
    scratch = np.empty(len(times) * 8 if order is not None else 0, dtype=np.uint8)  # (for every column)

    def gather(parts: list[np.ndarray]) -> np.ndarray:  # (the batches' parts of one column)
        return _joined(parts) if order is None else order.apply_parts(parts, scratch)

    values, labels = _batch_values(batches, gather)
    values, totals = _split_totals(values, summed)
    return Run(
        gather([times]),
        base_ms,
        None if arrivals is None else gather([arrivals]),
        arrival_base_ms,
        values,
        distinct,
        starts,
        texts,
        labels,
        totals,
    )


_Groups = tuple[Permutation | None, np.ndarray, np.ndarray, pa.Array]


def _group_keys(batches: Sequence[_Batch], sizes: np.ndarray, by_time: np.ndarray | None) -> _Groups:
    """The rows' order (None: as they are), the distinct key hashes, where each key's rows start,
    and each key's text."""
    key_hash = _joined([b.key_hash for b in batches])
    if by_time is not None:
        key_hash = key_hash[by_time]
    order: Permutation | None
    if _one_value(key_hash):  # one key: time order it is
        order = None if by_time is None else Permutation(by_time)
        distinct, starts = key_hash[:1], starts_from_counts(np.array([len(key_hash)]))
    else:
        order, distinct, starts = key_order(key_hash)
        if by_time is not None:
            order = order.after(by_time)
    del key_hash
    if order is not None and len(distinct) == len(order) and _texts_per_row(batches):
        texts = order.apply_texts([b.texts for b in batches])  # every key once (impression ids)
    else:
        firsts = order.order_at(starts[:-1]) if order is not None else np.zeros(1, dtype=np.int64)
        texts = _key_texts(batches, sizes, firsts)
    return order, distinct, starts, texts


def _group_few_keys(
    batches: Sequence[_Batch], batch_hashes: list[np.ndarray], by_time: np.ndarray | None
) -> _Groups:
    """:func:`_group_keys` of batches that keep their few distinct keys once (countries, the global
    key): each row's key is its rank among the distinct keys of all batches, ordered by counting."""
    distinct = np.unique(np.concatenate(batch_hashes))
    ranks = [np.searchsorted(distinct, hashes).astype(np.int32) for hashes in batch_hashes]
    texts = _distinct_texts(batches, ranks, len(distinct))
    rows = sum(len(b) for b in batches)
    if len(distinct) == 1:
        return (
            None if by_time is None else Permutation(by_time),
            distinct,
            starts_from_counts(np.array([rows])),
            texts,
        )
    key_rank = _joined([rank[b.text_index] for rank, b in zip(ranks, batches, strict=True)])
    if by_time is not None:
        key_rank = key_rank[by_time]
    order, counts = rank_order(key_rank, len(distinct))
    permutation = Permutation(order) if by_time is None else Permutation(by_time[order])
    return permutation, distinct, starts_from_counts(counts), texts


def _one_value(data: np.ndarray) -> bool:
    return bool(data[0] == data[-1] and (data == data[0]).all())


def _distinct_texts(batches: Sequence[_Batch], ranks: list[np.ndarray], count: int) -> pa.Array:
    """The text of each of ``count`` distinct keys (by rank), from the first batch holding it."""
    all_ranks = np.concatenate(ranks)
    _, first = np.unique(all_ranks, return_index=True)  # (every rank is somewhere: count of them)
    assert len(first) == count
    return pa.concat_arrays([b.texts for b in batches]).take(pa.array(first))


def _offsets_of(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """:func:`_offsets` of the parts' times joined, written in place (no joined int64 copy)."""
    if not any(len(part) for part in parts):
        return np.zeros(0, dtype=np.int32), 0
    base_ms = min(int(part.min()) for part in parts if len(part))
    top = max(int(part.max()) for part in parts if len(part))
    offsets = np.empty(
        sum(len(part) for part in parts), dtype=np.int32 if top - base_ms < _OFFSET_LIMIT else np.int64
    )
    start = 0
    for part in parts:
        np.subtract(part, base_ms, out=offsets[start : start + len(part)], casting="unsafe")
        start += len(part)
    return offsets, base_ms


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _follow_each_other(batches: Sequence[_Batch]) -> bool:
    """Whether each batch starts no earlier (in time, then arrival) than the previous one ends."""
    for before, after in zip(batches[:-1], batches[1:], strict=True):
        end, start = int(before.event_ms[-1]), int(after.event_ms[0])
        if start < end:
            return False
        if start == end and before.arrival_ms is not None and after.arrival_ms is not None:
            if int(after.arrival_ms[0]) < int(before.arrival_ms[-1]):
                return False
    return True


def _texts_per_row(batches: Sequence[_Batch]) -> bool:
    return all(b.text_index is None and not b.texts.null_count for b in batches)


def _key_texts(batches: Sequence[_Batch], sizes: np.ndarray, rows: np.ndarray) -> pa.Array:
    """The key texts of ``rows`` (row numbers across the batches)."""
    if len(batches) == 1:
        index = batches[0].text_index
        return batches[0].texts.take(pa.array(rows if index is None else index[rows]))
    text_sizes = np.cumsum([0, *(len(b.texts) for b in batches)])
    positions = rows  # (when every batch keeps a text per row)
    if any(b.text_index is not None for b in batches):
        batch = np.searchsorted(sizes, rows, side="right") - 1
        local = rows - sizes[batch]
        positions = text_sizes[batch] + local
        for number, b in enumerate(batches):
            if b.text_index is not None:
                mine = np.flatnonzero(batch == number)
                positions[mine] = text_sizes[number] + b.text_index[local[mine]]
    if len(rows) * 4 > text_sizes[-1]:  # most texts: one take from them all (a copy of them first)
        return pa.concat_arrays([b.texts for b in batches]).take(pa.array(positions))
    # a few: each batch's where they are, then put in order (no copy of every text)
    part = np.searchsorted(text_sizes, positions, side="right") - 1
    by_part = np.argsort(part, kind="stable")
    bounds = np.cumsum([0, *np.bincount(part, minlength=len(batches))])
    pieces = []
    for number, b in enumerate(batches):
        mine = positions[by_part[bounds[number] : bounds[number + 1]]] - text_sizes[number]
        pieces.append(b.texts.take(pa.array(mine)))
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[by_part] = np.arange(len(rows))
    return pa.concat_arrays(pieces).take(pa.array(inverse))


def _batch_values(
    batches: Sequence[_Batch], gather: Callable[[list[np.ndarray]], np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    values: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name in batches[0].values:
        if name in batches[0].labels:  # text codes: into the union of the batches' texts
            union = np.unique(np.concatenate([b.labels[name] for b in batches]))
            parts = [_remap(union, b.labels[name], b.values[name]) for b in batches]
            labels[name] = union
        else:
            parts = [b.values[name] for b in batches]
        values[name] = gather(parts)
    return values, labels


def _agg_columns(agg: AggPlan, events: pl.DataFrame, labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keep = events.select(filter_expr(agg.filter)).to_series() if agg.filter else None
    columns: dict[str, np.ndarray] = {}
    if agg.op in ("count", "time_since_last"):
        if keep is not None:
            columns[agg.valid_column] = keep.to_numpy().astype(np.bool_)
        return columns
    assert agg.field is not None
    raw = events.get_column(agg.field)
    valid = raw.is_not_null()
    if raw.dtype.is_float():
        valid = valid & raw.is_not_nan()
    if keep is not None:
        valid = valid & keep
    columns[agg.valid_column] = valid.to_numpy().astype(np.bool_)
    if agg.op in ("sum", "mean"):
        columns[agg.column] = _fixed(raw, agg.field_type)
    elif agg.op == "distinct_count":
        columns[agg.column] = _value_hashes(raw)
    elif raw.dtype == pl.String:
        columns[agg.column], labels[agg.column] = _codes(raw)
    else:
        columns[agg.column] = _plain(raw)
    return columns


def _codes(raw: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """int32 codes into the sorted distinct texts (nulls get code 0; the valid mask excludes them)."""
    encoded = raw.to_arrow().dictionary_encode()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    found = np.asarray(encoded.dictionary.to_pylist(), dtype=object)  # (no nulls: they are masked)
    if len(found) == 0:
        return np.zeros(len(raw), dtype=np.int32), np.zeros(0, dtype=object)
    order = np.argsort(found)  # (Python orders texts by code point, as UTF-8 bytes order)
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[encoded.indices.fill_null(0).to_numpy()], found[order]


def _fixed(raw: pl.Series, field_type: str | None) -> np.ndarray:
    if field_type == "float" or raw.dtype.is_float():
        return _to_fixed(raw.cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy())
    return raw.cast(pl.Int64).fill_null(0).to_numpy()


@numba.njit(cache=True, nogil=True)
def _to_fixed(data: np.ndarray) -> np.ndarray:
    """Values on the fixed-point grid, clipped to its range, rounded half to even (one pass)."""
    out = np.empty(len(data), dtype=np.int64)
    for i in range(len(data)):
        out[i] = np.int64(np.rint(min(max(data[i], -_FIXED_LIMIT), _FIXED_LIMIT) * FIXED_POINT_SCALE))
    return out


def _value_hashes(raw: pl.Series) -> np.ndarray:
    """Stable hashes of values, computing each distinct value's hash once. Values that are equal
    are one value: -0.0 counts as 0.0 (their texts differ)."""
    if raw.dtype.is_float():
        raw = pl.select(pl.when(raw == 0.0).then(0.0).otherwise(raw)).to_series()
    encoded = raw.cast(pl.String).to_arrow().dictionary_encode()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    hashes = np.append(hash_values(encoded.dictionary.to_pylist()), np.uint64(0))  # nulls: the last
    codes = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()
    return hashes[codes]


def _plain(raw: pl.Series) -> np.ndarray:
    if raw.dtype == pl.Boolean:
        return raw.fill_null(False).to_numpy()
    if raw.dtype.is_float():
        return raw.fill_null(0.0).to_numpy()
    return raw.fill_null(0).to_numpy()


def merge_runs(runs: Sequence[Run]) -> Run:
    """One sorted run holding every event of ``runs`` (compaction).

    Each run is already sorted by (key, time): the runs' keys are merged into their union, and
    each key's rows are copied from the one run that holds it or merged from the few that do.
    """
    if len(runs) == 1:
        return runs[0]
    all_distinct = np.concatenate([r.distinct for r in runs])
    # each run's keys are sorted and distinct: merge them into the union (ties in run order)
    key_offsets = np.cumsum([0, *(len(r.distinct) for r in runs)])
    zeros = np.zeros(len(all_distinct), dtype=np.int64)
    by_key = merge_sorted_blocks(key_offsets, all_distinct, zeros, zeros)
    row_offsets = np.cumsum([0, *(len(r) for r in runs)])
    row_low = np.concatenate([r.starts[:-1].astype(np.int64) + row_offsets[i] for i, r in enumerate(runs)])
    row_high = np.concatenate([r.starts[1:].astype(np.int64) + row_offsets[i] for i, r in enumerate(runs)])
    event_ms = np.concatenate([r.event_ms() for r in runs])
    has_arrival = runs[0].arrivals is not None
    arrival = np.concatenate([r.arrival_ms() for r in runs]) if has_arrival else None
    order, first, counts = merge_key_blocks(
        by_key, all_distinct, row_low, row_high, event_ms, arrival if arrival is not None else zeros[:0]
    )
    distinct = all_distinct[first]  # first: the earliest run holding the key
    values, labels = _merged_values(runs, order)
    starts = starts_from_counts(counts)
    texts = pa.concat_arrays([r.key_texts for r in runs]).take(pa.array(first))
    arrival = None if arrival is None else arrival[order]
    return Run.of(event_ms[order], arrival, values, distinct, starts, texts, labels, summed=runs[0].totals)


def _remap(union: np.ndarray, labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Codes into ``labels`` as codes into ``union`` (a superset, sorted)."""
    if len(labels) == 0:
        return codes
    return np.searchsorted(union, labels).astype(np.int32)[codes]


def _merged_values(
    runs: Sequence[Run], order: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    values: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name in [*runs[0].values, *runs[0].totals]:
        if name in runs[0].totals:
            values[name] = np.concatenate([np.diff(r.totals[name]) for r in runs])[order]
        elif name in runs[0].labels:
            union = np.unique(np.concatenate([r.labels[name] for r in runs]))
            parts = [_remap(union, r.labels[name], r.values[name]) for r in runs]
            values[name] = np.concatenate(parts)[order]
            labels[name] = union
        else:
            values[name] = np.concatenate([r.values[name] for r in runs])[order]
    return values, labels


def drop_before(run: Run, cutoff_ms: int) -> Run:
    """The run without events older than ``cutoff_ms`` (retention)."""
    keep = run.times >= run.offsets([cutoff_ms])[0]
    if keep.all():
        return run
    index = np.flatnonzero(keep)
    kept_per_key = np.add.reduceat(keep.astype(np.int64), run.starts[:-1]) if len(run.distinct) else keep[:0]
    live = np.flatnonzero(kept_per_key > 0)
    starts = starts_from_counts(kept_per_key[live])
    return Run.of(
        run.event_ms(index),
        run.arrival_ms(index),
        {name: data[index] for name, data in {**run.values, **run.summed_values()}.items()},
        run.distinct[live],
        starts,
        run.key_texts.take(pa.array(live)),
        dict(run.labels),
        summed=run.totals,
    )
