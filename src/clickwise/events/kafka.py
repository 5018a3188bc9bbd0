"""Kafka sources: streams' topics consumed into the lake, each message stored exactly once.

Kafka delivers at least once, so the positions that matter are not the consumer group's: each
batch of a stream is stored like an in-memory ingest (lake files, then a manifest entry naming
them), and the manifest entry also holds the next offset of every partition the batch read. The
entry is written last, so a batch's events and its positions become durable together. On start
the consumer resumes from the newest batch entry of each stream; a batch interrupted before its
entry is written is removed and read again. The tables then apply lake files exactly once
(their checkpoint names the files applied), so a crash at any moment loses and repeats nothing.

Offsets are also committed to the consumer group after each batch, so broker tools show the lag;
clickwise never reads them back.

Positions are next offsets by ``topic:partition`` (see :mod:`clickwise.events.positions`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from clickwise.events.ingest import Ingestor, StreamCounts
from clickwise.events.lake import Lake
from clickwise.events.payloads import encode_payloads, payload_chunk
from clickwise.events.positions import (
    BrokerSource,
    Ledger,
    SourceError,
    SourcePass,
    load_ledger,
    recent_events,
)
from clickwise.events.readers import RawChunk, stream_json_schema
from clickwise.spec import Pipeline
from clickwise.spec.streams import KafkaSourceDef, StreamDef
from clickwise.storage import Root

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

KIND = "kafka"
IDLE_AFTER_S = 10.0
"""A partition that answered no fetch this long after the start counts as empty."""
METADATA_EVERY_S = 10.0
"""How often the consumer looks for new partitions of its topics."""


def expand_env(text: str) -> str:
    """``${NAME}`` replaced by the environment variable NAME (an error when it is not set)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None or not found.strip():
            raise SourceError(
                f"the pipeline reads Kafka bootstrap servers from ${{{name}}}, which is not set; "
                f"export {name}=host:port"
            )
        return found.strip()

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, text)


def kafka_groups(pipeline: Pipeline) -> dict[tuple[str, str], dict[str, KafkaSourceDef]]:
    """The pipeline's Kafka-sourced streams, grouped by (bootstrap, group): one consumer each."""
    groups: dict[tuple[str, str], dict[str, KafkaSourceDef]] = {}
    for name, stream in pipeline.streams.items():
        source = stream.source
        if isinstance(source, KafkaSourceDef):
            groups.setdefault((source.bootstrap, source.group), {})[name] = source
    return groups


