"""The streaming loop: pick up new input files, store them in the lake, apply them to the tables.

``clickwise run`` calls :func:`run_loop`. Each pass ingests files that appeared in the watched
folders and the streams' ``prefix`` sources (each file once: the lake's manifest knows it by
content) and what the streams' Kafka and Kinesis sources hold (each message once: positions are
stored with the lake files, see :mod:`clickwise.events.positions`), then applies every new lake
event to the tables and checkpoints, then emits the training rows whose label window the new
watermark closed (when the pipeline has a label). Every ``COMPACT_LAKE_S`` it merges the small
lake files that polls leave (see :mod:`clickwise.events.compaction`). SIGINT or SIGTERM ends the
loop after the current pass, so state is always left at a checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict
from types import FrameType
from typing import Any

from clickwise.dataset.stream import RowEmitter, handled_files
from clickwise.errors import StorageError
from clickwise.events import DeadLetters, Ingestor, Lake
from clickwise.events.compaction import compact_stream, translate
from clickwise.events.folding import fold_manifest
from clickwise.events.kafka import KafkaSource, describe_kafka, kafka_groups
from clickwise.events.kinesis import KinesisSource, describe_kinesis, kinesis_streams
from clickwise.events.positions import BrokerSource
from clickwise.events.readers import expand_inputs
from clickwise.spec import Pipeline
from clickwise.spec.streams import PrefixSourceDef
from clickwise.storage import Root
from clickwise.tables import Tables
from clickwise.tables.engine import LIVE_CHECKPOINT_S
from clickwise.tables.state import load_checkpoint
from clickwise.time import Clock, SystemClock, format_ms

FIRST_FETCH_S = 2.0
"""With ``once``, how long an empty broker source is polled before it counts as drained."""
COMPACT_LAKE_S = 30.0
"""How often the loop merges small lake files (the first pass does too)."""


class _Stop:
    """Set by SIGINT/SIGTERM; the loop finishes its pass, then returns."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def run_loop(
    pipeline: Pipeline,
    root: Root,
    *,
    watch: Sequence[str] = (),
    interval_ms: int = 1000,
    once: bool = False,
    rebuild: bool = False,
    rows: bool = True,
    clock: Clock | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one report per pass: files ingested, what the tables applied, training rows emitted."""
    clock = clock or SystemClock()
    ingestor = Ingestor(pipeline, root, clock=clock)
    tables = Tables.open(pipeline, root, clock=clock, rebuild=rebuild)
    emitter = RowEmitter(pipeline, root) if rows and pipeline.label is not None else None
    seen: set[tuple[str, int, int]] = set()
    folders: list[tuple[str, str | None]] = [(folder, None) for folder in watch]
    for name, stream in pipeline.streams.items():
        if isinstance(stream.source, PrefixSourceDef):
            folders.append((stream.source.url, name))
    sources: list[BrokerSource] = [
        KafkaSource(pipeline, root, streams, ingestor=ingestor) for streams in kafka_groups(pipeline).values()
    ]
    if kinesis_streams(pipeline):
        sources.append(KinesisSource(pipeline, root, kinesis_streams(pipeline), ingestor=ingestor))
    compacted = time.monotonic() - COMPACT_LAKE_S
    checkpointed = time.monotonic() - LIVE_CHECKPOINT_S  # the first pass checkpoints: a run that
    # keeps being killed still keeps what its catch-up applied, and each start has less to redo
    with _Stop() as stop, ExitStack() as stack:
        for source in sources:
            stack.enter_context(source)
        stack.callback(tables.checkpoint)  # on the way out, what was applied is written
        while True:
            ingested = _ingest_new(ingestor, folders, seen)
            consumed = _consume(sources, interval_ms / 1000, once=once, stop=stop.event)
            # applied in memory (the lake holds the events); checkpoints are written beside the
            # loop every LIVE_CHECKPOINT_S, so a pass does not wait for its runs to be written
            report = tables.catch_up(persist=False)
            if time.monotonic() - checkpointed >= LIVE_CHECKPOINT_S and tables.checkpoint_in_background():
                checkpointed = time.monotonic()
            floor = _event_floor(sources)
            emitted = asdict(emitter.emit(tables, event_floor_ms=floor)) if emitter is not None else None
            merged = None
            if time.monotonic() - compacted >= COMPACT_LAKE_S:
                merged, compacted = _compact_or_warn(pipeline, root, clock), time.monotonic()
            yield {
                "ingested": ingested,
                "consumed": consumed,
                "tables": asdict(report),
                "rows": emitted,
                "lake_compaction": merged,
                "at_ms": clock.now_ms(),
            }
            if once or stop.event.is_set():
                return
            if not sources and stop.event.wait(interval_ms / 1000):  # (a broker's poll waits itself)
                return


def compact_settled(pipeline: Pipeline, root: Root, clock: Clock) -> dict[str, int]:
    """Merge small lake files that the tables' last checkpoint and the row emitter's saved state
    both name (see :mod:`clickwise.events.compaction`), then fold old manifest entries (see
    :mod:`clickwise.events.folding`); returns files merged and written, entries folded. Both
    lists are read as saved, whoever runs this: a root whose rows were emitted by an earlier
    ``clickwise run`` keeps its emitter's list translatable under ``--no-rows`` or the service."""
    lake = Lake(root, pipeline)
    durable = load_checkpoint(root, pipeline, rebuild=False).applied
    handled = handled_files(root)
    named = set(durable) | (handled or set())  # (what saved lists name, replaced files included)
    label_streams = {pipeline.label.exposure, pipeline.label.outcome} if pipeline.label else set()
    total = {"merged": 0, "written": 0, "removed": 0, "folded": 0}
    for stream in pipeline.streams:
        settled = set(translate(durable, lake.replacements(stream)))
        if handled is not None and stream in label_streams:
            settled &= handled
        report = compact_stream(lake, stream, settled, clock=clock)
        total["merged"] += report.merged
        total["written"] += report.written
        total["removed"] += report.removed
        total["folded"] += fold_manifest(lake, stream, named, now_ms=clock.now_ms())
    return total


