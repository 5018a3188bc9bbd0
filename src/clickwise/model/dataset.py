"""Reading a training set written by clickwise: ``<data>/_dataset.json`` and its files, in any of
the layouts ``clickwise dataset`` writes (Parquet, CSV with a header, SageMaker CSV with its keys)
and the rows ``clickwise run`` emits (Parquet).

Columns: ``event_id``, ``event_ms``, one column per pipeline feature, the label column and
``label_mature`` (and ``correction`` in rows emitted by ``clickwise run``: corrections are applied).
A SageMaker set holds the label and the features as numbers in ``data/`` and each row's id, time
and maturity in ``keys/``; its texts are decoded back through the codes listed in ``_dataset.json``.
Only rows with a mature label are read: an immature row's label may still flip to 1,
so learning from it would teach the model that recent impressions do not get clicked.
The manifest's fingerprint must equal the pipeline's; a folder without a manifest is accepted and
its feature kinds are taken from the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clickwise.dataset.stream import CORRECTION, read_rows
from clickwise.model._io import open_existing, read_json
from clickwise.model.errors import FingerprintMismatchError, TrainingDataError
from clickwise.spec import DerivedFeature, Pipeline, TableFeature
from clickwise.storage import Root

MANIFEST = "_dataset.json"
EVENT_ID, EVENT_MS, MATURE = "event_id", "event_ms", "label_mature"

FeatureKind = Literal["table", "event", "derived"]
FeatureType = Literal["int", "float", "string", "bool"]


@dataclass(frozen=True)
class FeatureSpec:
    """A feature column: its pipeline kind and its value type (from the Parquet schema)."""

    name: str
    kind: FeatureKind
    type: FeatureType

    @property
    def categorical(self) -> bool:
        """Strings and booleans are learned as categories; numbers as ordered values."""
        return self.type in ("string", "bool")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "type": self.type, "categorical": self.categorical}


@dataclass(frozen=True)
class TrainingSet:
    """Mature rows of a training set, sorted by ``(event_ms, event_id)``."""

    url: str
    table: pa.Table
    features: tuple[FeatureSpec, ...]
    label: str
    horizon_ms: int
    manifest: dict[str, Any] | None
    rows_read: int
    extra: tuple[str, ...] = field(default=())

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def event_ms(self) -> np.ndarray:
        return self.table.column(EVENT_MS).to_numpy().astype(np.int64, copy=False)

    def labels(self) -> np.ndarray:
        return self.table.column(self.label).to_numpy().astype(np.int8, copy=False)

    def feature(self, name: str) -> FeatureSpec:
        return next(spec for spec in self.features if spec.name == name)


def pipeline_kind(pipeline: Pipeline, name: str) -> FeatureKind:
    """``table``, ``derived`` or ``event`` (event fields and time parts)."""
    definition = pipeline.features[name]
    if isinstance(definition, TableFeature):
        return "table"
    return "derived" if isinstance(definition, DerivedFeature) else "event"


def model_features(pipeline: Pipeline) -> list[str]:
    """The features the model learns from: ``model.features``, else every pipeline feature."""
    return list(pipeline.model.features or pipeline.features)


def read_training_set(
    pipeline: Pipeline, data: str, *, features: Sequence[str] | None = None, extra: Sequence[str] = ()
) -> TrainingSet:
    """Read the mature rows of ``data`` with the given feature columns (default: the model's) and
    ``extra`` columns (kept in the table, not described as features)."""
    if pipeline.label is None:
        raise TrainingDataError(f"pipeline {pipeline.name!r} has no 'label:' section; a model needs one")
    label = pipeline.label.name
    wanted = list(features if features is not None else model_features(pipeline))
    if not wanted:
        raise TrainingDataError(f"pipeline {pipeline.name!r} has no features; add a 'features:' section")
    root = open_existing(data, TrainingDataError, "training set")
    manifest = read_json(root, MANIFEST)
    if manifest is not None:
        _check_manifest(manifest, pipeline, data)
    extra = tuple(name for name in extra if name not in wanted)
    columns = [EVENT_ID, EVENT_MS, *wanted, *extra, label, MATURE]
    written_as = (manifest or {}).get("format", "parquet")
    if written_as == "csv":
        table = _read_csv(root, _need(manifest), columns, data)
    elif written_as == "sagemaker-csv":
        table = _read_sagemaker(root, _need(manifest), columns, data)
    else:
        table = _read_parquet(root, columns, data)
    rows_read = table.num_rows
    table = table.filter(pc.fill_null(table.column(MATURE), False))
    table = table.sort_by([(EVENT_MS, "ascending"), (EVENT_ID, "ascending")])
    _check_label(table, label, data)
    kinds = _manifest_kinds(manifest)
    specs = tuple(
        FeatureSpec(name, kinds.get(name) or pipeline_kind(pipeline, name), _arrow_type(table, name, data))
        for name in wanted
    )
    return TrainingSet(data, table, specs, label, pipeline.label.horizon, manifest, rows_read, extra)


def _need(manifest: dict[str, Any] | None) -> dict[str, Any]:
    assert manifest is not None  # a format other than Parquet is only known from the manifest
    return manifest


def _missing(names: Sequence[str], columns: Sequence[str], data: str) -> None:
    missing = [name for name in columns if name not in names]
    if missing:
        raise TrainingDataError(
            f"training set {data!r} lacks columns {missing}; it was written for another pipeline or by an "
            f"older writer. Rebuild it with `clickwise dataset -p <pipeline>`"
        )


def _read_parquet(root: Root, columns: list[str], data: str) -> pa.Table:
    files = [
        path for path in root.list_files(suffix=".parquet") if not path.rsplit("/", 1)[-1].startswith("_")
    ]
    if not files:
        hint = "build one with `clickwise dataset` first"
        if root.list_files(suffix=".csv"):
            hint = (
                f"it holds CSV files but no {MANIFEST}: pass the folder that holds {MANIFEST} (for a "
                "SageMaker set, the parent of its data/ channel)"
            )
        raise TrainingDataError(f"training set {data!r} has no Parquet files; {hint}")
    schema_names = pq.read_schema(root.path(files[0]), filesystem=root.fs).names
    _missing(schema_names, columns, data)
    if CORRECTION in schema_names:  # streaming rows: a correction replaces its exposure's row
        return _plain_strings(read_rows(root, "").to_arrow().select(columns))
    return root.read_parquet(files, columns=columns)


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


def _declared_types(manifest: dict[str, Any]) -> dict[str, pa.DataType]:
    types = {EVENT_ID: pa.string(), EVENT_MS: pa.int64(), manifest["label"]: pa.int8(), MATURE: pa.bool_()}
    types.update({item["name"]: _ARROW_TYPES[item["type"]] for item in manifest["features"]})
    return types


def _read_csv_file(root: Root, path: str, convert: pacsv.ConvertOptions, names: list[str] | None) -> pa.Table:
    read = pacsv.ReadOptions(column_names=names) if names is not None else pacsv.ReadOptions()
    with root.fs.open_input_stream(root.path(path)) as stream:
        return pacsv.read_csv(stream, read_options=read, convert_options=convert)


def _read_csv(root: Root, manifest: dict[str, Any], columns: list[str], data: str) -> pa.Table:
    """A CSV set with a header: every string quoted, a null an empty field."""
    _missing(manifest["columns"], columns, data)
    types = _declared_types(manifest)
    convert = pacsv.ConvertOptions(
        column_types={name: types[name] for name in columns},
        include_columns=columns,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    files = manifest.get("files") or root.list_files(suffix=".csv")
    return _concat([_read_csv_file(root, path, convert, None) for path in files], columns, types)


def _read_sagemaker(root: Root, manifest: dict[str, Any], columns: list[str], data: str) -> pa.Table:
    """A SageMaker set: numbers in ``data/``, row keys in ``keys/`` (same rows, same order)."""
    key_files = manifest.get("key_files")
    if key_files is None or len(key_files) != len(manifest["files"]):
        raise TrainingDataError(
            f"training set {data!r} is a SageMaker set without the keys/ folder (each row's id and time), "
            "written by an older clickwise; rebuild it with `clickwise dataset --sagemaker`"
        )
    names = list(manifest["columns"])
    _missing([*names, EVENT_ID, EVENT_MS, MATURE], columns, data)
    types = _declared_types(manifest)
    coded = {name: pa.int64() if t in (pa.string(), pa.bool_()) else t for name, t in types.items()}
    convert = pacsv.ConvertOptions(column_types={name: coded[name] for name in names}, null_values=[""])
    parts = []
    for path, keys_path in zip(manifest["files"], key_files, strict=True):
        numbers = _read_csv_file(root, path, convert, names)
        keys = root.read_parquet([keys_path], columns=[EVENT_ID, EVENT_MS, MATURE])
        if keys.num_rows != numbers.num_rows:
            raise TrainingDataError(
                f"training set {data!r}: {path} has {numbers.num_rows} rows but {keys_path} has "
                f"{keys.num_rows}; the set is damaged, rebuild it"
            )
        for name in keys.column_names:
            numbers = numbers.append_column(name, keys.column(name))
        parts.append(numbers)
    table = _concat(parts, [*names, EVENT_ID, EVENT_MS, MATURE], coded)
    decoded = {}
    for name in columns:
        column = table.column(name)
        if name in names and types[name] == pa.string():
            column = _decode(column, manifest, name, data)
        decoded[name] = column.cast(types[name])
    return pa.table(decoded)


def _decode(codes: pa.ChunkedArray, manifest: dict[str, Any], name: str, data: str) -> pa.ChunkedArray:
    """Codes back to texts through the set's list (texts that share a code read as the first)."""
    listed = manifest.get("encodings", {}).get(name, {}).get("codes")
    if not isinstance(listed, dict):
        raise TrainingDataError(
            f"training set {data!r}: {MANIFEST} lists no codes for {name!r}; rebuild it with "
            "`clickwise dataset --sagemaker`"
        )
    by_code: dict[int, str] = {}
    for text, code in sorted(listed.items()):
        by_code.setdefault(int(code), text)
    value_set = pa.array(list(by_code), pa.int64())
    positions = pc.index_in(codes, value_set=value_set)
    unknown = positions.null_count - codes.null_count
    if unknown:
        raise TrainingDataError(
            f"training set {data!r}: {unknown} values of {name!r} have codes that {MANIFEST} does not "
            "list; the set is damaged, rebuild it"
        )
    return pc.take(pa.array(list(by_code.values()), pa.string()), positions)


def _concat(parts: list[pa.Table], columns: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    if not parts:
        return pa.schema([(name, types[name]) for name in columns]).empty_table()
    return pa.concat_tables(parts).select(columns)


def _plain_strings(table: pa.Table) -> pa.Table:
    """Polars hands strings over as views; the rest of the package expects plain Arrow strings."""
    fields = [
        pa.field(f.name, pa.string())
        if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type)
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _check_manifest(manifest: dict[str, Any], pipeline: Pipeline, data: str) -> None:
    expected = pipeline.fingerprint()
    found = manifest.get("fingerprint")
    if found != expected:
        raise FingerprintMismatchError(
            f"training set {data!r} was built from pipeline {manifest.get('pipeline')!r} with fingerprint "
            f"{found!r}, but pipeline {pipeline.name!r} has fingerprint {expected!r}: its streams, tables, "
            "features or label differ. Rebuild the training set with this pipeline, or train with the "
            "pipeline file the set was built from"
        )


def _manifest_kinds(manifest: dict[str, Any] | None) -> dict[str, FeatureKind]:
    if manifest is None:
        return {}
    return {
        item["name"]: item["kind"]
        for item in manifest.get("features", [])
        if isinstance(item, dict) and item.get("kind") in ("table", "event", "derived")
    }


def _check_label(table: pa.Table, label: str, data: str) -> None:
    column = table.column(label)
    if column.null_count:
        raise TrainingDataError(
            f"training set {data!r}: {column.null_count} mature rows have a null {label!r}"
        )
    values = pc.unique(column.cast(pa.int64())).to_pylist()
    if not set(values) <= {0, 1}:
        raise TrainingDataError(f"training set {data!r}: label {label!r} must be 0/1, found {sorted(values)}")


def _arrow_type(table: pa.Table, name: str, data: str) -> FeatureType:
    kind = table.schema.field(name).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind) or pa.types.is_null(kind) or pa.types.is_decimal(kind):
        return "float"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    raise TrainingDataError(
        f"training set {data!r}: feature {name!r} has type {kind}, which a model cannot use; "
        "features must be numbers, strings or booleans"
    )
