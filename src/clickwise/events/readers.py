"""Read input files (JSON lines, CSV/TSV, Parquet; local or ``s3://``) as raw Arrow chunks.

A reader does not judge records: it returns columns as found in the file (after the stream's
renames) plus a way to get back each row's original text, so that validation can send bad rows to
dead letters verbatim. Rows the format itself cannot parse (broken JSON, a CSV row with the wrong
number of cells) are returned as rejects with their text.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from clickwise.errors import InputError
from clickwise.spec import StreamDef
from clickwise.storage import Root, open_root
from clickwise.time import EPOCH_FORMATS

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
DEFAULT_CHUNK_ROWS = 1_000_000
_JSON_BLOCK_BYTES = 64 << 20
_JSON_PARSE_BLOCK = 4 << 20  # Arrow parses blocks in parallel; a longer line falls back to line by line


@dataclass
class FormatReject:
    """A row the file format itself could not parse."""

    row: int
    reason: str
    raw: str


@dataclass
class RawChunk:
    """Rows of one input as found: raw columns, their row numbers in the file, their texts."""

    table: pa.Table
    first_row: int
    raw_text: Callable[[Sequence[int]], list[str]]
    rejects: list[FormatReject] = field(default_factory=list)
    row_numbers: list[int] | None = None  # the source row of each table row, when not first_row + i
    origins: Sequence[str] | None = None  # per source row, where it came from (topic/partition@offset)

    def origin(self, row: int) -> str | None:
        """Where source row ``row`` came from, when the chunk's rows come from several places."""
        return None if self.origins is None else self.origins[row - self.first_row]

    def source_rows(self, rows: Sequence[int]) -> list[int]:
        """Row numbers in the source file of some rows of ``table``."""
        if self.row_numbers is None:
            return [self.first_row + i for i in rows]
        return [self.row_numbers[i] for i in rows]


@dataclass(frozen=True)
class InputFile:
    """One input: where it is and how to open it."""

    root: Root
    relative: str
    display: str

    @property
    def name(self) -> str:
        return self.display.rstrip("/").rsplit("/", 1)[-1]

    def format(self) -> str:
        name = self.name.lower()
        for suffix in _COMPRESSION_SUFFIXES:
            name = name.removesuffix(suffix)
        if name.endswith(PARQUET_SUFFIXES):
            return "parquet"
        if name.endswith(JSON_SUFFIXES):
            return "jsonl"
        if name.endswith(CSV_SUFFIXES):
            return "tsv" if name.endswith(".tsv") else "csv"
        raise InputError(
            f"{self.display}: unknown input format; name it .jsonl/.ndjson, .csv/.tsv or .parquet "
            "(optionally .gz)"
        )

    def open(self) -> pa.NativeFile:
        path = self.root.path(self.relative)
        try:
            return self.root.fs.open_input_stream(path, compression="detect")
        except OSError as exc:
            raise InputError(f"{self.display}: cannot open: {exc}") from exc


def expand_inputs(
    inputs: Sequence[str], *, endpoint: str | None = None, allow_empty: bool = False
) -> list[InputFile]:
    """Files named by paths, folders (recursive), globs or ``s3://`` prefixes, in sorted order."""
    found: list[InputFile] = []
    for text in inputs:
        batch = _expand_one(text, endpoint)
        if not batch and not allow_empty:
            raise InputError(f"{text}: no input files found there")
        found.extend(batch)
    return found


def _expand_one(text: str, endpoint: str | None) -> list[InputFile]:
    if text.startswith("s3://"):
        bucket_prefix = text.removeprefix("s3://")
        root = open_root("s3://" + bucket_prefix.split("/", 1)[0], endpoint=endpoint)
        prefix = bucket_prefix.split("/", 1)[1] if "/" in bucket_prefix else ""
        direct = root.exists(prefix) and not root.list_files(prefix)
        names = [prefix] if direct else root.list_files(prefix)
        return [InputFile(root, name, f"{root.url}/{name}") for name in names if _is_data(name)]
    matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
    files: list[Path] = []
    for match in matches:
        path = Path(match)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and _is_data(p.name)))
        elif path.is_file():
            files.append(path)
        elif not glob.has_magic(text):
            raise InputError(f"{text}: no such file or folder")
    local = open_root("/")
    return [InputFile(local, p.resolve().as_posix().lstrip("/"), str(p)) for p in files]


