"""Check raw records against their stream schema, vectorized, and type them.

Each row either comes out typed (declared fields in order, plus ``_event_ms`` and ``_arrival_ms``)
or is rejected with the first problem found: a missing required field, a wrong type, a string over
its ``max_length``, a number out of ``min``/``max``, an unreadable or impossible time. Messages are
built only for rejected rows, so a clean chunk costs a few column passes.

:func:`validate_one` is the same judgement for one plainly valid record, in plain Python (the
decision service's path: a few microseconds instead of a millisecond of column set-up). It answers
only when the answer is obvious and otherwise says "ask :func:`validate`", so the two never differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from clickwise.events.filters import filter_expr
from clickwise.events.readers import NESTED_MARK
from clickwise.spec import FieldDef, StreamDef, TimeDef
from clickwise.time import EPOCH_FORMATS, parse_time_column

EVENT_MS = "_event_ms"
ARRIVAL_MS = "_arrival_ms"
CONTENT_DIGEST = "_content_digest"
"""A 64-bit digest of a record's content (see :func:`content_digests`), for de-duplication only:
never stored, and comparable only within one process."""
_DIGEST_SEED = 0xC0_47E4_7
_POLARS = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
_MAX_SHOWN = 80


@dataclass(frozen=True)
class Rejected:
    """Rows (indices into the chunk) that failed, each with its reason and the field at fault.

    ``filtered`` counts rows left out by the stream's ``where`` (not errors).
    """

    rows: np.ndarray
    reasons: list[str]
    fields: list[str | None]
    filtered: int = 0
    valid_rows: np.ndarray | None = None
    """Indices into the chunk of the valid rows, in the order of the typed table."""


def validate(
    raw: pa.Table, stream: StreamDef, *, now_ms: int, digests: bool = False
) -> tuple[pa.Table, Rejected]:
    """Split a raw chunk into typed valid rows and rejected ones.

    ``now_ms`` is the moment of ingest: it stamps ``_arrival_ms`` (unless the stream takes arrival
    time from the data) and bounds how far in the future an event time may be. ``digests`` adds
    a ``_content_digest`` column (:func:`content_digests`) after the others.
    """
    # only declared fields are read: other keys are ignored, and some (a NUL inside a name) would
    # even collide with a declared one once polars has the columns
    declared = [name for name in raw.column_names if name in stream.fields]
    if declared:
        frame = pl.from_arrow(raw.select(declared))
    else:  # no declared field at all: every row is rejected for its missing fields
        frame = pl.DataFrame({"__rows__": np.zeros(raw.num_rows, dtype=np.int8)})
    assert isinstance(frame, pl.DataFrame)
    kept = np.arange(raw.num_rows, dtype=np.int64)
    if stream.where is not None:
        frame, kept = _apply_where(frame, stream)
    rows = frame.height
    typed: dict[str, pl.Series] = {}
    checks: list[tuple[pl.Series, str, str]] = []
    for name, spec in stream.fields.items():
        source = (
            frame.get_column(name)
            if name in frame.columns
            else pl.Series(name, [None] * rows, dtype=pl.String)
        )
        value, field_checks = _check_field(name, spec, source)
        typed[name] = value
        checks.extend(field_checks)
    event_ms, time_checks = _check_time(stream.time, frame, rows, now_ms, required=True)
    checks.extend(time_checks)
    if stream.arrival_time is not None:
        arrival_ms, arrival_checks = _check_time(stream.arrival_time, frame, rows, now_ms, required=False)
        checks.extend(arrival_checks)
        arrival_ms = arrival_ms.fill_null(now_ms)
    else:
        arrival_ms = pl.Series(ARRIVAL_MS, np.full(rows, now_ms, dtype=np.int64))
    problem = _first_problem(rows, [mask for mask, _, _ in checks])
    bad = np.flatnonzero(problem >= 0)
    rejected = _describe(bad, problem, checks, frame)
    rejected = Rejected(
        kept[rejected.rows], rejected.reasons, rejected.fields, raw.num_rows - rows, kept[problem < 0]
    )
    good = pl.DataFrame({**typed, EVENT_MS: event_ms, ARRIVAL_MS: arrival_ms})
    if len(bad):
        good = good.filter(pl.Series(problem < 0))
    if digests:
        good = good.with_columns(content_digests(good, stream))
    return _to_arrow(good, stream), rejected


def content_fields(stream: StreamDef) -> list[str]:
    """What makes two records of a stream "the same record": every declared field but the time
    fields, and the event time (as a moment: ``"2024-01-01T08:00:00+08:00"`` and
    ``"2024-01-01T00:00:00Z"`` are the same). Arrival time is left out, so a re-delivery of a
    record is the same record; enrichments are left out, as they are computed from the fields."""
    times = {stream.time.field} | ({stream.arrival_time.field} if stream.arrival_time is not None else set())
    return [name for name in stream.fields if name not in times] + [EVENT_MS]


def content_digests(frame: pl.DataFrame, stream: StreamDef) -> pl.Series:
    """A 64-bit digest of each row's :func:`content_fields` (typed as the stream declares them).

    Two records share a digest when their content is equal, and otherwise with probability
    2**-64; digests are comparable within one process only (polars may change its hash).
    """
    fields = content_fields(stream)
    types = {name: _POLARS[spec.type] for name, spec in stream.fields.items()} | {EVENT_MS: pl.Int64}
    columns = [
        pl.col(name).cast(types[name])
        if name in frame.columns
        else pl.lit(None, dtype=types[name]).alias(name)
        for name in fields
    ]
    return frame.select(columns).hash_rows(seed=_DIGEST_SEED).alias(CONTENT_DIGEST)


_SAFE_INT = 2**53  # beyond this, int and float comparisons differ between Python and the columns


def validate_one(record: Mapping[str, Any], stream: StreamDef, *, now_ms: int) -> dict[str, Any] | None:
    """The typed row :func:`validate` makes of ``record`` when the record is plainly valid: every
    value already of its field's type (an int may stand for a float), within its bounds, times as
    epoch numbers. ``None`` means "not obviously valid": call :func:`validate` for the verdict and
    the reason. A stream with ``where`` always answers ``None``."""
    if stream.where is not None:
        return None
    row: dict[str, Any] = {}
    for name, spec in stream.fields.items():
        value = record.get(name)
        if value is None:
            if spec.required:
                return None
            row[name] = None
            continue
        kind = spec.type
        if kind == "string":
            if type(value) is not str or value.startswith(NESTED_MARK):
                return None
            if spec.max_length is not None:
                try:
                    if len(value.encode()) > spec.max_length:
                        return None
                except UnicodeEncodeError:
                    return None
        elif kind == "bool":
            if type(value) is not bool:
                return None
        else:
            if type(value) is int:
                if not -_SAFE_INT < value < _SAFE_INT:
                    return None
                if kind == "float":
                    value = float(value)
            elif type(value) is float and kind == "float":
                if value != value or value in (float("inf"), float("-inf")):
                    return None
            else:
                return None
            if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
                return None
        row[name] = value
    event_ms = _epoch_one(record.get(stream.time.field), stream.time, now_ms)
    if event_ms is None:
        return None
    arrival_ms: int | None = now_ms
    if stream.arrival_time is not None and record.get(stream.arrival_time.field) is not None:
        arrival_ms = _epoch_one(record.get(stream.arrival_time.field), stream.arrival_time, now_ms)
        if arrival_ms is None:
            return None
    row[EVENT_MS] = event_ms
    row[ARRIVAL_MS] = arrival_ms
    return row


def _epoch_one(value: Any, time: TimeDef, now_ms: int) -> int | None:
    """Epoch ms of a plain integer time in an epoch format that is possible; else ``None``."""
    scale = EPOCH_FORMATS.get(time.format)
    if scale is None or type(value) is not int or not -_SAFE_INT < value < _SAFE_INT:
        return None
    mul, div = scale
    moment = (value * mul) // div
    if moment < time.earliest_ms or moment > now_ms + time.max_future:
        return None
    return moment


def _apply_where(frame: pl.DataFrame, stream: StreamDef) -> tuple[pl.DataFrame, np.ndarray]:
    """Keep the rows matching ``where``, compared on the field's declared type."""
    assert stream.where is not None
    name = stream.where.field
    source = frame.get_column(name) if name in frame.columns else pl.Series(name, [None] * frame.height)
    typed = pl.DataFrame({name: _coerce(source, stream.fields[name].type)})
    keep = typed.select(filter_expr(stream.where)).to_series().to_numpy()
    return frame.filter(pl.Series(keep)), np.flatnonzero(keep).astype(np.int64)


