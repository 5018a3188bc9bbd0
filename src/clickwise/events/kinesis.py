"""Kinesis sources: streams read from Kinesis data streams into the lake, each record stored once.

The same scheme as Kafka (:mod:`clickwise.events.kafka`): each poll is stored per stream as one
lake batch whose manifest entry holds, per shard, the sequence number of the last record stored
(or ``END`` for a shard read to its end), so records and positions become durable together and a
restart resumes ``AFTER_SEQUENCE_NUMBER``. Resharding: a shard is read only once every parent is
read to its end, so a key's records stay in order across splits and merges.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clickwise.events.ingest import Ingestor
from clickwise.events.kafka import SendSummary, generated_records
from clickwise.events.lake import Lake
from clickwise.events.payloads import encode_payloads, payload_chunk
from clickwise.events.positions import BrokerSource, SourceError, SourcePass, load_ledger, recent_events
from clickwise.events.readers import RawChunk, stream_json_schema
from clickwise.spec import Pipeline
from clickwise.spec.streams import KinesisSourceDef
from clickwise.storage import Root

KIND = "kinesis"
END = "END"
SHARDS_EVERY_S = 10.0
"""How often the shard list is read again (new shards after a reshard)."""


def kinesis_streams(pipeline: Pipeline) -> dict[str, KinesisSourceDef]:
    """The pipeline's streams read from Kinesis, by stream name."""
    return {
        name: stream.source
        for name, stream in pipeline.streams.items()
        if isinstance(stream.source, KinesisSourceDef)
    }


