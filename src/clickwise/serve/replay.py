"""Replay recorded events into a running service at a steady rate, as live traffic would arrive.

The inputs (files, folders or globs of Parquet, JSON lines or CSV, read like ``clickwise ingest``
reads them) are put in arrival order when every input carries its stream's arrival-time field
(``arrival_time`` in the pipeline), else kept in file order. They are sent in batches of ``batch``
events, batch ``k`` leaving ``k * batch / rate`` seconds after the start on a monotonic clock (one
request per stream in a batch, in order of first appearance). A batch is sent after the previous
answer, so a service slower than ``rate`` sets the pace; the report says what was achieved.

The inputs are held in memory (as Arrow columns) so that they can be merged by arrival time. A
refused request (bad key, unknown stream) or a service gone away (after the client's retries)
stops the replay; the report says why and how many events were left unsent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from clickwise.errors import ClickwiseError, InputError
from clickwise.events.readers import InputFile, expand_inputs, read_chunks
from clickwise.serve.app import MAX_BATCH
from clickwise.serve.client import Client, ClientError
from clickwise.spec import Pipeline, StreamDef
from clickwise.time import parse_time_column

Progress = Callable[[int, int], None]
"""Called with (events answered, events to send) after each batch."""
OnAnswer = Callable[[str, list[dict[str, Any]], dict[str, Any]], None]
"""Called with each request's stream, records and the service's answer."""
_SHOWN_ERRORS = 20


@dataclass
class ReplayReport:
    """What a replay sent and what the service answered."""

    total: int = 0  # events read from the inputs
    sent: int = 0  # events in requests the service answered
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    unreadable: int = 0  # rows the file format could not parse (not sent)
    requests: int = 0
    seconds: float = 0.0
    target_rate: float = 0.0
    order: str = "file"  # "arrival" or "file"
    streams: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first refused events, with reasons
    stopped: str | None = None  # why the replay ended early
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def unsent(self) -> int:
        """Events not sent, or sent in a request that got no answer."""
        return self.total - self.sent

    @property
    def rate(self) -> float:
        """Events answered per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self) -> dict[str, float | None]:
        """Request latency percentiles (ms)."""
        if not self.latencies_ms:
            return {"p50": None, "p90": None, "p99": None, "max": None}
        values = np.asarray(self.latencies_ms)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(values.max())}

    def to_json(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.__dict__.items() if k != "latencies_ms"}
        return {**fields, "unsent": self.unsent, "rate": self.rate, "latency_ms": self.latency_ms()}


@dataclass
class _Events:
    """Every input chunk, and where each event sits: ``chunk[i]``, ``row[i]`` in sending order."""

    tables: list[pa.Table]
    streams: list[str]
    chunk: np.ndarray
    row: np.ndarray
    order: str
    unreadable: int


def replay(
    pipeline: Pipeline,
    url: str,
    inputs: Sequence[str],
    *,
    rate: float,
    batch: int = 500,
    api_key: str | None = None,
    stream: str | None = None,
    progress: Progress | None = None,
    on_answer: OnAnswer | None = None,
    client: Client | None = None,
) -> ReplayReport:
    """Send the events of ``inputs`` to the service at ``url`` at about ``rate`` events/s.

    ``stream`` names the stream of every input; by default each file's stream comes from its
    file or folder name (``impressions/part-0.parquet``), as for ``clickwise ingest``.
    """
    if not rate > 0:
        raise ClickwiseError(f"rate must be above 0 events/s, got {rate!r}")
    if not 1 <= batch <= MAX_BATCH:
        raise ClickwiseError(f"batch must be 1 to {MAX_BATCH:,} events (the service's limit), got {batch!r}")
    events = _load(pipeline, inputs, stream)
    report = ReplayReport(total=len(events.row), unreadable=events.unreadable, target_rate=rate,
                          order=events.order)  # fmt: skip
    own = client is None
    http = client or Client(url, api_key)
    try:
        _send(events, http, report, rate, batch, progress, on_answer)
    finally:
        if own:
            http.close()
    return report


def _send(
    events: _Events,
    http: Client,
    report: ReplayReport,
    rate: float,
    batch: int,
    progress: Progress | None,
    on_answer: OnAnswer | None,
) -> None:
    started = time.monotonic()
    for first in range(0, report.total, batch):
        due = started + first / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for name, records in _batch(events, first, min(first + batch, report.total)):
            sent_at = time.perf_counter()
            try:
                answer = http.send_events(name, records)
            except ClientError as exc:
                report.stopped = str(exc)
                report.seconds = time.monotonic() - started
                return
            report.latencies_ms.append((time.perf_counter() - sent_at) * 1000.0)
            _count(report, name, len(records), answer)
            if on_answer is not None:
                on_answer(name, records, answer)
        report.seconds = time.monotonic() - started
        if progress is not None:
            progress(report.sent, report.total)


