"""Runs: immutable, sorted columns of one feed's events, the unit of table state.

A run holds, for each event of a feed, its key hash, event time (and arrival time when the feed has
first/last), and one value column per aggregation, sorted by (key hash, event time, arrival time).
Reads binary-search a key's slice, then its window; prefix sums make counts and sums O(1) per run.
Runs are merged by compaction; on disk each is an Arrow IPC file (zstd) that also keeps the key
text, so hashes are recomputed on load and never persisted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from clickwise.events.filters import filter_expr
from clickwise.tables.feeds import FIXED_POINT_SCALE, AggPlan, Feed
from clickwise.tables.hashing import hash_texts
from clickwise.tables.sketch import hash_values

KEY_SEPARATOR = "\x1f"
_FIXED_LIMIT = 9e9  # |value| beyond this would overflow the fixed-point grid; such values are clipped


def key_text(values: tuple[object, ...]) -> str:
    """The text of a key (fields joined by U+001F); a global table's key is the empty text."""
    return KEY_SEPARATOR.join(str(v) for v in values)


def hash_keys(keys: pl.Series) -> np.ndarray:
    """Stable 64-bit hashes of key texts (hashing each distinct text once when keys repeat)."""
    if len(keys) > 4096:
        distinct = keys.unique()
        if len(distinct) * 2 < len(keys):
            hashes = pl.Series(hash_texts(distinct.to_arrow()), dtype=pl.UInt64)
            lookup = pl.DataFrame({"k": distinct, "h": hashes})
            joined = pl.DataFrame({"k": keys}).join(lookup, on="k", how="left", maintain_order="left")
            return joined.get_column("h").to_numpy()
    return hash_texts(keys.to_arrow())


@dataclass
class Run:
    """Sorted columns of one feed's events. Treat as immutable."""

    key_hash: np.ndarray  # uint64, sorted
    keys: pa.Array  # key text per event (for snapshots and persistence)
    event_ms: np.ndarray  # int64, sorted within a key
    arrival_ms: np.ndarray | None
    values: dict[str, np.ndarray]  # per aggregation column name
    _prefix: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _distinct: np.ndarray | None = field(default=None, repr=False)  # distinct key hashes, sorted
    _starts: list[int] = field(default_factory=list, repr=False)  # where each distinct key starts

    def __len__(self) -> int:
        return len(self.event_ms)

    def key_slice(self, key_hash: int) -> tuple[int, int]:
        """The rows of one key: one binary search over the run's distinct keys."""
        if self._distinct is None:
            self._index_keys()
        assert self._distinct is not None
        position = int(self._distinct.searchsorted(key_hash))
        if position == len(self._distinct) or self._distinct[position] != key_hash:
            return 0, 0
        return self._starts[position], self._starts[position + 1]

    def _index_keys(self) -> None:
        hashes = self.key_hash
        starts = (
            np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if len(hashes) else np.zeros(0, np.int64)
        )
        self._distinct = hashes[starts]
        self._starts = [*starts.tolist(), len(hashes)]

    def prefix(self, column: str) -> np.ndarray:
        """Cumulative sums with a leading 0 (counts of a mask, or sums of fixed-point values)."""
        cached = self._prefix.get(column)
        if cached is None:
            data = self.values[column]
            cached = np.zeros(len(data) + 1, dtype=np.int64)
            np.cumsum(data, out=cached[1:], dtype=np.int64)
            self._prefix[column] = cached
        return cached

    def to_bytes(self) -> bytes:
        columns: dict[str, pa.Array] = {
            "key": self.keys,
            "key_hash": pa.array(self.key_hash),
            "event_ms": pa.array(self.event_ms),
        }
        if self.arrival_ms is not None:
            columns["arrival_ms"] = pa.array(self.arrival_ms)
        for name, data in self.values.items():
            columns[name] = (
                pa.array(data, from_pandas=False) if data.dtype != object else pa.array(list(data))
            )
        table = pa.table(columns)
        sink = io.BytesIO()
        with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
            writer.write_table(table)
        return sink.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Run:
        table = ipc.open_file(pa.BufferReader(data)).read_all()
        keys = table.column("key").combine_chunks()
        values = {
            name: _to_numpy(table.column(name))
            for name in table.column_names
            if name not in ("key", "key_hash", "event_ms", "arrival_ms")
        }
        arrival = _to_numpy(table.column("arrival_ms")) if "arrival_ms" in table.column_names else None
        key_hash = _to_numpy(table.column("key_hash"))
        return cls(key_hash, keys, _to_numpy(table.column("event_ms")), arrival, values)


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.array(column.to_pylist(), dtype=object)
    return column.to_numpy()