def _compact_or_warn(pipeline: Pipeline, root: Root, clock: Clock) -> dict[str, int] | None:
    """:func:`compact_settled`, or a warning when storage fails (merging is tried again next
    time; consuming goes on, as in the service). Two writers on one root still stop the loop."""
    try:
        return compact_settled(pipeline, root, clock)
    except StorageError as exc:
        print(f"clickwise: merging small lake files failed (tried again in {COMPACT_LAKE_S:.0f} s): "
              f"{exc}", file=sys.stderr, flush=True)  # fmt: skip
        return None


def _event_floor(sources: Sequence[BrokerSource]) -> int | None:
    """Events older than this may still be unread in a broker (None: every partition is read)."""
    floors = [source.event_time_floor() for source in sources]
    known = [f for f in floors if f is not None]
    return min(known) if known else None


def _consume(
    sources: Sequence[BrokerSource], seconds: float, *, once: bool, stop: threading.Event
) -> dict[str, int]:
    """Store what the brokers hold for up to ``seconds``. With ``once``: until a poll finds nothing,
    but not before the first fetches had time to answer (high watermarks are not trusted: some
    brokers report them wrongly)."""
    accepted: dict[str, int] = {}
    if not sources:
        return accepted
    started = time.monotonic()
    deadline = started + seconds
    while not stop.is_set():
        found = 0
        for source in sources:
            wait = 0.5 if once else min(0.5, max(0.05, deadline - time.monotonic()))
            batch = source.poll(timeout_s=wait)
            found += batch.messages
            for stream, counts in batch.streams.items():
                accepted[stream] = accepted.get(stream, 0) + counts.accepted
        if once:
            if not found and time.monotonic() - started >= FIRST_FETCH_S:
                break
        elif time.monotonic() >= deadline:
            break
    return accepted