def _is_data(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith((".", "_")) and base.lower().endswith(
        PARQUET_SUFFIXES + JSON_SUFFIXES + CSV_SUFFIXES + _COMPRESSION_SUFFIXES
    )


def read_chunks(
    source: InputFile, stream: StreamDef, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[RawChunk]:
    """Raw chunks of an input, with the stream's renames applied to column names."""
    kind = source.format()
    if kind == "parquet":
        chunks = _parquet_chunks(source, chunk_rows)
    elif kind == "jsonl":
        chunks = _json_chunks(source, stream)
    else:
        chunks = _csv_chunks(source, stream, "\t" if kind == "tsv" else None, chunk_rows)
    for chunk in chunks:
        chunk.table = _rename(chunk.table, stream)
        yield chunk


def _rename(table: pa.Table, stream: StreamDef) -> pa.Table:
    if not stream.renames:
        return table
    names = [stream.renames.get(name, stream.renames.get(name.strip(), name)) for name in table.column_names]
    return table.rename_columns(names)


# --- Parquet -------------------------------------------------------------------------------------


def _parquet_chunks(source: InputFile, chunk_rows: int) -> Iterator[RawChunk]:
    try:
        parquet = pq.ParquetFile(source.root.fs.open_input_file(source.root.path(source.relative)))
        row = 0
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch])
            yield RawChunk(table, row, row_json_texts(table))
            row += table.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{source.display}: not a readable Parquet file: {exc}") from exc


def row_json_texts(table: pa.Table) -> Callable[[Sequence[int]], list[str]]:
    """Original text of rows that had no text of their own (Parquet, in-memory): their JSON."""

    def texts(rows: Sequence[int]) -> list[str]:
        picked = table.take(pa.array(rows, type=pa.int64())).to_pylist()
        return [orjson.dumps(record, default=str).decode() for record in picked]

    return texts


# --- JSON lines ----------------------------------------------------------------------------------


def _json_chunks(source: InputFile, stream: StreamDef) -> Iterator[RawChunk]:
    """Blocks of whole lines; a fast Arrow parse, or line by line when a block has bad lines.

    Blank lines are skipped; row numbers count the non-blank lines.
    """
    schema = stream_json_schema(stream)
    row = 0
    with source.open() as handle:
        carry = b""
        while True:
            data = handle.read(_JSON_BLOCK_BYTES)
            if data:
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry += data
                    continue
                block, carry = carry + memoryview(data)[: cut + 1], data[cut + 1 :]
            else:
                block, carry = carry, b""
            if block.strip():
                chunk = json_block(block, schema, row)
                row += chunk.table.num_rows + len(chunk.rejects)
                yield chunk
            if not data:
                break


def stream_json_schema(stream: StreamDef) -> pa.Schema:
    """The Arrow schema JSON records of a stream are parsed with (input field names)."""
    arrow = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    fields = []
    for name, spec in stream.fields.items():
        kind = spec.type
        if name == stream.time.field and stream.time.format not in EPOCH_FORMATS:
            kind = "string"
        fields.append(pa.field(stream.source_name(name), arrow[kind]))
    return pa.schema(fields)