class KafkaSource(BrokerSource):
    """Consumes the topics of some streams (one broker, one group) into the lake: ``start()``,
    then ``poll()`` (or ``fetch()`` and ``store()``) as often as wanted, then ``close()``; or use it
    as a context manager. Groups come from :func:`kafka_groups`."""

    kind = KIND

    def __init__(
        self,
        pipeline: Pipeline,
        root: Root,
        streams: Mapping[str, KafkaSourceDef],
        *,
        ingestor: Ingestor | None = None,
    ) -> None:
        super().__init__(pipeline, root, streams, ingestor=ingestor)
        self.by_topic = {definition.topic: name for name, definition in self.streams.items()}
        first = next(iter(self.streams.values()))
        self.bootstrap_text = first.bootstrap
        self.group = first.group
        self.max_messages = min(d.max_messages for d in self.streams.values())
        self._consumer: Consumer | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._metadata_at = 0.0
        self.errors = 0
        self._lags: dict[str, int | None] = {}
        self._lag_at = 0.0
        self._started_at = 0.0

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, read stored positions and assign every partition of the topics."""
        try:
            from confluent_kafka import Consumer
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise SourceError("Kafka sources need confluent-kafka: pip install 'clickwise[kafka]'") from exc
        self._load_ledgers()
        first = next(iter(self.streams.values()))
        config: dict[str, Any] = {
            "bootstrap.servers": expand_env(self.bootstrap_text),
            "group.id": self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": first.start,
            "enable.partition.eof": False,
            "fetch.max.bytes": 64 << 20,
            "queued.max.messages.kbytes": 256 << 10,
            **{k: v for d in self.streams.values() for k, v in d.options.items()},
        }
        self._consumer = Consumer(config)
        self._assigned = set()  # (a restarted source assigns every partition again)
        self._started_at = time.monotonic()
        self._assign_new_partitions(wait_s=10.0)

    def close(self) -> None:
        """Cache the positions and leave the broker (stored batches are already durable)."""
        super().close()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # --- consuming -----------------------------------------------------------------------------

    def fetch(self, timeout_s: float = 0.5) -> list[Message]:
        """Read up to ``max_messages``, waiting at most ``timeout_s`` (nothing is stored yet)."""
        consumer = self._require()
        if time.monotonic() - self._metadata_at > METADATA_EVERY_S:
            self._assign_new_partitions(wait_s=2.0)
        messages = list(consumer.consume(num_messages=self.max_messages, timeout=timeout_s))
        if time.monotonic() - self._lag_at > 1.0:  # (the consumer is not to be called from other threads)
            self._lag_at = time.monotonic()
            self._lags = {stream: self._lag(ledger) for stream, ledger in self.ledgers.items()}
        return messages

    def store(self, messages: Sequence[Message]) -> SourcePass:
        """Store fetched messages in the lake, one batch per stream, each with its positions (callers
        that share the ingestor with other writers hold their lock around this)."""
        report = SourcePass()
        by_stream: dict[str, list[Message]] = {}
        for message in messages:
            if message.error() is not None:
                report.errors += 1
                continue
            stream = self.by_topic.get(str(message.topic()))
            if stream is not None:
                by_stream.setdefault(stream, []).append(message)
        self.errors += report.errors
        report.messages = len(messages) - report.errors
        committed: list[tuple[str, int]] = []
        for stream, batch in by_stream.items():
            counts, positions = self._store(stream, batch)
            report.streams[stream] = counts
            committed.extend(positions.items())
        if committed:
            self._commit_to_group(committed)
            self._note_read(report.messages)
        return report

    def _store(self, stream: str, batch: list[Message]) -> tuple[StreamCounts, dict[str, int]]:
        ledger = self.ledgers[stream]
        positions: dict[str, int] = {}
        kept = []
        slots: dict[str, int] = {}  # partition -> its number in this batch
        partitions = []  # of each kept message
        for message in batch:
            key = f"{message.topic()}:{message.partition()}"
            offset = int(message.offset() or 0)
            if offset < ledger.positions.get(key, 0):  # delivered again (a reassignment): stored already
                continue
            positions[key] = max(positions.get(key, 0), offset + 1)
            kept.append(message)
            partitions.append(slots.setdefault(key, len(slots)))
        if not kept:
            return StreamCounts(), {}
        definition = self.streams[stream]
        chunk, message_of = message_chunk(
            kept,
            self.pipeline,
            stream,
            key_as_event_id=definition.key_as_event_id,
            payload=definition.payload,
        )
        counts = ledger.store(
            self.ingestor,
            stream,
            chunk,
            positions,
            source=f"kafka:{definition.topic}",
            maybe_leftovers=stream in self._fresh,
            marks=_newest_event_times(
                chunk, np.array(partitions)[message_of], list(slots), self.pipeline.streams[stream]
            ),
        )
        self._fresh.discard(stream)
        return counts, positions

    def event_time_floor(self) -> int | None:
        """The oldest "newest event time read" among partitions that still hold unread messages
        (as the last fetches reported): events older than it may still come. None when every
        partition is read to its end. Training rows wait for it, so they do not depend on how far
        each topic happened to be read (call from the consuming thread)."""
        from confluent_kafka import KafkaException, TopicPartition

        consumer = self._require()
        floor: int | None = None
        for topic, partition in sorted(self._assigned):
            key = f"{topic}:{partition}"
            ledger = self.ledgers[self.by_topic[topic]]
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                high = -1
            position = int(ledger.positions.get(key, 0))
            if 0 <= high <= position:
                continue  # read to its end
            if high < 0 and time.monotonic() - self._started_at > IDLE_AFTER_S:
                continue  # never answered a fetch: an empty partition
            mark = ledger.marks.get(key)
            if mark is None:
                return 0  # unread messages of unknown times: nothing after the epoch is final yet
            floor = mark if floor is None else min(floor, mark)
        return floor

    def _commit_to_group(self, positions: Iterable[tuple[str, int]]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = []
        for key, offset in positions:
            topic, partition = key.rsplit(":", 1)
            offsets.append(TopicPartition(topic, int(partition), offset))
        try:
            self._require().commit(offsets=offsets, asynchronous=True)
        except KafkaException:  # only the broker's view of the lag; clickwise keeps its own positions
            self.errors += 1

    def _assign_new_partitions(self, *, wait_s: float) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

        consumer = self._require()
        self._metadata_at = time.monotonic()
        new = []
        deadline = time.monotonic() + wait_s
        for topic, stream in self.by_topic.items():
            try:
                metadata = consumer.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                raise SourceError(
                    f"cannot reach the Kafka broker at {expand_env(self.bootstrap_text)} for topic "
                    f"{topic!r}: {exc}"
                ) from exc
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue  # not created yet: looked for again later
            start = OFFSET_BEGINNING if self.streams[stream].start == "earliest" else OFFSET_END
            for partition in sorted(info.partitions):
                if (topic, partition) in self._assigned:
                    continue
                stored = self.ledgers[stream].positions.get(f"{topic}:{partition}")
                new.append(TopicPartition(topic, partition, stored if stored is not None else start))
                self._assigned.add((topic, partition))
        if new:
            consumer.incremental_assign(new)

    def _require(self) -> Consumer:
        if self._consumer is None:
            raise SourceError("the Kafka source is not started")
        return self._consumer

    # --- reporting -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Positions, events/s over the last minute, dead letters and (broker-reported) lag, as of
        the last fetch (safe to call from any thread)."""
        return {
            "kind": "kafka",
            "bootstrap": self.bootstrap_text,
            "group": self.group,
            "streams": {
                stream: {
                    "topic": self.streams[stream].topic,
                    "batches": ledger.sequence,
                    "positions": dict(sorted(dict(ledger.positions).items())),  # (a copy: threads)
                    "lag": self._lags.get(stream),
                }
                for stream, ledger in self.ledgers.items()
            },
            "events_per_s": self._events_per_s(),
            "dead_letters": self.dead_letters,
            "errors": self.errors,
        }

    def _lag(self, ledger: Ledger) -> int | None:
        """Messages behind the partitions' high watermarks as the last fetches reported them (asking
        the broker anew is slower, and some brokers, Tansu among them, answer it wrongly)."""
        from confluent_kafka import KafkaException, TopicPartition

        consumer = self._consumer
        if consumer is None:
            return None
        total = 0
        for key, offset in ledger.positions.items():
            topic, partition = key.rsplit(":", 1)
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, int(partition)), cached=True)
            except KafkaException:
                return None
            if high < 0:  # not fetched yet
                return None
            total += max(0, int(high) - offset)
        return total