def _check_field(
    name: str, spec: FieldDef, source: pl.Series
) -> tuple[pl.Series, list[tuple[pl.Series, str, str]]]:
    nested = source.str.starts_with(NESTED_MARK).fill_null(False) if source.dtype == pl.String else None
    value = _coerce(source, spec.type)
    checks: list[tuple[pl.Series, str, str]] = []
    wrong = source.is_not_null() & value.is_null()
    if nested is not None:
        wrong = wrong | nested
    checks.append((wrong, "type", name))
    if spec.required:
        checks.append((source.is_null(), "missing", name))
    if spec.max_length is not None:
        checks.append(((value.str.len_bytes() > spec.max_length).fill_null(False), "length", name))
    if spec.type == "float":
        checks.append(
            (value.is_nan().fill_null(False) | value.is_infinite().fill_null(False), "finite", name)
        )
    if spec.min is not None:
        checks.append(((value < spec.min).fill_null(False), "min", name))
    if spec.max is not None:
        checks.append(((value > spec.max).fill_null(False), "max", name))
    return value.alias(name), checks


def _coerce(source: pl.Series, kind: str) -> pl.Series:
    """Cast leniently (``"12"`` is an int); a value that does not fit becomes null."""
    target = _POLARS[kind]
    dtype = source.dtype
    if dtype == pl.Null:
        return pl.Series(source.name, [None] * len(source), dtype=target)
    if kind == "string":
        if dtype == pl.String:
            return source
        if dtype.is_nested() or dtype == pl.Object:
            return pl.Series(source.name, [None] * len(source), dtype=pl.String)
        return source.cast(pl.String, strict=False)
    if dtype == pl.String:
        text = source.str.strip_chars()
        if kind == "bool":
            lowered = text.str.to_lowercase()
            return (
                pl.DataFrame({"t": lowered})
                .select(
                    pl.when(pl.col("t").is_in(["true", "1", "yes"]))
                    .then(True)
                    .when(pl.col("t").is_in(["false", "0", "no"]))
                    .then(False)
                    .otherwise(None)
                    .alias(source.name)
                )
                .to_series()
            )
        if kind == "int":
            return _whole(text.cast(pl.Int64, strict=False), text.cast(pl.Float64, strict=False))
        return text.cast(pl.Float64, strict=False)
    if dtype.is_nested() or dtype == pl.Object:
        return pl.Series(source.name, [None] * len(source), dtype=target)
    if kind == "int" and dtype.is_float():
        return _whole(pl.Series(source.name, [None] * len(source), dtype=pl.Int64), source.cast(pl.Float64))
    if kind == "bool" and dtype != pl.Boolean:
        return (
            source.cast(pl.Boolean, strict=False) if dtype.is_integer() else source.cast(target, strict=False)
        )
    if kind in ("int", "float") and dtype == pl.Boolean:
        return pl.Series(source.name, [None] * len(source), dtype=target)
    return source.cast(target, strict=False)


