"""The pipeline's features for exposure events, as of each event's own time.

One function serves the backfill, the streaming training rows and the decision service: table
features read the lookup tables as of the event's time (events at exactly that time are not
included), event features copy the (enriched) event's fields, time parts come from its event
time on the clock of the feature's zone (default: the zone the exposure stream declares), and
derived features combine features listed before them. The same events and tables therefore give
the same features online and offline.

:meth:`FeatureSet.compute_one` is the one-event form the decision service uses: the same values
as :meth:`FeatureSet.compute` (property-tested), read key by key instead of through columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from clickwise.errors import ClickwiseError
from clickwise.events.validate import EVENT_MS
from clickwise.spec import Pipeline
from clickwise.spec.features import DerivedFeature, EventFeature, TableFeature
from clickwise.tables.engine import Tables
from clickwise.tables.hashing import hash_text
from clickwise.tables.runs import KEY_SEPARATOR, frame_key_hashes
from clickwise.time import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND, parse_zone


class FeatureError(ClickwiseError):
    """Features that cannot be computed (no label to name the exposure stream, missing fields)."""


@dataclass(frozen=True)
class FeatureInfo:
    """A feature's name, where it comes from and the type of its values."""

    name: str
    kind: str  # "table", "event", "time" or "derived"
    type: str  # "int", "float", "string" or "bool"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "type": self.type}


_FIELD_TYPES = {"string": "string", "int": "int", "float": "float", "bool": "bool"}


