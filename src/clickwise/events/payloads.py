"""Broker message payloads to records: one JSON record per message, or several as JSON lines.

A broker pays per message, not per byte: on two cores the test broker serves about 140,000
messages/s whatever their size. Producers that batch (log shippers, Kinesis aggregation) put
many newline-separated records in one message, and a source declared with
``payload: json_lines`` reads them so. Either way, a batch of payloads becomes one
:class:`~clickwise.events.readers.RawChunk` parsed like a JSON lines file, and every source row
knows the message it came from (for its partition's time mark and its dead-letter origin).

>>> chunk, message_of = payload_chunk(
...     [b'{"a": 1}\\n{"a": 2}\\n', b'{"a": 3}'],
...     pa.schema([("a", pa.int64())]),
...     lines=True,
...     origin=lambda i: f"m{i}",
... )
>>> chunk.table.column("a").to_pylist(), message_of.tolist(), [chunk.origin(r) for r in range(3)]
([1, 2, 3], [0, 0, 1], ['m0#1', 'm0#2', 'm1'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from clickwise.events.readers import RawChunk, json_block


def payload_chunk(
    payloads: Sequence[bytes], schema: pa.Schema, *, lines: bool, origin: Callable[[int], str]
) -> tuple[RawChunk, np.ndarray]:
    """The records of some message payloads, and the message each source row came from.

    ``origin(i)`` names message i for dead letters (``kafka:topic/partition@offset``); a record of
    a message that holds several is named ``<origin>#<line>``, lines counted from 1 among the
    message's records. A rejected record keeps its text as sent.
    """
    if not payloads:
        return RawChunk(schema.empty_table(), 0, lambda rows: []), np.zeros(0, dtype=np.int64)
    chunk, counts = _lines_chunk(payloads, schema) if lines else _records_chunk(payloads, schema)
    message_of = np.repeat(np.arange(len(payloads)), counts)
    chunk.origins = _RowOrigins(origin, message_of, counts)
    return chunk, message_of


def _records_chunk(payloads: Sequence[bytes], schema: pa.Schema) -> tuple[RawChunk, np.ndarray]:
    """One record per payload (a pretty-printed one is re-encoded on one line first)."""
    records = [
        value if value and b"\n" not in value and not value.isspace() else one_line(value)
        for value in payloads
    ]
    chunk = json_block(b"\n".join(records) + b"\n", schema, 0)
    chunk.raw_text = lambda rows: [  # (a re-encoded record's text is the message as sent)
        payloads[i].decode("utf-8", errors="replace") for i in chunk.source_rows(rows)
    ]
    return chunk, np.ones(len(payloads), dtype=np.int64)


def _lines_chunk(payloads: Sequence[bytes], schema: pa.Schema) -> tuple[RawChunk, np.ndarray]:
    """One record per non-blank line. The payloads are parsed as they are, joined, when no line
    is blank (the parser skips blank lines, so its row count tells); else line by line."""
    trimmed = [value[:-1] if value.endswith(b"\n") else value for value in payloads]
    counts = np.fromiter((value.count(b"\n") + 1 for value in trimmed), dtype=np.int64, count=len(trimmed))
    chunk = json_block(b"\n".join(trimmed) + b"\n", schema, 0)
    if chunk.table.num_rows + len(chunk.rejects) == int(counts.sum()):
        return chunk, counts  # (its texts are the lines as sent)
    records = []
    for index, value in enumerate(payloads):
        found = [line for line in value.split(b"\n") if line.strip()]
        records.extend(found or [one_line(value)])  # (an empty message: rejected as such)
        counts[index] = len(found) or 1
    return json_block(b"\n".join(records) + b"\n", schema, 0), counts


def encode_payloads(
    records: Sequence[Mapping[str, Any]], *, per_message: int = 1, key_field: str | None = None
) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) of the messages that carry ``records`` in order: one JSON record each, or up to
    ``per_message`` as JSON lines (for ``payload: json_lines``). The key is the first record's
    ``key_field`` (None without one).

    >>> list(encode_payloads([{"u": "a"}, {"u": "b"}, {"u": "c"}], per_message=2, key_field="u"))
    [(b'a', b'{"u":"a"}\\n{"u":"b"}'), (b'c', b'{"u":"c"}')]
    """
    if per_message < 1:
        raise ValueError(f"per_message must be at least 1, not {per_message!r}")
    for first in range(0, len(records), per_message):
        group = records[first : first + per_message]
        key = group[0].get(key_field) if key_field else None
        value = b"\n".join(orjson.dumps(record) for record in group)
        yield (None if key is None else str(key).encode()), value


def one_line(value: bytes) -> bytes:
    """A message as one JSON line (re-encoded when valid, else kept as text that fails to parse)."""
    try:
        return orjson.dumps(orjson.loads(value))
    except orjson.JSONDecodeError:
        return b'"' + value.replace(b"\n", b" ").replace(b'"', b"'") + b'"' if value.strip() else b'""'


class _RowOrigins(Sequence[str]):
    """Where each source row came from, built only for the rows asked (rejected ones)."""

    def __init__(self, origin: Callable[[int], str], message_of: np.ndarray, counts: np.ndarray) -> None:
        self._origin = origin
        self._message_of = message_of
        self._counts = counts
        self._firsts = np.cumsum(counts) - counts  # the first row of each message

    def __len__(self) -> int:
        return len(self._message_of)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        message = int(self._message_of[index])
        where = self._origin(message)
        if self._counts[message] == 1:
            return where
        return f"{where}#{int(index) - int(self._firsts[message]) + 1}"
