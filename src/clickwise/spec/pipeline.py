"""The pipeline: one file that defines streams, tables, features, label, model and decision.

Cross-references (a table reading a stream that does not exist, a feature naming a missing
aggregation, ...) are checked here, after each part is valid on its own, so that every message can
name the exact field path.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import orjson
from pydantic import model_validator

from clickwise.spec.features import (
    AgentEnrichment,
    DecisionDef,
    DerivedFeature,
    Enrichment,
    EventFeature,
    FeatureDef,
    GeoEnrichment,
    LabelDef,
    ModelDef,
    TableFeature,
)
from clickwise.spec.streams import StreamDef
from clickwise.spec.tables import TableDef, dump_for_fingerprint
from clickwise.spec.types import Definition, Duration, Name


class StorageDef(Definition):
    """Where state lives. ``root`` is a folder or ``s3://bucket/prefix``; ``endpoint`` an S3 API URL."""

    root: str = "./clickwise-data"
    endpoint: str | None = None
    region: str | None = None


class CrossReferenceError(ValueError):
    """A definition names something that is not defined; ``path`` says where."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


class Pipeline(Definition):
    """A whole pipeline definition (frozen). Build one with :func:`clickwise.spec.load_pipeline`."""

    version: Literal[1] = 1
    name: Name
    description: str = ""
    storage: StorageDef = StorageDef()
    allowed_lateness: Duration = 120_000
    streams: dict[Name, StreamDef]
    enrichments: dict[Name, Enrichment] = {}
    tables: dict[Name, TableDef] = {}
    features: dict[Name, FeatureDef] = {}
    label: LabelDef | None = None
    model: ModelDef = ModelDef()
    decision: DecisionDef | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> Pipeline:
        _check_streams(self)
        _check_tables(self)
        _check_features(self)
        _check_label_model_decision(self)
        return self

    # --- derived views -------------------------------------------------------------------------

    def stream_fields(self, stream: str) -> dict[str, str]:
        """Every field a stream's stored events have: declared, enriched and joined, with types."""
        fields = self.stored_fields(stream)
        for join in self.streams[stream].joins:
            for output, aggregation in join.take.items():
                agg = self.tables[join.table].aggregations[aggregation]
                source = self.stored_fields(agg.stream).get(agg.field or "") if agg.stream else None
                keeps_type = agg.op in ("first", "last", "min", "max") and source is not None
                fields[output] = source if keeps_type and source is not None else "float"
        return fields

    def stored_fields(self, stream: str) -> dict[str, str]:
        """Declared and enriched fields (no joins), with types."""
        definition = self.streams[stream]
        fields: dict[str, str] = {name: spec.type for name, spec in definition.fields.items()}
        for enrichment_name in definition.enrich:
            enrichment = self.enrichments[enrichment_name]
            if isinstance(enrichment, GeoEnrichment):
                fields[enrichment.output] = "string"
            else:
                fields.update(enrichment.outputs())
        return fields

    def fingerprint(self) -> str:
        """A stable digest of everything that defines features and labels.

        Streams, enrichments, tables, features and the label count; descriptions, storage, where
        streams are read from, the model's parameters and the decision policy do not. A model
        records the fingerprint of the pipeline it was trained with, so serving can refuse a model
        built on other features.
        """
        defining = self.model_dump(
            mode="json",
            include={"streams", "enrichments", "tables", "features", "label"},
            exclude={"streams": {"__all__": {"source"}}},
        )
        canonical = orjson.dumps(dump_for_fingerprint(defining), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _fail(path: tuple[str | int, ...], message: str) -> None:
    raise CrossReferenceError(path, message)


def _check_streams(p: Pipeline) -> None:
    for stream_name, stream in p.streams.items():
        for i, enrichment_name in enumerate(stream.enrich):
            if enrichment_name not in p.enrichments:
                _fail(
                    ("streams", stream_name, "enrich", i),
                    f"enrichment {enrichment_name!r} is not defined; defined: {sorted(p.enrichments)}",
                )
            enrichment = p.enrichments[enrichment_name]
            if enrichment.input not in stream.fields:
                _fail(
                    ("streams", stream_name, "enrich", i),
                    f"enrichment {enrichment_name!r} reads field {enrichment.input!r}, "
                    f"which stream {stream_name!r} does not have",
                )
        for i, join in enumerate(stream.joins):
            table = p.tables.get(join.table)
            if table is None:
                _fail(("streams", stream_name, "joins", i, "table"), f"table {join.table!r} is not defined")
                return
            if sorted(join.key) != sorted(table.key):
                _fail(
                    ("streams", stream_name, "joins", i, "key"),
                    f"table {join.table!r} is keyed by {table.key}, the join gives {sorted(join.key)}",
                )
            for output, aggregation in join.take.items():
                if aggregation not in table.aggregations:
                    _fail(
                        ("streams", stream_name, "joins", i, "take", output),
                        f"table {join.table!r} has no aggregation {aggregation!r}",
                    )


def _check_tables(p: Pipeline) -> None:
    for table_name, table in p.tables.items():
        for agg_name, agg in table.aggregations.items():
            path: tuple[str | int, ...] = ("tables", table_name, "aggregations", agg_name)
            if agg.stream is None:
                continue
            if agg.stream not in p.streams:
                _fail(
                    (*path, "stream"), f"stream {agg.stream!r} is not defined; defined: {sorted(p.streams)}"
                )
            available = p.stream_fields(agg.stream)
            for key_field in table.key:
                if key_field not in available:
                    _fail(
                        ("tables", table_name, "key"),
                        f"key field {key_field!r} is not a field of stream {agg.stream!r} "
                        f"(which feeds aggregation {agg_name!r}); it has {sorted(available)}",
                    )
            for role, field in (("field", agg.field), ("filter", agg.filter.field if agg.filter else None)):
                if field is not None and field not in available:
                    _fail(
                        (*path, role),
                        f"{field!r} is not a field of stream {agg.stream!r}; it has {sorted(available)}",
                    )


def _check_features(p: Pipeline) -> None:
    exposure = p.label.exposure if p.label is not None else None
    exposure_fields = p.stream_fields(exposure) if exposure in p.streams else {}
    names = list(p.features)
    for position, (name, feature) in enumerate(p.features.items()):
        path: tuple[str | int, ...] = ("features", name)
        if isinstance(feature, TableFeature):
            table = p.tables.get(feature.table)
            if table is None:
                _fail(
                    (*path, "table"), f"table {feature.table!r} is not defined; defined: {sorted(p.tables)}"
                )
                return
            if feature.aggregation not in table.aggregations:
                _fail(
                    (*path, "aggregation"),
                    f"table {feature.table!r} has no aggregation {feature.aggregation!r}; "
                    f"it has {sorted(table.aggregations)}",
                )
            key = feature.key if feature.key is not None else {k: k for k in table.key}
            if sorted(key) != sorted(table.key):
                _fail((*path, "key"), f"table {feature.table!r} is keyed by {table.key}, got {sorted(key)}")
            for event_field in key.values():
                if exposure_fields and event_field not in exposure_fields:
                    _fail((*path, "key"), f"the exposure stream {exposure!r} has no field {event_field!r}")
        elif isinstance(feature, EventFeature):
            if feature.event is not None and exposure_fields and feature.event not in exposure_fields:
                _fail(
                    (*path, "event"),
                    f"the exposure stream {exposure!r} has no field {feature.event!r}; "
                    f"it has {sorted(exposure_fields)}",
                )
        elif isinstance(feature, DerivedFeature):
            for i, source in enumerate(feature.inputs):
                if source not in names[:position]:
                    _fail(
                        (*path, "inputs", i),
                        f"{source!r} is not a feature defined above {name!r}; derived features may only "
                        "use features listed before them",
                    )


def _check_label_model_decision(p: Pipeline) -> None:
    if p.label is not None:
        for role in ("exposure", "outcome"):
            stream = getattr(p.label, role)
            if stream not in p.streams:
                _fail(("label", role), f"stream {stream!r} is not defined; defined: {sorted(p.streams)}")
        exposure_fields = p.stream_fields(p.label.exposure)
        outcome_fields = p.stream_fields(p.label.outcome)
        for left, right in p.label.match.items():
            if left not in exposure_fields:
                _fail(("label", "match", left), f"stream {p.label.exposure!r} has no field {left!r}")
            if right not in outcome_fields:
                _fail(("label", "match", left), f"stream {p.label.outcome!r} has no field {right!r}")
    for i, feature in enumerate(p.model.features or []):
        if feature not in p.features:
            _fail(("model", "features", i), f"{feature!r} is not a feature; features: {list(p.features)}")
    if p.decision is not None:
        for i, rule in enumerate(p.decision.block):
            if rule.feature not in p.features:
                _fail(("decision", "block", i, "feature"), f"{rule.feature!r} is not a feature")


__all__ = [
    "AgentEnrichment",
    "CrossReferenceError",
    "GeoEnrichment",
    "Pipeline",
    "StorageDef",
]