def _order(key_hash: np.ndarray, event_ms: np.ndarray, arrival_ms: np.ndarray | None) -> np.ndarray:
    keys = (event_ms, key_hash) if arrival_ms is None else (arrival_ms, event_ms, key_hash)
    return np.lexsort(keys)


def _sorted(run: Run) -> Run:
    order = _order(run.key_hash, run.event_ms, run.arrival_ms)
    return Run(
        run.key_hash[order],
        run.keys.take(pa.array(order)),
        run.event_ms[order],
        None if run.arrival_ms is None else run.arrival_ms[order],
        {name: data[order] for name, data in run.values.items()},
    )


def build_run(feed: Feed, events: pl.DataFrame) -> Run | None:
    """A run from a batch of a stream's events (lake columns), keeping only events with a full key."""
    if events.height == 0:
        return None
    key_columns = [pl.col(f) for f in feed.key_fields]
    if key_columns:
        events = events.filter(pl.all_horizontal([c.is_not_null() for c in key_columns]))
        keys = events.select(pl.concat_str([c.cast(pl.String) for c in key_columns], separator=KEY_SEPARATOR))
        key_series = keys.to_series()
    else:
        key_series = pl.Series("key", [""] * events.height, dtype=pl.String)
    if events.height == 0:
        return None
    values = {}
    for agg in feed.aggs:
        values.update(_agg_columns(agg, events))
    event_ms = events.get_column("_event_ms").to_numpy()
    arrival = events.get_column("_arrival_ms").to_numpy() if feed.needs_order else None
    run = Run(hash_keys(key_series), key_series.to_arrow(), event_ms, arrival, values)
    return _sorted(run)


def _agg_columns(agg: AggPlan, events: pl.DataFrame) -> dict[str, np.ndarray]:
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
    else:
        columns[agg.column] = _plain(raw)
    return columns


def _fixed(raw: pl.Series, field_type: str | None) -> np.ndarray:
    if field_type == "float" or raw.dtype.is_float():
        data = raw.cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        return np.rint(np.clip(data, -_FIXED_LIMIT, _FIXED_LIMIT) * FIXED_POINT_SCALE).astype(np.int64)
    return raw.cast(pl.Int64).fill_null(0).to_numpy()


def _value_hashes(raw: pl.Series) -> np.ndarray:
    """Stable hashes of values, computing each distinct value's hash once."""
    text = raw.cast(pl.String)
    distinct = text.drop_nulls().unique()
    table = pl.DataFrame({"v": distinct, "h": pl.Series(hash_values(distinct.to_list()), dtype=pl.UInt64)})
    joined = pl.DataFrame({"v": text}).join(table, on="v", how="left", maintain_order="left")
    return joined.get_column("h").fill_null(0).to_numpy()


def _plain(raw: pl.Series) -> np.ndarray:
    if raw.dtype == pl.String:
        return np.array(raw.to_list(), dtype=object)
    if raw.dtype == pl.Boolean:
        return raw.fill_null(False).to_numpy()
    if raw.dtype.is_float():
        return raw.fill_null(0.0).to_numpy()
    return raw.fill_null(0).to_numpy()


def merge_runs(runs: list[Run]) -> Run:
    """One sorted run holding every event of ``runs`` (compaction)."""
    if len(runs) == 1:
        return runs[0]
    names = list(runs[0].values)
    merged = Run(
        np.concatenate([r.key_hash for r in runs]),
        pa.concat_arrays([r.keys for r in runs]),
        np.concatenate([r.event_ms for r in runs]),
        None if runs[0].arrival_ms is None else np.concatenate([r.arrival_ms for r in runs]),
        {name: np.concatenate([r.values[name] for r in runs]) for name in names},
    )
    return _sorted(merged)


def drop_before(run: Run, cutoff_ms: int) -> Run:
    """The run without events older than ``cutoff_ms`` (retention)."""
    keep = run.event_ms >= cutoff_ms
    if keep.all():
        return run
    index = np.flatnonzero(keep)
    return Run(
        run.key_hash[index],
        run.keys.take(pa.array(index)),
        run.event_ms[index],
        None if run.arrival_ms is None else run.arrival_ms[index],
        {name: data[index] for name, data in run.values.items()},
    )
