"""Batch ingest: input files -> validate -> de-duplicate -> enrich -> event lake (+ dead letters).

Each input is identified by the digest of its content and stream. An input already in the lake's
manifest is skipped whole; one whose earlier ingest crashed has its partial files removed and is
ingested again, so a file is stored exactly once however often it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from clickwise.enrich.apply import Enricher
from clickwise.errors import InputError
from clickwise.events.deadletters import DeadLetterBatch, DeadLetters
from clickwise.events.dedup import EventIdIndex
from clickwise.events.lake import Lake
from clickwise.events.readers import InputFile, RawChunk, expand_inputs, read_chunks, row_json_texts
from clickwise.events.validate import CONTENT_DIGEST, validate
from clickwise.spec import Pipeline
from clickwise.storage import Root
from clickwise.time import Clock, SystemClock, format_ms

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as inputs are read."""


@dataclass
class StreamCounts:
    """What happened to one stream's records."""

    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    conflicts: int = 0
    """Records whose event id was stored with different content (in dead letters, not rejected)."""
    filtered: int = 0
    inputs: int = 0
    skipped_inputs: int = 0
    problems: list[tuple[int, str, str | None]] = field(default_factory=list, repr=False)
    """(row, reason, field) of each rejected or conflicting record of an in-memory batch (rows count
    from 0)."""
    files: list[str] = field(default_factory=list, repr=False)
    """Lake files written for an in-memory batch."""

    def as_dict(self) -> dict[str, int]:
        return {name: value for name, value in self.__dict__.items() if name not in ("problems", "files")}


@dataclass
class IngestReport:
    """Counts per stream for one ingest call."""

    streams: dict[str, StreamCounts] = field(default_factory=dict)

    def counts(self, stream: str) -> StreamCounts:
        return self.streams.setdefault(stream, StreamCounts())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: counts.as_dict() for name, counts in self.streams.items()}


