"""Where a broker source is in its streams, stored with the events it produced; and the part
every broker source shares (:class:`BrokerSource`).

Each poll of a source is stored per stream as one in-memory ingest tagged ``<kind>-<sequence>``;
its manifest entry (written after its lake files) holds ``<kind>_positions``: the next position of
every partition or shard the batch read. So events and positions become durable together. The
newest positions are those of the latest entry; ``sources/<kind>/<stream>.json`` caches them (a
restart reads the cache, then any newer entries).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from clickwise.errors import ClickwiseError
from clickwise.events.folding import read_folded
from clickwise.events.ingest import Ingestor, StreamCounts, batch_digest
from clickwise.events.lake import Lake
from clickwise.events.readers import RawChunk
from clickwise.spec import Pipeline
from clickwise.storage import Root


class SourceError(ClickwiseError):
    """A source that cannot be read (broker unreachable, missing client library, bad settings)."""


@dataclass
class Ledger:
    """One stream's stored batches of one source kind: the newest sequence and the positions."""

    kind: str
    sequence: int = 0
    positions: dict[str, Any] = field(default_factory=dict)  # partition or shard -> next position
    marks: dict[str, int] = field(default_factory=dict)  # partition or shard -> newest event time read

    def tag(self, sequence: int) -> str:
        """The ingest tag (and lake file name part) of batch ``sequence``."""
        return f"{self.kind}-{sequence:012d}"

    @property
    def entry_key(self) -> str:
        """The manifest entry field holding a batch's positions."""
        return f"{self.kind}_positions"

    @property
    def marks_key(self) -> str:
        """The manifest entry field holding the newest event time read from each partition."""
        return f"{self.kind}_event_ms"

    def store(
        self,
        ingestor: Ingestor,
        stream: str,
        chunk: RawChunk,
        positions: dict[str, Any],
        *,
        source: str,
        maybe_leftovers: bool,
        marks: dict[str, int] | None = None,
    ) -> StreamCounts:
        """Store one batch of ``stream`` with the positions it reaches, and advance to them.

        ``maybe_leftovers``: the batch is the first since the source started, so files of the
        same batch written by a process that crashed may exist (they are removed first).
        """
        sequence = self.sequence + 1
        counts = ingestor.ingest_chunk(
            chunk,
            stream,
            tag=self.tag(sequence),
            source=source,
            new_tag=not maybe_leftovers,
            record={self.entry_key: positions, self.marks_key: marks or {}},
        )
        self.advance(sequence, positions, marks or {})
        return counts

    def advance(self, sequence: int, positions: Mapping[str, Any], marks: Mapping[str, Any]) -> None:
        """Move to batch ``sequence``, which reached ``positions`` and read events up to ``marks``."""
        self.sequence = sequence
        self.positions.update(positions)
        for key, mark in marks.items():
            self.marks[key] = max(int(mark), self.marks.get(key, int(mark)))

    def follow(self, entry: Mapping[str, Any]) -> None:
        """Move to the next batch, as its manifest entry records it."""
        self.advance(self.sequence + 1, entry.get(self.entry_key, {}), entry.get(self.marks_key, {}))


def _cache_path(kind: str, stream: str) -> str:
    return f"sources/{kind}/{stream}.json"


def load_ledger(lake: Lake, stream: str, kind: str) -> Ledger:
    """The positions of the newest stored batch of ``stream`` from sources of ``kind``."""
    while True:
        ledger, through = _read_ledger(lake, stream, kind)
        folded = read_folded(lake.root, stream)  # (a fold beside may have taken entries meanwhile)
        state = folded.batches.get(kind) if folded is not None else None
        if state is None or int(state["through"]) == through:
            return ledger


def _read_ledger(lake: Lake, stream: str, kind: str) -> tuple[Ledger, int]:
    """The ledger from the cache, the summary and the entries after them; and the last sequence
    the summary had folded."""
    root = lake.root
    ledger = Ledger(kind)
    if root.exists(_cache_path(kind, stream)):
        raw = orjson.loads(root.read_bytes(_cache_path(kind, stream)))
        ledger.sequence, ledger.positions = int(raw["sequence"]), dict(raw["positions"])
        ledger.marks = {str(k): int(v) for k, v in raw.get("marks", {}).items()}
    folded = read_folded(root, stream)
    state = folded.batches.get(kind) if folded is not None else None
    through = int(state["through"]) if state is not None else 0
    if state is not None and through > ledger.sequence:  # (the cache lags the summary)
        ledger.sequence, ledger.positions = through, dict(state["positions"])
        ledger.marks = {str(k): int(v) for k, v in state["marks"].items()}
    while True:
        entry = lake.input_entry(stream, batch_digest(ledger.tag(ledger.sequence + 1)))
        if entry is None:
            return ledger, through
        ledger.follow(entry)


