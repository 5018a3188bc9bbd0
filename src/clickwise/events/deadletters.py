"""Dead letters: every record that could not be stored, with why, and its original text.

Layout: ``deadletters/<stream>/date=YYYY-MM-DD/part-<tag>.parquet`` (date of ingest), columns
``reason``, ``field``, ``raw``, ``source`` (input or topic/partition/offset), ``row`` (position in the
source) and ``_arrival_ms``. Bad records are data: they are counted and kept, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from clickwise.events.lake import written_with_tag
from clickwise.storage import Root
from clickwise.time import ms_to_datetime

SCHEMA = pa.schema(
    [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("raw", pa.large_string()),
        pa.field("source", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("_arrival_ms", pa.int64(), nullable=False),
    ]
)


@dataclass
class DeadLetterBatch:
    """Rejected records gathered while reading one input."""

    reasons: list[str] = field(default_factory=list)
    fields: list[str | None] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    origins: list[str | None] = field(default_factory=list)
    """Per record, where it came from when that differs within a batch (topic/partition@offset)."""

    def add(self, reason: str, field_name: str | None, raw: str, row: int, origin: str | None = None) -> None:
        self.reasons.append(reason)
        self.fields.append(field_name)
        self.raws.append(raw)
        self.rows.append(row)
        self.origins.append(origin)

    def __len__(self) -> int:
        return len(self.reasons)


class DeadLetters:
    """Writes and reads one root's dead letters."""

    def __init__(self, root: Root) -> None:
        self.root = root

    def write(
        self, stream: str, batch: DeadLetterBatch, *, source: str, tag: str, arrival_ms: int
    ) -> str | None:
        """Store a batch (atomically); returns the file written, or None for an empty batch."""
        if not batch:
            return None
        table = pa.table(
            {
                "reason": batch.reasons,
                "field": batch.fields,
                "raw": batch.raws,
                "source": [origin or source for origin in batch.origins],
                "row": batch.rows,
                "_arrival_ms": [arrival_ms] * len(batch),
            },
            schema=SCHEMA,
        )
        path = f"deadletters/{stream}/date={ms_to_datetime(arrival_ms):%Y-%m-%d}/part-{tag}.parquet"
        self.root.write_parquet(path, table)
        return path

    def read(self, stream: str) -> pa.Table:
        """Every dead letter of a stream, oldest first."""
        paths = self.root.list_files(f"deadletters/{stream}", suffix=".parquet")
        if not paths:
            return SCHEMA.empty_table()
        table = self.root.read_parquet(paths)
        return table.take(
            pc.sort_indices(table, sort_keys=[("_arrival_ms", "ascending"), ("row", "ascending")])
        )

    def remove_tag(self, stream: str, tag: str, *, chunks: bool = False) -> None:
        """Delete the dead letters of an interrupted write tagged ``tag`` (see
        :func:`clickwise.events.lake.written_with_tag`)."""
        for path in self.root.list_files(f"deadletters/{stream}", suffix=".parquet"):
            if written_with_tag(path.rsplit("/", 1)[-1], tag, chunks=chunks):
                self.root.delete(path)
