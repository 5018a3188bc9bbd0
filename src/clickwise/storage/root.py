"""A root: a local folder or ``s3://bucket/prefix``, with atomic writes and sorted listings.

Both backends go through ``pyarrow.fs``, so Parquet is read and written natively on either. A write
is atomic: local files are written under a temporary name and renamed; an object-store put is atomic
by itself. Readers therefore never see half a file, and a crash leaves at most a stray temporary.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from clickwise.errors import StorageError

_TMP_MARK = ".tmp-"


_DICTIONARY_VALUES = 100_000  # more distinct values than this overflow Parquet's dictionary page
PARALLEL_READS = 16  # files in one read_parquet call from which threads read them
READ_THREADS = 4


def repetitive_columns(table: pa.Table, *, texts_only: bool = False, sample: int = 10_000) -> list[str]:
    """Columns whose values repeat: worth dictionary encoding in Parquet, which then writes smaller
    and faster. Ids, addresses and continuous numbers are not: building their dictionaries can
    double the cost of writing.

    From rows spread evenly over the table, the number of distinct values in the whole column is
    estimated (Chao1: the values seen once and twice tell how many were not seen); a column is
    repetitive when that is below a fifth of its rows and its dictionary stays small.
    """
    candidates = [
        field.name
        for field in table.schema
        if not pa.types.is_boolean(field.type)
        if not texts_only or pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    ]
    if table.num_rows == 0 or not candidates:
        return []
    step = max(1, table.num_rows // sample)
    rows = table.select(candidates)
    rows = rows.take(pa.array(range(0, table.num_rows, step))) if step > 1 else rows
    chosen = []
    for name in candidates:
        counts = pc.value_counts(rows.column(name)).field("counts").to_numpy()
        seen_once, seen_twice = int((counts == 1).sum()), int((counts == 2).sum())
        estimate = len(counts) + seen_once * (seen_once - 1) / (2 * (seen_twice + 1))
        if estimate * 5 < table.num_rows and estimate <= _DICTIONARY_VALUES:
            chosen.append(name)
    return chosen


@dataclass(frozen=True)
class Root:
    """A storage root. Paths given to its methods are relative, with ``/`` separators."""

    fs: pafs.FileSystem
    base: str
    url: str

    def path(self, relative: str) -> str:
        """The backend path of a relative path (refusing ``..`` so nothing escapes the root)."""
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise StorageError(f"path {relative!r} leaves the root {self.url!r}")
        return posixpath.join(self.base, *parts) if parts else self.base

    def exists(self, relative: str) -> bool:
        info = self._info(relative)
        return info.type != pafs.FileType.NotFound

    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole file atomically."""
        self.write_parts(relative, [data])

    def write_parts(self, relative: str, parts: Sequence[bytes | pa.Buffer]) -> None:
        """Write a whole file atomically from parts written one after another (large parts need not
        be joined into one copy first)."""
        target = self.path(relative)
        try:
            self._ensure_parent(target)
            if self.is_local():
                temporary = f"{target}{_TMP_MARK}{uuid.uuid4().hex}"
                with self.fs.open_output_stream(temporary) as out:
                    for part in parts:
                        out.write(part)
                os.replace(temporary, target)
            else:
                with self.fs.open_output_stream(target) as out:
                    for part in parts:
                        out.write(part)
        except OSError as exc:
            raise StorageError(f"cannot write {self.url}/{relative}: {exc}") from exc

    def read_bytes(self, relative: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {self.url}/{relative}: {exc}") from exc

    def read_buffer(self, relative: str) -> pa.Buffer:
        """A whole file as an Arrow buffer, without a copy into Python bytes (table state files are
        hundreds of MB). A local file is memory-mapped: only the pages a reader touches are read.
        For immutable files only (a mapped file must not be truncated while in use)."""
        try:
            if self.is_local():
                with pa.memory_map(self.path(relative)) as mapped:
                    return mapped.read_buffer()  # the buffer keeps the mapping alive
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {self.url}/{relative}: {exc}") from exc

    def sizes(self, relatives: Iterable[str]) -> dict[str, int]:
        """The size in bytes of each file (one listing call; on object stores, one request each)."""
        paths = list(relatives)
        try:
            infos = self.fs.get_file_info([self.path(relative) for relative in paths])
        except OSError as exc:
            raise StorageError(f"cannot stat files under {self.url}: {exc}") from exc
        return {relative: max(0, info.size or 0) for relative, info in zip(paths, infos, strict=True)}

    def write_parquet(
        self,
        relative: str,
        table: pa.Table,
        *,
        compression: str = "zstd",
        dictionary: bool | list[str] = True,
        statistics: bool | list[str] = True,
    ) -> int:
        """Write a table as one Parquet file, atomically; returns its size in bytes. ``dictionary``
        names the columns worth dictionary encoding, ``statistics`` those whose min/max readers
        may filter on (default: all)."""
        sink = io.BytesIO()
        pq.write_table(
            table, sink, compression=compression, use_dictionary=dictionary, write_statistics=statistics
        )
        data = sink.getvalue()
        self.write_bytes(relative, data)
        return len(data)

    def read_parquet(self, relatives: Iterable[str], columns: list[str] | None = None) -> pa.Table:
        """Read and concatenate Parquet files (in the given order); many small files are read by a
        few threads (decoding releases the GIL, and per-file overhead dominates small files)."""

        def read(relative: str) -> pa.Table:
            try:
                return pq.read_table(self.path(relative), filesystem=self.fs, columns=columns)
            except OSError as exc:
                raise StorageError(f"cannot read {self.url}/{relative}: {exc}") from exc

        paths = list(relatives)
        if len(paths) >= PARALLEL_READS:
            with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="read-parquet") as pool:
                tables = list(pool.map(read, paths))
        else:
            tables = [read(relative) for relative in paths]
        if not tables:
            raise StorageError("read_parquet needs at least one file")
        return pa.concat_tables(tables, promote_options="default")

    def read_frame(self, relatives: Iterable[str], columns: list[str] | None = None) -> pl.DataFrame:
        """:meth:`read_parquet` as a polars frame. Local files are decoded by polars itself: about
        half the CPU of decoding with pyarrow and converting (files whose schemas differ, as when a
        field was added later, are read by pyarrow, which unifies them)."""
        paths = list(relatives)
        if self.is_local() and paths:
            try:
                return pl.read_parquet(
                    [self.path(relative) for relative in paths], columns=columns, hive_partitioning=False
                )
            except (pl.exceptions.PolarsError, OSError):
                pass  # read again below: the same files, or the error worded for this root
        frame = pl.from_arrow(self.read_parquet(paths, columns=columns))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def list_files(self, prefix: str = "", *, suffix: str = "") -> list[str]:
        """Every file below ``prefix`` (recursive), relative to the root, sorted; temporaries skipped."""
        start = self.path(prefix)
        selector = pafs.FileSelector(start, recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"cannot list {self.url}/{prefix}: {exc}") from exc
        base = self.base.rstrip("/") + "/" if self.base else ""
        found = [
            info.path[len(base) :] if info.path.startswith(base) else info.path
            for info in infos
            if info.type == pafs.FileType.File and _TMP_MARK not in info.base_name
        ]
        return sorted(path for path in found if path.endswith(suffix))

    def remove_temporaries(self, prefix: str = "") -> int:
        """Delete temporary files left by writes that were killed before their rename (local
        roots only: object-store puts leave none). Call only while no other writer is active."""
        if not self.is_local():
            return 0
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        stale = [info.path for info in self.fs.get_file_info(selector) if _TMP_MARK in info.base_name]
        for path in stale:
            self.fs.delete_file(path)
        return len(stale)

    def delete(self, relative: str) -> None:
        try:
            self.fs.delete_file(self.path(relative))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {self.url}/{relative}: {exc}") from exc

    def _info(self, relative: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path(relative))
        except OSError as exc:
            raise StorageError(f"cannot reach {self.url}/{relative}: {exc}") from exc

    def _ensure_parent(self, target: str) -> None:
        parent = posixpath.dirname(target)
        if parent and self.is_local():
            self.fs.create_dir(parent, recursive=True)