def _whole(as_int: pl.Series, as_float: pl.Series) -> pl.Series:
    """Integers, taking floats only when they are whole (``3.0`` yes, ``3.5`` no)."""
    frame = pl.DataFrame({"i": as_int, "f": as_float})
    whole = pl.col("f").is_finite() & (pl.col("f") == pl.col("f").floor()) & (pl.col("f").abs() < 2.0**53)
    result = pl.coalesce(pl.col("i"), pl.when(whole).then(pl.col("f").cast(pl.Int64, strict=False)))
    return frame.select(result.alias(as_int.name)).to_series()


def _check_time(
    time: TimeDef, frame: pl.DataFrame, rows: int, now_ms: int, *, required: bool
) -> tuple[pl.Series, list[tuple[pl.Series, str, str]]]:
    raw = (
        frame.get_column(time.field) if time.field in frame.columns else pl.Series(time.field, [None] * rows)
    )
    if raw.dtype == pl.String:
        raw = pl.Series(time.field, raw.str.strip_chars())
    if raw.dtype.is_nested() or raw.dtype == pl.Object:  # a list or an object is never a time
        parsed = pl.Series(time.field, [None] * rows, dtype=pl.Int64)
    else:
        parsed = parse_time_column(raw, time.format, time.timezone)
    name = EVENT_MS if required else ARRIVAL_MS
    unreadable = raw.is_not_null() & parsed.is_null()
    impossible = ((parsed < time.earliest_ms) | (parsed > now_ms + time.max_future)).fill_null(False)
    return parsed.alias(name), [(unreadable, "time", time.field), (impossible, "time_range", time.field)]