class Ingestor:
    """Ingests inputs into one root for one pipeline; keeps per-stream state between inputs."""

    def __init__(self, pipeline: Pipeline, root: Root, *, clock: Clock | None = None) -> None:
        self.pipeline = pipeline
        self.lake = Lake(root, pipeline)
        self.dead = DeadLetters(root)
        self.clock = clock or SystemClock()
        self._indexes: dict[str, EventIdIndex] = {}
        self._enrichers: dict[str, Enricher] = {}

    def ingest_files(
        self, inputs: Sequence[str], *, stream: str | None = None, progress: Progress | None = None
    ) -> IngestReport:
        """Ingest files, folders, globs or ``s3://`` prefixes. The stream comes from ``stream``, else
        from each file's or folder's name (``impressions.jsonl``, ``impressions/part-0.parquet``)."""
        files = expand_inputs(inputs, endpoint=self.pipeline.storage.endpoint)
        plan = [(source, self._stream_of(source, stream)) for source in files]
        total = sum(_size(source) for source, _ in plan)
        done = 0
        report = IngestReport()
        for source, name in plan:
            self.ingest_file(source, name, report)
            done += _size(source)
            if progress is not None:
                progress(done, total)
        return report

    def ingest_file(self, source: InputFile, stream: str, report: IngestReport) -> None:
        counts = report.counts(stream)
        counts.inputs += 1
        digest = _digest(source, stream)
        if self.lake.has_input(stream, digest):
            counts.skipped_inputs += 1
            return
        tag = digest[:20]
        self.lake.remove_tag(stream, tag, chunks=True)
        self.dead.remove_tag(stream, tag, chunks=True)
        before = (counts.accepted, counts.rejected, counts.duplicates, counts.conflicts)
        files: list[str] = []
        for number, chunk in enumerate(read_chunks(source, self.pipeline.streams[stream])):
            files += self._ingest_chunk(chunk, stream, source, f"{tag}-{number:05d}", counts)
        self.lake.record_input(
            stream,
            digest,
            {
                "source": source.display,
                "stream": stream,
                "accepted": counts.accepted - before[0],
                "rejected": counts.rejected - before[1],
                "duplicates": counts.duplicates - before[2],
                "conflicts": counts.conflicts - before[3],
                "ingested_ms": self.clock.now_ms(),
                "files": files,
            },
        )

    def ingest_table(
        self, table: pa.Table, stream: str, *, tag: str, source: str = "api", new_tag: bool = False
    ) -> StreamCounts:
        """Ingest records already in memory (raw columns named as in the stream's input).

        ``tag`` names the batch (letters, digits, ``-``): a batch whose tag was already ingested
        into the stream is skipped whole, so a client may safely retry with the same tag.
        ``new_tag`` says the tag was never used (a fresh random one), so no leftovers of an
        interrupted write need looking for (which lists the stream's lake).
        """
        chunk = RawChunk(table, 0, row_json_texts(table))
        return self.ingest_chunk(chunk, stream, tag=tag, source=source, new_tag=new_tag)

    def ingest_chunk(
        self,
        chunk: RawChunk,
        stream: str,
        *,
        tag: str,
        source: str,
        new_tag: bool = False,
        record: dict[str, object] | None = None,
    ) -> StreamCounts:
        """:meth:`ingest_table` for parsed input (a chunk of a reader, with its format rejects).

        ``record`` is stored in the batch's manifest entry, which is written after the batch's lake
        files: a broker consumer keeps its positions there, so they are durable exactly when the
        events they cover are.
        """
        counts = StreamCounts(inputs=1)
        digest = batch_digest(tag)
        if self.lake.has_input(stream, digest):
            counts.skipped_inputs = 1
            return counts
        if not new_tag:
            self.lake.remove_tag(stream, tag)
        files = self._ingest_chunk(chunk, stream, None, tag, counts, source_name=source)
        counts.files = list(files)
        self.lake.record_input(
            stream,
            digest,
            {
                "source": source,
                "stream": stream,
                **counts.as_dict(),
                "ingested_ms": self.clock.now_ms(),
                "files": files,
                **(record or {}),
            },
        )
        return counts

    def _ingest_chunk(
        self,
        chunk: RawChunk,
        stream: str,
        source: InputFile | None,
        tag: str,
        counts: StreamCounts,
        *,
        source_name: str | None = None,
    ) -> list[str]:
        now_ms = self.clock.now_ms()
        dead = DeadLetterBatch()
        for reject in chunk.rejects:
            dead.add(reject.reason, None, reject.raw, reject.row, chunk.origin(reject.row))
        definition = self.pipeline.streams[stream]
        valid, rejected = validate(
            chunk.table, definition, now_ms=now_ms, digests=definition.event_id is not None
        )
        if len(rejected.rows):
            rows = rejected.rows.tolist()
            if source is None:  # an in-memory batch: its caller answers per record
                counts.problems.extend(zip(rows, rejected.reasons, rejected.fields, strict=True))
            for row, reason, field_name, raw in zip(
                chunk.source_rows(rows), rejected.reasons, rejected.fields, chunk.raw_text(rows), strict=True
            ):
                dead.add(reason, field_name, raw, row, chunk.origin(row))
        rejects = len(dead)
        valid = self._dedup(valid, stream, counts, rejected.valid_rows, chunk, dead, source is None)
        valid = self._enricher(stream).enrich_many(valid)
        files = self.lake.write(stream, valid, tag)
        self.dead.write(
            stream,
            dead,
            source=source_name or (source.display if source else "api"),
            tag=tag,
            arrival_ms=now_ms,
        )
        counts.accepted += valid.num_rows
        counts.rejected += rejects
        counts.conflicts += len(dead) - rejects
        counts.filtered += rejected.filtered
        return files

    def load_id_indexes(self) -> None:
        """Read every stream's stored event ids now (else the first batch of each stream does:
        seconds for a large lake, which a service should spend before it says it is ready)."""
        for stream, definition in self.pipeline.streams.items():
            if definition.event_id is not None and stream not in self._indexes:
                self._indexes[stream] = EventIdIndex(self.lake, stream, definition)

    def _dedup(
        self,
        valid: pa.Table,
        stream: str,
        counts: StreamCounts,
        rows: np.ndarray | None,
        chunk: RawChunk,
        dead: DeadLetterBatch,
        in_memory: bool,
    ) -> pa.Table:
        """Drop re-deliveries of stored records; send records whose id was stored with different
        content to ``dead`` (``rows``: the chunk row of each valid row)."""
        definition = self.pipeline.streams[stream]
        id_field = definition.event_id
        if id_field is None:
            return valid
        judged, valid = valid, valid.drop_columns([CONTENT_DIGEST])
        if valid.num_rows == 0:
            return valid
        if stream not in self._indexes:
            self._indexes[stream] = EventIdIndex(self.lake, stream, definition)
        verdict = self._indexes[stream].check_many(judged)
        counts.duplicates += verdict.duplicates
        if len(verdict.conflicts):
            assert rows is not None
            chunk_rows = rows[verdict.conflicts].tolist()
            ids = valid.column(id_field).take(pa.array(verdict.conflicts)).to_pylist()
            reasons = [
                f"conflicting duplicate: event id {event_id!r} is stored with different content "
                f"(the stored record's event time is {format_ms(int(stored_ms))})"
                for event_id, stored_ms in zip(ids, verdict.conflict_stored_ms.tolist(), strict=True)
            ]
            if in_memory:  # its caller answers per record
                counts.problems.extend(
                    (row, reason, id_field) for row, reason in zip(chunk_rows, reasons, strict=True)
                )
            for row, reason, raw in zip(
                chunk.source_rows(chunk_rows), reasons, chunk.raw_text(chunk_rows), strict=True
            ):
                dead.add(reason, id_field, raw, row, chunk.origin(row))
        return valid if verdict.fresh.all() else valid.filter(pa.array(verdict.fresh))

    def _enricher(self, stream: str) -> Enricher:
        if stream not in self._enrichers:
            self._enrichers[stream] = Enricher(self.pipeline, stream)
        return self._enrichers[stream]

    def _stream_of(self, source: InputFile, stream: str | None) -> str:
        if stream is not None:
            if stream not in self.pipeline.streams:
                raise InputError(
                    f"unknown stream {stream!r}; the pipeline has {sorted(self.pipeline.streams)}"
                )
            return stream
        parts = source.display.replace("\\", "/").split("/")
        candidates = [parts[-1].split(".", 1)[0], *reversed(parts[:-1])]
        for candidate in candidates:
            if candidate in self.pipeline.streams:
                return candidate
        raise InputError(
            f"{source.display}: cannot tell which stream this is (no file or folder named after one of "
            f"{sorted(self.pipeline.streams)}); pass --stream NAME"
        )


def batch_digest(tag: str) -> str:
    """The manifest name of an in-memory batch tagged ``tag``."""
    return f"batch-{tag}"


def _digest(source: InputFile, stream: str) -> str:
    hasher = hashlib.sha256(stream.encode() + b"\0")
    with source.root.fs.open_input_stream(source.root.path(source.relative)) as handle:
        while True:
            block = handle.read(8 << 20)
            if not block:
                break
            hasher.update(block)
    return hasher.hexdigest()


def _size(source: InputFile) -> int:
    info = source.root.fs.get_file_info(source.root.path(source.relative))
    return int(info.size or 0)


def ingest(
    pipeline: Pipeline,
    root: Root,
    inputs: Sequence[str],
    *,
    stream: str | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest files into the lake of ``root``; see :class:`Ingestor`."""
    return Ingestor(pipeline, root, clock=clock).ingest_files(inputs, stream=stream, progress=progress)