def _count(report: ReplayReport, stream: str, sent: int, answer: dict[str, Any]) -> None:
    report.requests += 1
    counts = report.streams.setdefault(stream, {"sent": 0, "accepted": 0, "rejected": 0, "duplicates": 0})
    numbers = {"sent": sent, **{k: int(answer.get(k, 0)) for k in ("accepted", "rejected", "duplicates")}}
    for name, value in numbers.items():
        counts[name] += value
    report.sent += sent
    report.accepted += numbers["accepted"]
    report.rejected += numbers["rejected"]
    report.duplicates += numbers["duplicates"]
    room = _SHOWN_ERRORS - len(report.errors)
    for error in answer.get("errors", [])[: max(room, 0)]:
        report.errors.append({"stream": stream, **error})


def _batch(events: _Events, start: int, stop: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """The records of positions [start, stop), one list per stream in order of first appearance."""
    chunks = events.chunk[start:stop]
    rows = events.row[start:stop]
    records: list[dict[str, Any]] = [{} for _ in range(len(rows))]
    for number in np.unique(chunks):
        where = np.flatnonzero(chunks == number)
        taken = events.tables[number].take(pa.array(rows[where])).to_pylist()
        for position, record in zip(where.tolist(), taken, strict=True):
            records[position] = record
    groups: dict[str, list[dict[str, Any]]] = {}
    for number, record in zip(chunks.tolist(), records, strict=True):
        groups.setdefault(events.streams[number], []).append(record)
    return list(groups.items())


# --- reading the inputs ----------------------------------------------------------------------------


def _load(pipeline: Pipeline, inputs: Sequence[str], stream: str | None) -> _Events:
    tables: list[pa.Table] = []
    streams: list[str] = []
    keys: list[np.ndarray | None] = []
    unreadable = 0
    for source in expand_inputs(inputs, endpoint=pipeline.storage.endpoint):
        name = _stream_of(pipeline, source, stream)
        definition = pipeline.streams[name]
        for raw in read_chunks(source, definition):
            unreadable += len(raw.rejects)
            if raw.table.num_rows:
                tables.append(raw.table)
                streams.append(name)
                keys.append(_arrival_ms(raw.table, definition))
    sizes = [t.num_rows for t in tables]
    chunk = np.repeat(np.arange(len(tables), dtype=np.int64), sizes)
    row = np.concatenate([np.arange(n, dtype=np.int64) for n in sizes]) if sizes else np.zeros(0, np.int64)
    order = "file"
    if tables and all(key is not None for key in keys):
        arrival = np.concatenate([key for key in keys if key is not None])
        by_arrival = np.argsort(arrival, kind="stable")  # ties keep file order
        chunk, row, order = chunk[by_arrival], row[by_arrival], "arrival"
    return _Events(tables, streams, chunk, row, order, unreadable)


def _arrival_ms(table: pa.Table, definition: StreamDef) -> np.ndarray | None:
    """Each row's arrival time (ms; its event time when it has none), or None without the field."""
    arrival = definition.arrival_time
    if arrival is None or arrival.field not in table.column_names:
        return None
    moments = _time_ms(table, arrival.field, arrival.format, arrival.timezone)
    if definition.time.field in table.column_names:
        event = _time_ms(table, definition.time.field, definition.time.format, definition.time.timezone)
        moments = moments.fill_null(event)
    moments = moments.fill_null(strategy="forward").fill_null(strategy="backward")
    if moments.null_count() == len(moments):
        return None
    return moments.to_numpy()


def _time_ms(table: pa.Table, name: str, fmt: str, zone: str | None) -> pl.Series:
    values = pl.from_arrow(table.column(name))
    assert isinstance(values, pl.Series)
    return parse_time_column(values, fmt, zone)


def _stream_of(pipeline: Pipeline, source: InputFile, stream: str | None) -> str:
    """``stream``, else the first of the file's name and its folders' names that is a stream."""
    if stream is not None:
        if stream not in pipeline.streams:
            raise InputError(f"unknown stream {stream!r}; the pipeline has {sorted(pipeline.streams)}")
        return stream
    parts = source.display.replace("\\", "/").split("/")
    for candidate in [parts[-1].split(".", 1)[0], *reversed(parts[:-1])]:
        if candidate in pipeline.streams:
            return candidate
    raise InputError(
        f"{source.display}: cannot tell which stream this is (no file or folder named after one of "
        f"{sorted(pipeline.streams)}); pass --stream NAME"
    )