def _first_problem(rows: int, masks: list[pl.Series]) -> np.ndarray:
    """For each row, the index of its first failing check, or -1."""
    problem = np.full(rows, -1, dtype=np.int32)
    for index in range(len(masks) - 1, -1, -1):
        hit = masks[index].to_numpy()
        if hit.any():
            problem[hit] = index
    return problem


def _describe(
    bad: np.ndarray, problem: np.ndarray, checks: list[tuple[pl.Series, str, str]], frame: pl.DataFrame
) -> Rejected:
    reasons: list[str] = []
    fields: list[str | None] = []
    for row in bad.tolist():
        _, kind, field = checks[problem[row]]
        value = frame.get_column(field)[row] if field in frame.columns else None
        reasons.append(_reason(kind, field, value))
        fields.append(field)
    return Rejected(bad.astype(np.int64), reasons, fields)


def _reason(kind: str, field: str, value: object) -> str:
    shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = shown[:_MAX_SHOWN] + f"... ({len(str(value))} chars)"
    if isinstance(value, str) and value.startswith(NESTED_MARK):
        shown = "a JSON " + ("object" if value[len(NESTED_MARK) :].startswith("{") else "list")
    messages = {
        "type": f"wrong type for {field!r}: got {shown}",
        "missing": f"missing required field {field!r}",
        "length": f"{field!r} is too long: {len(str(value).encode())} bytes, more than its max_length",
        "finite": f"{field!r} is not a finite number: {shown}",
        "min": f"{field!r} is below its minimum: {shown}",
        "max": f"{field!r} is above its maximum: {shown}",
        "time": f"unreadable time in {field!r}: {shown}",
        "time_range": f"impossible time in {field!r}: {shown}",
    }
    return messages[kind]


def _to_arrow(good: pl.DataFrame, stream: StreamDef) -> pa.Table:
    table = good.to_arrow()
    arrow = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    fields = [pa.field(name, arrow[spec.type]) for name, spec in stream.fields.items()]
    fields += [
        pa.field(EVENT_MS, pa.int64(), nullable=False),
        pa.field(ARRIVAL_MS, pa.int64(), nullable=False),
    ]
    if CONTENT_DIGEST in good.columns:
        fields.append(pa.field(CONTENT_DIGEST, pa.uint64(), nullable=False))
    columns = [table.column(f.name).cast(f.type) for f in fields]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