class FeatureSet:
    """How to compute every feature of a pipeline for events of its exposure stream."""

    def __init__(self, pipeline: Pipeline) -> None:
        if pipeline.label is None:
            raise FeatureError("the pipeline has no label, so no exposure stream to compute features for")
        self.pipeline = pipeline
        self.exposure = pipeline.label.exposure
        self._fields = pipeline.stream_fields(self.exposure)
        self.infos = [self._info(name) for name in pipeline.features]
        # table features that read the same table with the same key share one bulk read
        self._reads: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for name, feature in pipeline.features.items():
            if isinstance(feature, TableFeature):
                table = pipeline.tables[feature.table]
                mapping = feature.key if feature.key is not None else {k: k for k in table.key}
                event_fields = tuple(mapping[k] for k in table.key)
                self._reads.setdefault((feature.table, event_fields), []).append(name)
        fields: dict[str, None] = {}
        for (_, key_fields), _names in self._reads.items():
            fields.update(dict.fromkeys(key_fields))
        for feature in pipeline.features.values():
            if isinstance(feature, EventFeature) and feature.event is not None:
                fields[feature.event] = None
        self._inputs = list(fields)
        self._needed = [EVENT_MS, *self._inputs]  # what every event must carry
        declared = pipeline.streams[self.exposure].time.timezone
        self._zones = {
            name: parse_zone(feature.timezone or declared or "UTC")
            for name, feature in pipeline.features.items()
            if isinstance(feature, EventFeature) and feature.time_part is not None
        }
        """The zone on whose clock each time part is read."""

    @property
    def names(self) -> list[str]:
        return [info.name for info in self.infos]

    def tables(self) -> list[str]:
        """The tables the features read."""
        return list(dict.fromkeys(table for table, _ in self._reads))

    def input_fields(self) -> list[str]:
        """Exposure fields the features read (besides the event time)."""
        return list(self._inputs)

    def compute(self, tables: Tables, events: pl.DataFrame) -> dict[str, pa.Array]:
        """Every feature for each event (rows of the exposure stream with ``_event_ms``), as of the
        event's own time."""
        missing = [f for f in self._needed if f not in events.columns]
        if missing:
            raise FeatureError(f"the {self.exposure!r} events lack the fields {missing} the features read")
        as_of_ms = events.get_column(EVENT_MS).to_numpy().astype(np.int64, copy=False)
        values: dict[str, pa.Array] = {}
        for (table, key_fields), names in self._reads.items():
            key_hash, known = frame_key_hashes(events, key_fields)
            columns = tables.evaluate_batch(table, key_hash, as_of_ms, known)
            for name in names:
                feature = self.pipeline.features[name]
                assert isinstance(feature, TableFeature)
                values[name] = columns[feature.aggregation].to_arrow()
        for name, feature in self.pipeline.features.items():
            if isinstance(feature, EventFeature):
                values[name] = _event_feature(feature, events, as_of_ms, self._zones.get(name, dt.UTC))
            elif isinstance(feature, DerivedFeature):
                values[name] = _derived(feature, values)
        return {name: values[name] for name in self.pipeline.features}

    def compute_one(self, tables: Tables, event: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`compute` for one event given as a dict (typed and enriched, with ``_event_ms``):
        the same values as Python scalars, in the order of the pipeline's features."""
        missing = [f for f in self._needed if f not in event]
        if missing:
            raise FeatureError(f"the {self.exposure!r} event lacks the fields {missing} the features read")
        as_of_ms = int(event[EVENT_MS])
        values: dict[str, Any] = {}
        for (table, key_fields), names in self._reads.items():
            parts = [event[field] for field in key_fields]
            if all(type(part) is str or type(part) is int for part in parts):
                key_hash: int | None = hash_text(KEY_SEPARATOR.join(str(part) for part in parts))
            elif any(part is None for part in parts):
                key_hash = None  # an incomplete key has no events
            else:  # floats and booleans: the text of the column path is the reference
                frame = pl.DataFrame({field: [event[field]] for field in key_fields})
                hashed, known = frame_key_hashes(frame, key_fields)
                key_hash = int(hashed[0]) if known[0] else None
            read = tables.read_one(table, key_hash, as_of_ms)
            for name in names:
                feature = self.pipeline.features[name]
                assert isinstance(feature, TableFeature)
                values[name] = read[feature.aggregation]
        for name, feature in self.pipeline.features.items():
            if isinstance(feature, EventFeature):
                values[name] = (
                    event[feature.event]
                    if feature.event is not None
                    else _time_part_one(feature, _local_ms_one(as_of_ms, self._zones[name]))
                )
            elif isinstance(feature, DerivedFeature):
                values[name] = _derived_one(feature, values)
        return {name: values[name] for name in self.pipeline.features}

    def _info(self, name: str) -> FeatureInfo:
        feature = self.pipeline.features[name]
        if isinstance(feature, TableFeature):
            return FeatureInfo(name, "table", self._aggregation_type(feature))
        if isinstance(feature, EventFeature):
            if feature.time_part is not None:
                return FeatureInfo(name, "time", "int")
            assert feature.event is not None
            return FeatureInfo(name, "event", _FIELD_TYPES.get(self._fields[feature.event], "string"))
        return FeatureInfo(name, "derived", "float")

    def _aggregation_type(self, feature: TableFeature) -> str:
        agg = self.pipeline.tables[feature.table].aggregations[feature.aggregation]
        if agg.op in ("count", "distinct_count", "time_since_last"):
            return "int"
        if agg.op in ("mean", "ratio"):
            return "float"
        source = self.pipeline.stream_fields(agg.stream or "").get(agg.field or "", "float")
        if agg.op == "sum":
            return "float" if source == "float" else "int"
        return _FIELD_TYPES.get(source, "string")


def _event_feature(
    feature: EventFeature, events: pl.DataFrame, as_of_ms: np.ndarray, zone: dt.tzinfo
) -> pa.Array:
    if feature.event is not None:
        column = events.get_column(feature.event).to_arrow()
        if pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
            return column.cast(pa.string())
        return column
    local_ms = _local_ms(as_of_ms, zone)
    part = feature.time_part
    if part == "hour_of_day":
        value = (local_ms // MS_PER_HOUR) % 24
    elif part == "minute_of_hour":
        value = (local_ms // MS_PER_MINUTE) % 60
    else:  # day_of_week, Monday = 0 (1970-01-01 was a Thursday)
        value = (local_ms // MS_PER_DAY + 3) % 7
    return pa.array(value.astype(np.int32))


def _local_ms(epoch_ms: np.ndarray, zone: dt.tzinfo) -> np.ndarray:
    """The wall-clock times of ``zone`` at each instant, as if they were UTC epoch ms (so that
    hours, minutes and days come out by integer division); UTC costs nothing."""
    if zone is dt.UTC:
        return epoch_ms
    if isinstance(zone, dt.timezone):  # a fixed offset
        return epoch_ms + _offset_ms(zone, 0)
    instants = pl.Series(epoch_ms).cast(pl.Datetime("ms", "UTC"))
    wall = instants.dt.convert_time_zone(str(zone)).dt.replace_time_zone(None)
    return wall.dt.epoch("ms").to_numpy().astype(np.int64, copy=False)


def _local_ms_one(epoch_ms: int, zone: dt.tzinfo) -> int:
    """:func:`_local_ms` for one instant."""
    return epoch_ms if zone is dt.UTC else epoch_ms + _offset_ms(zone, epoch_ms)


def _offset_ms(zone: dt.tzinfo, epoch_ms: int) -> int:
    moment = dt.datetime.fromtimestamp(epoch_ms // MS_PER_SECOND, zone)
    offset = moment.utcoffset() or dt.timedelta(0)
    return int(offset.total_seconds() * MS_PER_SECOND)


def _derived(feature: DerivedFeature, values: dict[str, pa.Array]) -> pa.Array:
    """Arithmetic in float64; null in, null out; dividing by zero gives null."""
    left, right = (values[name].cast(pa.float64()) for name in feature.inputs)
    if feature.op == "divide":
        safe = pc.if_else(pc.equal(right, 0.0), pa.scalar(None, pa.float64()), right)
        return pc.divide(left, safe)
    operation = {"multiply": pc.multiply, "add": pc.add, "subtract": pc.subtract}[feature.op]
    return operation(left, right)


def _time_part_one(feature: EventFeature, as_of_ms: int) -> int:
    part = feature.time_part
    if part == "hour_of_day":
        return (as_of_ms // MS_PER_HOUR) % 24
    if part == "minute_of_hour":
        return (as_of_ms // MS_PER_MINUTE) % 60
    return (as_of_ms // MS_PER_DAY + 3) % 7


def _derived_one(feature: DerivedFeature, values: Mapping[str, Any]) -> float | None:
    """:func:`_derived` for one row."""
    left, right = (values[name] for name in feature.inputs)
    if left is None or right is None:
        return None
    left, right = float(left), float(right)
    if feature.op == "divide":
        return None if right == 0.0 else left / right
    if feature.op == "multiply":
        return left * right
    return left + right if feature.op == "add" else left - right