_EPOCH_MS = {"epoch_ms": 1.0, "epoch_s": 1000.0, "epoch_us": 0.001, "epoch_ns": 0.000001}


def _newest_event_times(
    chunk: RawChunk, partitions: np.ndarray, names: Sequence[str], stream: StreamDef
) -> dict[str, int]:
    """The newest event time of each partition's messages in a batch (message i came from
    ``names[partitions[i]]``; epoch time formats only)."""
    scale = _EPOCH_MS.get(stream.time.format)
    column = stream.source_name(stream.time.field)
    if scale is None or column not in chunk.table.column_names or chunk.table.num_rows == 0:
        return {}
    data = chunk.table.column(column)
    if not (pa.types.is_integer(data.type) or pa.types.is_floating(data.type)):
        return {}  # (a batch whose times need validation to read: no mark)
    values = data.to_numpy(zero_copy_only=False).astype(np.float64) * scale
    if chunk.row_numbers is None:  # every message parsed: row i is message first_row + i
        rows = np.arange(chunk.first_row, chunk.first_row + chunk.table.num_rows)
    else:
        rows = np.asarray(chunk.row_numbers, dtype=np.int64)
    highest = np.full(len(names), -np.inf)
    np.fmax.at(highest, partitions[rows], values)  # (nulls are NaN: fmax skips them)
    return {str(n): int(h) for n, h in zip(names, highest, strict=True) if np.isfinite(h)}


