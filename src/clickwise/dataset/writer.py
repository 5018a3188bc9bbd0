"""Training-set files: Parquet, CSV, or CSV in the layout of SageMaker's built-in algorithms.

Parquet and CSV files go to ``<out>/date=YYYY-MM-DD/hour=HH/part-00000.<ext>`` (written atomically),
with ``<out>/_dataset.json`` describing the columns; every row is kept, with its ``label_mature``.

With ``sagemaker`` the set is laid out for an ``S3Prefix`` channel, which reads every object under
its prefix as data, so nothing else may sit there::

    <out>/_dataset.json                                    the description (beside the channel)
    <out>/data/date=.../hour=.../part-00000.csv            the channel: label first, then the features
    <out>/keys/date=.../hour=.../part-00000.parquet        event_id, event_ms, label_mature of each row

The CSV has no header and every value is a number: booleans are 0/1, a null is an empty field, and a
text is its **stable code** :func:`text_code`, a function of the text alone (not of the rows in the
export), so every export of every pipeline gives ``"Chrome"`` the same number and a model trained on
one export reads another. ``_dataset.json`` lists each feature's texts with their codes. Rows whose
label is not final yet are left out (a 0 there may still become a click) unless ``include_immature``;
the description counts those left out.
"""

from __future__ import annotations

import hashlib
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
CHANNEL, KEYS = "data", "keys"
"""Folders of a SageMaker set: the channel's data files, and the row keys beside them."""
MATURE = "label_mature"
KEY_COLUMNS = ("event_id", "event_ms", MATURE)
CODE_HASH = "blake2b-24"
"""Name of :func:`text_code` in ``_dataset.json``."""


class DatasetError(ClickwiseError):
    """A training set that cannot be written or read."""


def text_code(text: str) -> int:
    """The SageMaker code of a text: the BLAKE2b digest of its UTF-8 bytes with a 3-byte digest
    size, as a big-endian integer (0 to 16,777,215: every code is exact in the float32 numbers that
    SageMaker's algorithms read). Serving code that scores a SageMaker model encodes texts with it;
    a text no export ever held still gets its own code.

    >>> text_code("Chrome"), text_code("Chrome") == text_code("Chrome "), text_code("") < 2**24
    (15409488, False, True)
    """
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=3).digest(), "big")


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
        include_immature: bool = False,
    ) -> None:
        if fmt not in FORMATS:
            raise DatasetError(f"unknown format {fmt!r}; use one of {list(FORMATS)}")
        if sagemaker and fmt != "csv":
            raise DatasetError(f"--sagemaker writes CSV; it cannot be combined with --format {fmt}")
        if include_immature and not sagemaker:
            raise DatasetError(
                "--include-immature applies to --sagemaker sets; Parquet and CSV sets keep every row "
                "with its label_mature column"
            )
        self.root = root
        self.features = features
        self.label = label
        self.fmt = fmt
        self.sagemaker = sagemaker
        self.include_immature = include_immature
        self.codes: dict[str, dict[str, int]] = {info.name: {} for info in features if info.type == "string"}
        self.files: list[str] = []
        self.key_files: list[str] = []
        self.immature_left_out = 0
        self.bytes = 0

    def keep(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` that go into the set: in a SageMaker set without
        ``include_immature``, those whose label is final (the others are counted)."""
        if not self.sagemaker or self.include_immature:
            return table
        mature = pc.fill_null(table.column(MATURE), False)
        kept = table.filter(mature)
        self.immature_left_out += table.num_rows - kept.num_rows
        return kept

    def write(self, hour_ms: int, table: pa.Table) -> str:
        """Write one hour's rows; returns the (data) file's path under the root."""
        stamp = format_ms(hour_ms)
        folder = f"date={stamp[:10]}/hour={stamp[11:13]}"
        if self.fmt == "parquet":
            path = f"{folder}/part-00000.parquet"
            # texts and counts repeat (countries, impressions in the last hour) and write smaller and
            # faster as dictionaries; ids, times and ratios do not, and building theirs costs more
            dictionary = repetitive_columns(table)
            # readers filter rows by time; statistics of the other columns cost 8% of the writing
            self.bytes += self.root.write_parquet(path, table, dictionary=dictionary, statistics=["event_ms"])
        elif self.sagemaker:
            path = f"{CHANNEL}/{folder}/part-00000.csv"
            data = self._csv(self._numeric(table), header=False)
            self.root.write_bytes(path, data)
            keys = f"{KEYS}/{folder}/part-00000.parquet"
            self.bytes += len(data) + self.root.write_parquet(keys, table.select(list(KEY_COLUMNS)))
            self.key_files.append(keys)
        else:
            path = f"{folder}/part-00000.csv"
            data = self._csv(table, header=True)
            self.root.write_bytes(path, data)
            self.bytes += len(data)
        self.files.append(path)
        return path

    @staticmethod
    def _csv(table: pa.Table, *, header: bool) -> bytes:
        sink = io.BytesIO()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=header))
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
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        known = self.codes[name]
        texts = pc.unique(column).drop_null()
        codes = []
        for text in texts.to_pylist():
            code = known.get(text)
            if code is None:
                code = known[text] = text_code(text)
            codes.append(code)
        return pc.take(pa.array(codes, pa.int32()), pc.index_in(column, value_set=texts))

    def columns(self) -> list[str]:
        """The columns of the (data) files, in order."""
        if self.sagemaker:
            return [self.label, *(info.name for info in self.features)]
        return ["event_id", "event_ms", *(info.name for info in self.features), self.label, MATURE]

    def collisions(self) -> dict[str, list[list[str]]]:
        """Per text feature, the groups of texts of this set that share a code (very rare: two of a
        thousand texts share one with a chance of 3%)."""
        found: dict[str, list[list[str]]] = {}
        for name, codes in self.codes.items():
            by_code: dict[int, list[str]] = {}
            for text, code in codes.items():
                by_code.setdefault(code, []).append(text)
            groups = sorted(sorted(texts) for texts in by_code.values() if len(texts) > 1)
            if groups:
                found[name] = groups
        return found

    def warnings(self) -> list[str]:
        """What a user of the set must know (texts that share a code)."""
        return [
            f"feature {name!r}: the texts {', '.join(repr(t) for t in group)} share one code in the "
            "SageMaker CSV, so a model trained on it cannot tell them apart"
            for name, groups in self.collisions().items()
            for group in groups
        ]

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
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
            description["layout"] = {
                "channel": f"{CHANNEL}/",
                "keys": f"{KEYS}/",
                "key_columns": list(KEY_COLUMNS),
                "note": f"point the training channel (S3Prefix) at {CHANNEL}/; {KEYS}/ holds each data "
                "row's event_id, event_ms and label_mature, in the same order",
            }
            description["key_files"] = self.key_files
            description["immature_rows"] = "included" if self.include_immature else "left out"
            description["immature_left_out"] = self.immature_left_out
            collisions = self.collisions()
            description["encodings"] = {
                name: {
                    "kind": "code",
                    "hash": CODE_HASH,
                    "codes": dict(sorted(codes.items())),
                    "collisions": collisions.get(name, []),
                }
                for name, codes in self.codes.items()
            }
            description["encodings"].update(
                {info.name: {"kind": "0/1"} for info in self.features if info.type == "bool"}
            )
        self.root.write_bytes(META_FILE, orjson.dumps(description, option=orjson.OPT_INDENT_2))
        return description