def json_block(block: bytes, schema: pa.Schema, first_row: int) -> RawChunk:
    """Parse whole JSON lines (no blank ones): one Arrow parse, or line by line when some are bad."""
    try:
        table = pajson.read_json(
            pa.BufferReader(block),
            read_options=pajson.ReadOptions(block_size=_JSON_PARSE_BLOCK, use_threads=True),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
        return RawChunk(table, first_row, _lazy_line_texts(block))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _json_lines_slow(_lines(block), schema, first_row)


def _lines(block: bytes) -> list[bytes]:
    return [line for line in block.split(b"\n") if line.strip()]


def _lazy_line_texts(block: bytes) -> Callable[[Sequence[int]], list[str]]:
    """Line texts, split out only if some row of the block is rejected."""
    cache: list[list[bytes]] = []

    def texts(rows: Sequence[int]) -> list[str]:
        if not cache:
            cache.append(_lines(block))
        return [_decode(cache[0][i]) for i in rows]

    return texts


def _json_lines_slow(lines: list[bytes], schema: pa.Schema, first_row: int) -> RawChunk:
    """Parse line by line: broken lines become rejects; mixed types are left to validation."""
    records: list[dict[str, object]] = []
    kept: list[bytes] = []
    numbers: list[int] = []
    rejects: list[FormatReject] = []
    for offset, line in enumerate(lines):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            rejects.append(FormatReject(first_row + offset, f"invalid JSON: {exc}", _decode(line)))
            continue
        if not isinstance(record, dict):
            rejects.append(FormatReject(first_row + offset, "not a JSON object", _decode(line)))
            continue
        records.append(record)
        kept.append(line)
        numbers.append(first_row + offset)
    columns = {name: _column([r.get(name) for r in records]) for name in schema.names}
    table = pa.table(columns) if records else schema.empty_table()
    return RawChunk(table, first_row, _line_texts(kept), rejects, numbers)


NESTED_MARK = "\x00json:"
"""Prefix of a nested JSON value (object or list) kept as text, so validation rejects it by type."""


def _column(values: list[object]) -> pa.Array:
    """An Arrow column of whatever the JSON held; with mixed types, everything becomes text."""
    if not any(isinstance(v, (dict, list)) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array([_as_text(v) for v in values], type=pa.string())


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return NESTED_MARK + orjson.dumps(value).decode()
    return str(value)


def _line_texts(lines: list[bytes]) -> Callable[[Sequence[int]], list[str]]:
    return lambda rows: [_decode(lines[i]) for i in rows]


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")


# --- CSV / TSV -----------------------------------------------------------------------------------


def _csv_chunks(
    source: InputFile, stream: StreamDef, delimiter: str | None, chunk_rows: int
) -> Iterator[RawChunk]:
    delimiter = stream.csv.delimiter or delimiter or ","
    header = _csv_header(source, stream, delimiter)
    columns = None if header else (stream.csv.columns or [stream.source_name(f) for f in stream.fields])
    rejects: list[FormatReject] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        number = (row.number or 0) - (1 if header else 0)
        rejects.append(
            FormatReject(
                number - 1, f"expected {row.expected_columns} cells, found {row.actual_columns}", row.text
            )
        )
        return "skip"

    try:
        reader = pacsv.open_csv(
            source.open(),
            read_options=pacsv.ReadOptions(column_names=columns, block_size=32 << 20, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=_all_strings(columns, source, delimiter, header),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        row = 0
        for batch in reader:
            table = pa.Table.from_batches([batch])
            found, rejects[:] = list(rejects), []
            yield RawChunk(table, row, _csv_texts(table, delimiter), found)
            row += table.num_rows + len(found)
        if rejects:
            yield RawChunk(pa.table({}), row, _csv_texts(pa.table({}), delimiter), list(rejects))
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{source.display}: not a readable CSV file: {exc}") from exc


def _csv_header(source: InputFile, stream: StreamDef, delimiter: str) -> bool:
    if stream.csv.header != "auto":
        return bool(stream.csv.header)
    with source.open() as handle:
        first = bytes(handle.read(64 << 10)).split(b"\n", 1)[0].decode("utf-8", errors="replace")
    known = {stream.source_name(f) for f in stream.fields} | set(stream.fields) | set(stream.renames)
    cells = [cell.strip().strip('"').lstrip("\ufeff") for cell in first.split(delimiter)]
    return any(cell in known for cell in cells)


def _all_strings(
    columns: list[str] | None, source: InputFile, delimiter: str, header: bool
) -> dict[str, pa.DataType]:
    if columns is None:
        with source.open() as handle:
            first = bytes(handle.read(64 << 10)).split(b"\n", 1)[0].decode("utf-8", errors="replace")
        columns = [cell.strip().strip('"') for cell in first.rstrip("\r").split(delimiter)]
    return {name: pa.string() for name in columns}


def _csv_texts(table: pa.Table, delimiter: str) -> Callable[[Sequence[int]], list[str]]:
    def texts(rows: Sequence[int]) -> list[str]:
        picked = table.take(pa.array(rows, type=pa.int64())).to_pylist()
        return [delimiter.join("" if v is None else str(v) for v in record.values()) for record in picked]

    return texts