def kinesis_client(definition: KinesisSourceDef, fallback_endpoint: str | None = None) -> Any:
    """A boto3 Kinesis client (endpoint: the source's, else ``CLICKWISE_KINESIS_ENDPOINT``, else
    ``AWS_ENDPOINT_URL``; credentials from the usual AWS settings)."""
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SourceError("Kinesis sources need boto3: pip install 'clickwise[kinesis]'") from exc
    endpoint = (
        definition.endpoint
        or os.environ.get("CLICKWISE_KINESIS_ENDPOINT")
        or fallback_endpoint
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    region = definition.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("kinesis", endpoint_url=endpoint, region_name=region)


@dataclass
class _Shard:
    id: str
    parents: tuple[str, ...]
    ending: int | None  # the last sequence number of a closed shard
    iterator: str | None = None
    empty_reads: int = 0
    behind_ms: int | None = None  # how far the last read was behind the shard's newest record


Fetched = dict[str, tuple[list[tuple[str, dict[str, Any]]], dict[str, str]]]
"""Per stream: (shard id, record) pairs read and the positions they reach."""


class KinesisSource(BrokerSource):
    """Reads the Kinesis data streams of some pipeline streams into the lake."""

    kind = KIND

    def __init__(
        self,
        pipeline: Pipeline,
        root: Root,
        streams: Mapping[str, KinesisSourceDef],
        *,
        ingestor: Ingestor | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(pipeline, root, streams, ingestor=ingestor)
        self._client = client
        self._shards: dict[str, dict[str, _Shard]] = {}
        self._listed_at: dict[str, float] = {}

    def start(self) -> None:
        first = next(iter(self.streams.values()))
        self._client = self._client or kinesis_client(first)
        self._load_ledgers()
        for stream in self.streams:
            self._shards[stream] = {}
            self._list_shards(stream)

    def _list_shards(self, stream: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.streams[stream].stream_name or stream
        shards: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                query = {"NextToken": token} if token else {"StreamName": name}
                answer = self._client.list_shards(**query)
                shards.extend(answer["Shards"])
                token = answer.get("NextToken")
                if not token:
                    break
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"cannot list the shards of Kinesis stream {name!r}: {exc}") from exc
        known = self._shards[stream]
        for listed in shards:
            ending = listed["SequenceNumberRange"].get("EndingSequenceNumber")
            shard = known.get(listed["ShardId"])
            if shard is None:
                parents = tuple(
                    p for p in (listed.get("ParentShardId"), listed.get("AdjacentParentShardId")) if p
                )
                known[listed["ShardId"]] = _Shard(listed["ShardId"], parents, int(ending) if ending else None)
            elif ending and shard.ending is None:  # closed by a reshard since the last listing
                shard.ending = int(ending)
        self._listed_at[stream] = time.monotonic()

    def fetch(self, timeout_s: float = 0.0, *, max_records: int | None = None) -> Fetched:
        """Read each readable shard once (nothing is stored yet). With ``timeout_s``, an empty
        read waits that long (at most 0.2 s: Kinesis allows five reads a second per shard)."""
        fetched: Fetched = {}
        for stream, definition in self.streams.items():
            if time.monotonic() - self._listed_at.get(stream, 0.0) > SHARDS_EVERY_S:
                self._list_shards(stream)
            records: list[tuple[str, dict[str, Any]]] = []
            positions: dict[str, str] = {}
            for shard in self._readable(stream):
                got, position = self._read(stream, shard, max_records or definition.max_records)
                records.extend((shard.id, r) for r in got)
                if position is not None:
                    positions[shard.id] = position
            if positions:
                fetched[stream] = (records, positions)
        if timeout_s and not any(records for records, _ in fetched.values()):
            time.sleep(min(timeout_s, 0.2))
        return fetched

    def store(self, fetched: Fetched) -> SourcePass:
        """Store fetched records, one batch per stream with its positions (callers that share the
        ingestor with other writers hold their lock around this)."""
        report = SourcePass()
        for stream, (records, positions) in fetched.items():
            chunk = record_chunk(records, self.pipeline, stream, payload=self.streams[stream].payload)
            source = f"kinesis:{self.streams[stream].stream_name or stream}"
            report.streams[stream] = self._store_batch(stream, chunk, positions, source=source)
            report.messages += len(records)
        self._note_read(report.messages)
        return report

    def _readable(self, stream: str) -> list[_Shard]:
        """Shards not read to their end whose parents are (parents before children)."""
        positions = self.ledgers[stream].positions
        return [
            shard
            for shard in self._shards[stream].values()
            if positions.get(shard.id) != END and all(positions.get(p) == END for p in shard.parents)
        ]

    def _read(self, stream: str, shard: _Shard, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Records of one shard and its new position (None: nothing changed)."""
        if shard.iterator is None:
            shard.iterator = self._iterator(stream, shard)
        answer = self._client.get_records(ShardIterator=shard.iterator, Limit=min(limit, 10_000))
        records = answer["Records"]
        shard.iterator = answer.get("NextShardIterator")
        shard.behind_ms = answer.get("MillisBehindLatest")
        shard.empty_reads = 0 if records else shard.empty_reads + 1
        last = records[-1]["SequenceNumber"] if records else self.ledgers[stream].positions.get(shard.id)
        finished = shard.iterator is None  # Kinesis ends the iterator of a closed shard read to its end
        if shard.ending is not None:  # closed by a reshard: no record will be added
            finished = finished or (last is not None and int(last) >= shard.ending) or shard.empty_reads >= 3
        if finished:
            return records, END
        return records, (records[-1]["SequenceNumber"] if records else None)

    def _iterator(self, stream: str, shard: _Shard) -> str:
        definition = self.streams[stream]
        name = definition.stream_name or stream
        stored = self.ledgers[stream].positions.get(shard.id)
        if stored is not None:
            answer = self._client.get_shard_iterator(
                StreamName=name,
                ShardId=shard.id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=stored,
            )
        else:
            kind = "TRIM_HORIZON" if definition.start == "trim_horizon" or shard.parents else "LATEST"
            answer = self._client.get_shard_iterator(
                StreamName=name, ShardId=shard.id, ShardIteratorType=kind
            )
        return str(answer["ShardIterator"])

    def status(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "streams": {
                stream: {
                    "stream_name": self.streams[stream].stream_name or stream,
                    "batches": ledger.sequence,
                    "positions": dict(ledger.positions),
                    "lag": None,
                    "behind_ms": max(
                        (
                            shard.behind_ms
                            for shard in self._shards.get(stream, {}).values()
                            if shard.behind_ms is not None
                        ),
                        default=None,
                    ),
                }
                for stream, ledger in self.ledgers.items()
            },
            "events_per_s": self._events_per_s(),
            "dead_letters": self.dead_letters,
            "errors": 0,
        }


def record_chunk(
    records: Sequence[tuple[str, dict[str, Any]]], pipeline: Pipeline, stream: str, *, payload: str = "json"
) -> RawChunk:
    """The records' data parsed like JSON lines (see :func:`clickwise.events.payloads.payload_chunk`)."""

    def origin(index: int) -> str:
        shard, record = records[index]
        return f"kinesis:{shard}@{record['SequenceNumber']}"

    chunk, _ = payload_chunk(
        [bytes(record["Data"]) for _, record in records],
        stream_json_schema(pipeline.streams[stream]),
        lines=payload == "json_lines",
        origin=origin,
    )
    return chunk


def describe_kinesis(pipeline: Pipeline, root: Root, *, now_ms: int) -> list[dict[str, Any]]:
    """What ``clickwise status`` shows of each Kinesis-sourced stream, from the root alone."""
    lake = Lake(root, pipeline)
    described = []
    for stream, definition in kinesis_streams(pipeline).items():
        ledger = load_ledger(lake, stream, KIND)
        described.append(
            {
                "stream": stream,
                "kind": KIND,
                "topic": definition.stream_name or stream,
                "batches": ledger.sequence,
                "positions": dict(sorted(ledger.positions.items())),
                "events_per_s_last_minute": recent_events(lake, stream, ledger, now_ms - 60_000) / 60,
                "lag": None,
            }
        )
    return described


def send_generated(
    prefix: str,
    *,
    users: int,
    hours: float,
    seed: int,
    start_ms: int,
    rate: float | None = None,
    streams: Sequence[str] = ("impressions", "clicks", "predictions"),
    shards: int = 4,
    per_message: int = 1,
    progress: Callable[[int, int], None] | None = None,
    client: Any = None,
) -> SendSummary:
    """Put :func:`clickwise.events.kafka.generated_records` into Kinesis streams named
    ``<prefix><stream>`` (created with ``shards`` shards when missing), keyed by user
    (``per_message`` > 1: that many records to a Kinesis record, as JSON lines)."""
    client = client or kinesis_client(KinesisSourceDef(kind="kinesis"))
    from botocore.exceptions import BotoCoreError, ClientError  # (installed with boto3)

    try:
        return _send_records(client, prefix, streams, shards, per_message, users=users, hours=hours,
                             seed=seed, start_ms=start_ms, rate=rate, progress=progress)  # fmt: skip
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(
            f"cannot send to Kinesis streams {prefix}<stream>: {exc} (set AWS credentials and region, "
            "or CLICKWISE_KINESIS_ENDPOINT for a local Kinesis)"
        ) from None


def _send_records(
    client: Any,
    prefix: str,
    streams: Sequence[str],
    shards: int,
    per_message: int,
    **plan: Any,
) -> SendSummary:
    existing = set(client.list_streams().get("StreamNames", []))
    for stream in streams:
        if prefix + stream not in existing:
            client.create_stream(StreamName=prefix + stream, ShardCount=shards)
            client.get_waiter("stream_exists").wait(StreamName=prefix + stream)
    counts = dict.fromkeys(streams, 0)
    started = time.monotonic()
    generated = generated_records(streams=streams, **plan)
    for name, records in generated:
        messages = [
            {"Data": value, "PartitionKey": (key or b"-").decode()}
            for key, value in encode_payloads(records, per_message=per_message, key_field="user_id")
        ]
        for first in range(0, len(messages), 500):  # PutRecords takes up to 500
            entries = messages[first : first + 500]
            while entries:
                answer = client.put_records(StreamName=prefix + name, Records=entries)
                failed = [
                    e for e, result in zip(entries, answer["Records"], strict=True) if "ErrorCode" in result
                ]
                if failed:
                    time.sleep(0.1)  # throttled: retry those
                entries = failed
        counts[name] += len(records)
    return SendSummary(counts, time.monotonic() - started)