def save_ledger(root: Root, stream: str, ledger: Ledger) -> None:
    """Cache the newest positions (a speed-up for restarts; the manifest entries are the truth)."""
    data = {"sequence": ledger.sequence, "positions": ledger.positions, "marks": ledger.marks}
    root.write_bytes(_cache_path(ledger.kind, stream), orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


def recent_events(lake: Lake, stream: str, ledger: Ledger, since_ms: int) -> int:
    """Events (accepted or rejected) in the batches stored at or after ``since_ms``."""
    total = 0
    sequence = ledger.sequence
    while sequence > 0:
        entry = lake.input_entry(stream, batch_digest(ledger.tag(sequence)))
        if entry is None or int(entry.get("ingested_ms", 0)) < since_ms:
            break
        total += int(entry.get("accepted", 0)) + int(entry.get("rejected", 0))
        sequence -= 1
    return total


@dataclass
class SourcePass:
    """What one poll of a broker source stored."""

    messages: int = 0  # read (Kafka messages or Kinesis records)
    streams: dict[str, StreamCounts] = field(default_factory=dict)
    errors: int = 0  # broker errors delivered in place of messages


class BrokerSource(ABC):
    """What Kafka and Kinesis sources share: the streams they feed, their ledgers, storing a batch
    with its positions, and the counts ``status()`` reports. Subclasses set ``kind`` and read."""

    kind = ""

    def __init__(
        self, pipeline: Pipeline, root: Root, streams: Mapping[str, Any], *, ingestor: Ingestor | None = None
    ) -> None:
        if not streams:
            raise SourceError(f"a {self.kind} source needs at least one stream")
        self.pipeline = pipeline
        self.root = root
        self.ingestor = ingestor or Ingestor(pipeline, root)
        self.streams = dict(streams)
        self.ledgers: dict[str, Ledger] = {}
        self._fresh: set[str] = set()  # streams whose next batch may have leftovers to remove
        self._recent: deque[tuple[float, int]] = deque()  # (time, events) of recent batches
        self.dead_letters = 0

    def _load_ledgers(self) -> None:
        for stream in self.streams:
            self.ledgers[stream] = load_ledger(self.ingestor.lake, stream, self.kind)
            self._fresh.add(stream)

    def close(self) -> None:
        """Cache the positions (stored batches are already durable)."""
        for stream, ledger in self.ledgers.items():
            if ledger.sequence:
                save_ledger(self.root, stream, ledger)

    @abstractmethod
    def start(self) -> None:
        """Connect and resume from the stored positions (:meth:`_load_ledgers`)."""

    @abstractmethod
    def fetch(self, timeout_s: float = 0.0) -> Any:
        """Read what is there (waiting at most ``timeout_s`` when nothing is); nothing stored yet.
        The result is falsy when nothing was read."""

    @abstractmethod
    def store(self, fetched: Any) -> SourcePass:
        """Store what :meth:`fetch` read, one batch per stream with its positions."""

    def poll(self, timeout_s: float = 0.0) -> SourcePass:
        """:meth:`fetch` then :meth:`store`."""
        return self.store(self.fetch(timeout_s))

    def event_time_floor(self) -> int | None:
        """Events older than this may still be unread (None: no such bound is known). Sources that
        track the newest event time of each partition override it; training rows wait for it."""
        return None

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """Positions, lag, events/s over the last minute and dead letters (safe from any thread)."""

    def __enter__(self) -> BrokerSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _store_batch(
        self,
        stream: str,
        chunk: RawChunk,
        positions: dict[str, Any],
        *,
        source: str,
        marks: dict[str, int] | None = None,
    ) -> StreamCounts:
        counts = self.ledgers[stream].store(
            self.ingestor,
            stream,
            chunk,
            positions,
            source=source,
            maybe_leftovers=stream in self._fresh,
            marks=marks,
        )
        self._fresh.discard(stream)
        self.dead_letters += counts.rejected
        return counts

    def _note_read(self, events: int) -> None:
        if events:
            self._recent.append((time.monotonic(), events))

    def _events_per_s(self) -> float:
        """Events stored per second over the last minute."""
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > 60:
            self._recent.popleft()
        span = max(1.0, now - self._recent[0][0]) if self._recent else 60.0
        return sum(n for _, n in self._recent) / span