def _ingest_new(
    ingestor: Ingestor, folders: Sequence[tuple[str, str | None]], seen: set[tuple[str, int, int]]
) -> dict[str, Any]:
    """Ingest watched files not seen in this process (the manifest skips ones stored earlier);
    a folder paired with a stream holds that stream's files."""
    report: dict[str, Any] = {}
    for folder, stream in folders:
        fresh = []
        for source in expand_inputs([folder], endpoint=ingestor.pipeline.storage.endpoint, allow_empty=True):
            info = source.root.fs.get_file_info(source.root.path(source.relative))
            identity = (source.display, int(info.size or 0), int(info.mtime_ns or 0))
            if identity not in seen:
                seen.add(identity)
                fresh.append(source.display)
        if fresh:
            for name, counts in ingestor.ingest_files(fresh, stream=stream).as_dict().items():
                total = report.setdefault(name, dict.fromkeys(counts, 0))
                for key, value in counts.items():
                    total[key] = total.get(key, 0) + value
    return report


def describe_status(
    pipeline: Pipeline, root: Root, shown_time: Callable[[int], str] = format_ms
) -> dict[str, Any]:
    """Events, lake files, manifest entries and dead letters per stream, and the tables'
    watermark, counters, runs and (where retention dropped state) the earliest time each answers;
    ``shown_time`` writes moments in the summary lines."""
    lake = Lake(root, pipeline)
    dead = DeadLetters(root)
    streams = {
        name: {
            "events": lake.count(name),
            "files": len(lake.completed_files(name)),  # (merging keeps these two small)
            "manifest_entries": len(root.list_files(f"lake/_manifest/{name}", suffix=".json")),
            "dead_letters": dead.read(name).num_rows,
        }
        for name in pipeline.streams
    }
    tables = Tables.open(pipeline, root)
    now_ms = SystemClock().now_ms()
    sources = describe_kafka(pipeline, root, now_ms=now_ms) + describe_kinesis(pipeline, root, now_ms=now_ms)
    counters = tables.counters()
    watermark = tables.watermark_ms
    runs = tables.run_counts()
    summary = [
        f"root: {root.url}",
        f"tables: watermark {shown_time(watermark) if watermark is not None else '-'}; "
        f"late events {counters.get('late_events', 0):,}; "
        f"past retention {counters.get('expired_events', 0):,}; "
        f"waiting for a join {tables.pending_count():,}",
        "runs per feed: " + (", ".join(f"{name} {count}" for name, count in runs.items()) or "-"),
    ]
    horizons = {name: tables.exact_from_ms(name) for name in pipeline.tables}
    dropped = {name: ms for name, ms in horizons.items() if ms is not None}
    if dropped:
        summary.append(
            "retention dropped older state; reads answered from: "
            + ", ".join(f"{name} {shown_time(ms)}" for name, ms in dropped.items())
        )
    for source in sources:
        lag = source["lag"]
        lag_text = "unknown (broker not reachable)" if lag is None else f"{lag:,} (as the broker reports it)"
        positions = ", ".join(f"{k}@{v}" for k, v in source["positions"].items()) or "none yet"
        rate = source["events_per_s_last_minute"]
        summary.append(
            f"source {source['stream']}: {source['kind']} {source['topic']}, {source['batches']:,} batches "
            f"stored; positions {positions}; {rate:,.0f} events/s over the last minute; lag {lag_text}"
        )
    return {
        "root": root.url,
        "streams": streams,
        "sources": sources,
        "tables": {
            "watermark_ms": watermark,
            "counters": counters,
            "runs": runs,
            "pending": tables.pending_count(),
            "exact_from_ms": horizons,
        },
        "summary": summary,
    }