def message_chunk(
    messages: Sequence[Message],
    pipeline: Pipeline,
    stream: str,
    *,
    key_as_event_id: bool = False,
    payload: str = "json",
) -> tuple[RawChunk, np.ndarray]:
    """The records of a batch of messages parsed like JSON lines, and the message each source
    row came from (see :func:`clickwise.events.payloads.payload_chunk`)."""
    definition = pipeline.streams[stream]
    id_field = definition.source_name(definition.event_id) if definition.event_id else None
    values = []
    for message in messages:
        value = message.value() or b""
        key = message.key()
        if key_as_event_id and id_field is not None and key is not None:
            value = _with_id(value, id_field, key if isinstance(key, bytes) else str(key).encode())
        values.append(value)

    def origin(index: int) -> str:
        message = messages[index]
        return f"kafka:{message.topic()}/{message.partition()}@{message.offset()}"

    return payload_chunk(values, stream_json_schema(definition), lines=payload == "json_lines", origin=origin)


def _with_id(value: bytes, id_field: str, key: bytes) -> bytes:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if isinstance(record, dict) and record.get(id_field) in (None, ""):
        record[id_field] = key.decode("utf-8", errors="replace")
        return orjson.dumps(record)
    return value


def produce_records(
    producer: Any,
    topic: str,
    records: Sequence[Mapping[str, Any]],
    key_field: str | None = None,
    *,
    per_message: int = 1,
) -> int:
    """Send records as JSON messages (keyed by ``key_field`` when given), ``per_message`` records
    to a message as JSON lines (see :func:`~clickwise.events.payloads.encode_payloads`); returns
    how many records."""
    sent = 0
    for key, value in encode_payloads(records, per_message=per_message, key_field=key_field):
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    return len(records)


CLIENT_LOG = logging.getLogger("clickwise.kafka")
"""Where the Kafka clients of :func:`send_generated` log (librdkafka's own lines; silent unless the
application configures logging), instead of hundreds of lines on stderr while a broker is down."""
CLIENT_LOG.addHandler(logging.NullHandler())
REACH_TIMEOUT_S = 10.0


def _quiet(settings: dict[str, Any]) -> dict[str, Any]:
    """Client settings that send librdkafka's log lines to :data:`CLIENT_LOG`."""
    return {**settings, "logger": CLIENT_LOG}


