"""Writers of one stream into ``<folder>/part-00000.<ext>``, ``part-00001.<ext>``, ...

Parquet (zstd; dictionary encoding for repeated strings, delta encoding for times; row groups of ~256k
rows), JSON lines
(one object per row) and CSV (with a header) are written batch by batch; a part is closed and the next
one begun after ``rows_per_file`` rows. A stream with no rows still gets an empty ``part-00000`` that
carries the schema (or the CSV header), so readers always find one file per stream.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal, cast

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clickwise.synth.schema import REPEATED_STRINGS

Format = Literal["parquet", "jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("parquet", "jsonl", "csv")
ROW_GROUP_ROWS = 262_144
DICTIONARY_PAGE_BYTES = 8 << 20
"""Large enough for the IP and user-id dictionaries of ~100k users, so they never fall back to plain."""
DELTA_COLUMNS = ("ts", "arrival_ts")
"""Near-monotonic times: delta encoding makes them small before zstd even sees them."""


class StreamWriter:
    """Append batches of one stream to numbered part files; :meth:`close` returns the paths."""

    def __init__(self, folder: Path, schema: pa.Schema, fmt: Format, rows_per_file: int) -> None:
        self._folder, self._schema, self._fmt = folder, schema, fmt
        self._rows_per_file = rows_per_file
        self._paths: list[Path] = []
        self._part: _Part | None = None

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (rows already in final order), starting new parts as they fill."""
        offset = 0
        while offset < table.num_rows:
            part = self._part or self._open()
            take = min(table.num_rows - offset, self._rows_per_file - part.rows)
            part.write(table.slice(offset, take))
            offset += take
            if part.rows >= self._rows_per_file:
                part.close()
                self._part = None

    def close(self) -> tuple[Path, ...]:
        """Finish the open part (or write an empty one if nothing was written)."""
        if self._part is None and not self._paths:
            self._open()
        if self._part is not None:
            self._part.close()
            self._part = None
        return tuple(self._paths)

    def _open(self) -> _Part:
        path = self._folder / f"part-{len(self._paths):05d}.{self._fmt}"
        self._paths.append(path)
        self._part = _OPENERS[self._fmt](path, self._schema)
        return self._part


class _Part(ABC):
    """One open part file; counts its rows."""

    rows: int = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self._write(table)

    @abstractmethod
    def _write(self, table: pa.Table) -> None:
        """Append the rows to the file."""

    @abstractmethod
    def close(self) -> None:
        """Flush and close the file."""


class _ParquetPart(_Part):
    """Buffers batches into row groups of about :data:`ROW_GROUP_ROWS` rows."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        dictionary = [name for name in schema.names if name in REPEATED_STRINGS]
        delta = {name: "DELTA_BINARY_PACKED" for name in schema.names if name in DELTA_COLUMNS}
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            use_dictionary=dictionary,
            column_encoding=delta or None,
            dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
        )
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def _write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=4 * ROW_GROUP_ROWS)
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


class _CsvPart(_Part):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pacsv.CSVWriter(str(path), schema)

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


class _JsonlPart(_Part):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._file: BinaryIO = path.open("wb")

    def _write(self, table: pa.Table) -> None:
        cast(pl.DataFrame, pl.from_arrow(table)).write_ndjson(self._file)

    def close(self) -> None:
        self._file.close()


_OPENERS: dict[str, Callable[[Path, pa.Schema], _Part]] = {
    "parquet": _ParquetPart,
    "jsonl": _JsonlPart,
    "csv": _CsvPart,
}
