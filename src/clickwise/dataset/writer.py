"""Training-set files: Parquet, CSV, or CSV in the layout of SageMaker's built-in algorithms.

Files go to ``<out>/date=YYYY-MM-DD/hour=HH/part-00000.<ext>`` (written atomically), with
``<out>/_dataset.json`` describing the columns. With ``sagemaker`` the CSV has no header, the label
first and then the features only, every value a number: text features become codes (``encodings``
in ``_dataset.json`` lists each feature's texts by code; codes grow as new texts appear), booleans
0/1, and a null is an empty field.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clickwise.errors import ClickwiseError
from clickwise.features import FeatureInfo
from clickwise.storage import Root, repetitive_columns
from clickwise.time import format_ms

META_FILE = "_dataset.json"
FORMATS = ("parquet", "csv")


class DatasetError(ClickwiseError):
    """A training set that cannot be written or read."""


class DatasetWriter:
    """Writes one file per hour partition and, at the end, the description of the set."""

    def __init__(
        self,
        root: Root,
        features: list[FeatureInfo],
        label: str,
        *,
        fmt: str = "parquet",
        sagemaker: bool = False,
    ) -> None:
        if fmt not in FORMATS:
            raise DatasetError(f"unknown format {fmt!r}; use one of {list(FORMATS)}")
        if sagemaker and fmt != "csv":
            raise DatasetError(f"--sagemaker writes CSV; it cannot be combined with --format {fmt}")
        self.root = root
        self.features = features
        self.label = label
        self.fmt = fmt
        self.sagemaker = sagemaker
        self.encodings: dict[str, list[str]] = {info.name: [] for info in features if info.type == "string"}
        self.files: list[str] = []
        self.bytes = 0

    def write(self, hour_ms: int, table: pa.Table) -> str:
        """Write one hour's rows; returns the file's path under the root."""
        stamp = format_ms(hour_ms)
        folder = f"date={stamp[:10]}/hour={stamp[11:13]}"
        if self.fmt == "parquet":
            path = f"{folder}/part-00000.parquet"
            # texts and counts repeat (countries, impressions in the last hour) and write smaller and
            # faster as dictionaries; ids, times and ratios do not, and building theirs costs more
            dictionary = repetitive_columns(table)
            # readers filter rows by time; statistics of the other columns cost 8% of the writing
            self.bytes += self.root.write_parquet(path, table, dictionary=dictionary, statistics=["event_ms"])
        else:
            path = f"{folder}/part-00000.csv"
            data = self._csv(table)
            self.root.write_bytes(path, data)
            self.bytes += len(data)
        self.files.append(path)
        return path

    def _csv(self, table: pa.Table) -> bytes:
        if self.sagemaker:
            table = self._numeric(table)
        sink = io.BytesIO()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=not self.sagemaker))
        return sink.getvalue()

    def _numeric(self, table: pa.Table) -> pa.Table:
        """Label first, then every feature as a number."""
        columns = {self.label: table.column(self.label)}
        for info in self.features:
            column = table.column(info.name)
            if info.type == "string":
                column = self._codes(info.name, column)
            elif info.type == "bool":
                column = column.cast(pa.int8())
            columns[info.name] = column
        return pa.table(columns)

    def _codes(self, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
        vocabulary = self.encodings[name]
        known = set(vocabulary)
        fresh = sorted(v for v in pc.unique(column).drop_null().to_pylist() if v not in known)
        vocabulary.extend(fresh)
        return pc.index_in(column, value_set=pa.array(vocabulary, pa.string()))

    def columns(self) -> list[str]:
        """The columns of the files, in order."""
        if self.sagemaker:
            return [self.label, *(info.name for info in self.features)]
        return ["event_id", "event_ms", *(info.name for info in self.features), self.label, "label_mature"]

    def finish(self, meta: dict[str, Any]) -> None:
        """Write ``_dataset.json``: the columns, encodings, files and what the caller adds."""
        description = {
            **meta,
            "format": "sagemaker-csv" if self.sagemaker else self.fmt,
            "label": self.label,
            "columns": self.columns(),
            "features": [info.to_json() for info in self.features],
            "files": self.files,
        }
        if self.sagemaker:
            description["encodings"] = {
                name: {"kind": "code", "values": values} for name, values in self.encodings.items()
            }
            description["encodings"].update(
                {info.name: {"kind": "0/1"} for info in self.features if info.type == "bool"}
            )
        self.root.write_bytes(META_FILE, orjson.dumps(description, option=orjson.OPT_INDENT_2))