def check_reachable(bootstrap: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Ask the broker for its topics; a :class:`SourceError` naming it when none answers in time."""
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError as exc:  # pragma: no cover
        raise SourceError("Kafka needs confluent-kafka: pip install 'clickwise[kafka]'") from exc
    admin = AdminClient(_quiet({"bootstrap.servers": bootstrap}))
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(exc)
        raise SourceError(
            f"cannot reach Kafka at {bootstrap!r} within {timeout_s:g} s ({reason}); is the broker running "
            "and the address right?"
        ) from None


def make_producer(bootstrap: str, compression: str = "lz4") -> Any:
    """A producer tuned for throughput (batches of up to 1 MB, 20 ms linger, lz4 by default)."""
    try:
        from confluent_kafka import Producer
    except ImportError as exc:  # pragma: no cover
        raise SourceError("Kafka needs confluent-kafka: pip install 'clickwise[kafka]'") from exc
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.size": 1 << 20,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": compression,
        "logger": CLIENT_LOG,
    }
    return Producer(settings)


def create_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> None:
    """Create topics with ``partitions`` partitions (existing ones are left as they are)."""
    from concurrent.futures import TimeoutError as FutureTimeout

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_quiet({"bootstrap.servers": bootstrap}))
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except FutureTimeout:
            raise SourceError(f"Kafka at {bootstrap!r} did not create topic {topic!r} within 30 s") from None
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise SourceError(f"cannot create Kafka topic {topic!r}: {exc}") from exc


@dataclass
class SendSummary:
    """What :func:`send_generated` produced."""

    counts: dict[str, int]
    seconds: float


def generated_records(
    *,
    users: int,
    hours: float,
    seed: int,
    start_ms: int,
    rate: float | None = None,
    streams: Sequence[str] = ("impressions", "clicks", "predictions"),
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The generator's records (those :func:`clickwise.synth.generate` writes for the same
    arguments), as (stream, up to 10,000 records) in arrival order, paced to ``rate`` events/s
    (all streams together) when given."""
    from clickwise.synth.stream import iter_windows, make_plan

    plan = make_plan(users, hours, seed, start_ms, None)
    started = time.monotonic()
    sent = 0
    for window in iter_windows(plan):
        for name, table in window.batches:
            if name not in streams:
                continue
            for offset in range(0, table.num_rows, 10_000):
                part = table.slice(offset, 10_000)
                yield name, part.to_pylist()
                sent += part.num_rows
                ahead = sent / rate - (time.monotonic() - started) if rate else 0.0
                if ahead > 0:
                    time.sleep(ahead)
        if progress is not None:
            progress(window.index + 1, window.total)


def send_generated(
    bootstrap: str,
    *,
    users: int,
    hours: float,
    seed: int,
    start_ms: int,
    rate: float | None = None,
    streams: Sequence[str] = ("impressions", "clicks", "predictions"),
    partitions: int = 4,
    compression: str = "lz4",
    per_message: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SendSummary:
    """Produce :func:`generated_records` to Kafka: each stream to the topic of its name, keyed by
    user (``rate``: events per second at most; None: as fast as the broker takes them;
    ``per_message`` > 1: that many records to a message, as JSON lines). A broker that does not
    answer within :data:`REACH_TIMEOUT_S` is a :class:`SourceError`, before anything is generated."""
    check_reachable(bootstrap)
    create_topics(bootstrap, streams, partitions)
    producer = make_producer(bootstrap, compression)
    counts = dict.fromkeys(streams, 0)
    started = time.monotonic()
    generated = generated_records(
        users=users, hours=hours, seed=seed, start_ms=start_ms, rate=rate, streams=streams, progress=progress
    )
    for name, records in generated:
        counts[name] += produce_records(producer, name, records, key_field="user_id", per_message=per_message)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise SourceError(f"{remaining:,} messages were not delivered to {bootstrap} within 120 s")
    return SendSummary(counts, time.monotonic() - started)


def describe_kafka(
    pipeline: Pipeline, root: Root, *, now_ms: int, ask_broker: bool = True
) -> list[dict[str, Any]]:
    """What ``clickwise status`` shows of each Kafka-sourced stream, from the root alone (and the
    broker's high watermarks for the lag when ``ask_broker`` and the broker answers)."""
    lake = Lake(root, pipeline)
    described = []
    for (bootstrap, group), streams in kafka_groups(pipeline).items():
        for stream, definition in streams.items():
            ledger = load_ledger(lake, stream, KIND)
            recent = recent_events(lake, stream, ledger, now_ms - 60_000)
            described.append(
                {
                    "stream": stream,
                    "kind": "kafka",
                    "topic": definition.topic,
                    "group": group,
                    "batches": ledger.sequence,
                    "positions": dict(sorted(ledger.positions.items())),
                    "events_per_s_last_minute": recent / 60,
                    "lag": _broker_lag(bootstrap, ledger) if ask_broker and ledger.positions else None,
                }
            )
    return described


def _broker_lag(bootstrap_text: str, ledger: Ledger) -> int | None:
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        bootstrap = expand_env(bootstrap_text)
    except (ImportError, SourceError):
        return None
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "clickwise-status", "socket.timeout.ms": 2000}
    )
    try:
        total = 0
        for key, offset in ledger.positions.items():
            topic, partition = key.rsplit(":", 1)
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, int(partition)), timeout=2.0)
            total += max(0, int(high) - offset)
        return total
    except KafkaException:
        return None
    finally:
        consumer.close()