def open_root(url: str | Path, *, endpoint: str | None = None, region: str | None = None) -> Root:
    """Open a local folder (created if missing) or ``s3://bucket/prefix``.

    The S3 endpoint comes from ``endpoint``, else ``CLICKWISE_S3_ENDPOINT``, else
    ``AWS_ENDPOINT_URL``, else AWS itself; credentials come from the usual AWS variables.
    """
    text = str(url)
    if text.startswith("s3://"):
        return _open_s3(text, endpoint, region)
    if "://" in text and not text.startswith("file://"):
        raise StorageError(f"root {text!r} is not supported; use a folder path or s3://bucket/prefix")
    folder = Path(text.removeprefix("file://")).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the root folder {str(folder)!r}: {exc}") from exc
    return Root(fs=pafs.LocalFileSystem(), base=folder.as_posix(), url=folder.as_posix())


def _open_s3(url: str, endpoint: str | None, region: str | None) -> Root:
    bucket_and_prefix = url.removeprefix("s3://").strip("/")
    if not bucket_and_prefix:
        raise StorageError(f"root {url!r} names no bucket; use s3://bucket/prefix")
    endpoint = endpoint or os.environ.get("CLICKWISE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, object] = {"region": region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        if not host:
            raise StorageError(f"S3 endpoint {endpoint!r} needs a scheme, e.g. http://127.0.0.1:9000")
        options.update(endpoint_override=host, scheme=scheme)
    try:
        fs = pafs.S3FileSystem(**options)
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot open {url!r}: {exc}") from exc
    return Root(fs=fs, base=bucket_and_prefix, url=url.rstrip("/"))
