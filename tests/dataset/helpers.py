"""Reading a training set back without clickwise: its files, Parquet, CSV and SageMaker CSV.

Written from the documented layout alone (``<out>/date=YYYY-MM-DD/hour=HH/part-00000.<ext>`` and
``<out>/_dataset.json``), with the standard library and pyarrow, so that tests compare what a
backfill wrote with their oracles without going through clickwise's own readers. Rows come back as
plain dicts, grouped by partition folder (``date=.../hour=..``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

META_FILE = "_dataset.json"
PART = "part-00000"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = dict[str, Any]
Partitions = dict[str, list[Row]]


# --- time -------------------------------------------------------------------------------------


def utc(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact: no float seconds)."""
    return _EPOCH + timedelta(milliseconds=ms)


def time_part(ms: int, part: str) -> int:
    """``hour_of_day``, ``minute_of_hour`` or ``day_of_week`` (Monday = 0) of ``ms`` in UTC."""
    moment = utc(ms)
    return {"hour_of_day": moment.hour, "minute_of_hour": moment.minute, "day_of_week": moment.weekday()}[
        part
    ]


def partition_of(ms: int) -> str:
    """The partition folder of an event time: ``date=YYYY-MM-DD/hour=HH`` (UTC)."""
    return f"date={utc(ms):%Y-%m-%d}/hour={utc(ms):%H}"


# --- derived features -------------------------------------------------------------------------


def derived_value(op: str, left: object, right: object) -> float | None:
    """A derived feature from its inputs, in Python floats: null in, null out; x / 0 is null."""
    if left is None or right is None:
        return None
    assert isinstance(left, int | float) and isinstance(right, int | float), (left, right)
    a, b = float(left), float(right)
    if op == "divide":
        return None if b == 0.0 else a / b
    return {"multiply": a * b, "add": a + b, "subtract": a - b}[op]


# --- files ------------------------------------------------------------------------------------


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (recursive), relative, with ``/``, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def read_meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / META_FILE).read_text()))


def _parts(folder: Path, ext: str) -> dict[str, Path]:
    found = {}
    for relative in files_under(folder):
        if relative.endswith(f"/{PART}.{ext}"):
            found[relative.rsplit("/", 1)[0]] = folder / relative
    return found


def column_types(meta: Mapping[str, Any]) -> dict[str, str]:
    """Column -> ``int``/``float``/``string``/``bool`` for the files with a header."""
    types = {"event_id": "string", "event_ms": "int"}
    types.update({feature["name"]: feature["type"] for feature in meta["features"]})
    types[meta["label"]] = "int"
    types["label_mature"] = "bool"
    return types


def parse_text(text: str, kind: str) -> object:
    """One CSV field of a declared type; an empty field is null (the sets hold no empty texts)."""
    if text == "":
        return None
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return {"true": True, "false": False}[text]
    return text


# --- readers ----------------------------------------------------------------------------------


def read_parquet_rows(folder: Path) -> tuple[Partitions, dict[str, list[str]]]:
    """Rows of every Parquet part by partition, and each part's column names."""
    rows: Partitions = {}
    columns: dict[str, list[str]] = {}
    for partition, path in _parts(folder, "parquet").items():
        table = pq.read_table(path)
        rows[partition] = table.to_pylist()
        columns[partition] = list(table.column_names)
    return rows, columns


def read_csv_rows(folder: Path, meta: Mapping[str, Any]) -> Partitions:
    """Rows of every CSV part with a header (which must list ``meta["columns"]``), typed."""
    types = column_types(meta)
    rows: Partitions = {}
    for partition, path in _parts(folder, "csv").items():
        records = list(csv.reader(io.StringIO(path.read_text(), newline="")))
        header, body = records[0], records[1:]
        if header != meta["columns"]:
            raise AssertionError(f"{path}: header {header}, expected {meta['columns']}")
        rows[partition] = [
            {name: parse_text(text, types[name]) for name, text in zip(header, record, strict=True)}
            for record in body
        ]
    return rows


def read_sagemaker_rows(folder: Path, meta: Mapping[str, Any]) -> Partitions:
    """Rows of every SageMaker CSV part (no header; the label, then the features), decoded back:
    codes to texts through ``meta["encodings"]`` (each text's code), ``0``/``1`` to booleans, empty
    fields to null."""
    label = meta["label"]
    features = meta["features"]
    encodings = meta["encodings"]
    rows: Partitions = {}
    for partition, path in _parts(folder, "csv").items():
        decoded = []
        for record in csv.reader(io.StringIO(path.read_text(), newline="")):
            if len(record) != 1 + len(features):
                raise AssertionError(f"{path}: {len(record)} fields, expected {1 + len(features)}: {record}")
            row: Row = {label: int(record[0])}
            for feature, text in zip(features, record[1:], strict=True):
                row[feature["name"]] = _decode(feature, text, encodings)
            decoded.append(row)
        rows[partition] = decoded
    return rows


def _decode(feature: Mapping[str, str], text: str, encodings: Mapping[str, Any]) -> object:
    if text == "":
        return None
    if feature["type"] == "string":
        encoding = encodings[feature["name"]]
        assert encoding["kind"] == "code", encoding
        texts = [t for t, code in encoding["codes"].items() if code == int(text)]
        assert len(texts) == 1, (feature["name"], text, texts)
        return texts[0]
    if feature["type"] == "bool":
        assert encodings[feature["name"]] == {"kind": "0/1"}, encodings[feature["name"]]
        return {"0": False, "1": True}[text]
    return parse_text(text, feature["type"])


def flatten(partitions: Partitions) -> list[Row]:
    return [row for partition in sorted(partitions) for row in partitions[partition]]
