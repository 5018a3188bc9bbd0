"""Pipeline definitions: the typed, frozen form of a pipeline file, its loader and fingerprint."""

from clickwise.spec.features import (
    AgentEnrichment,
    DecisionDef,
    DerivedFeature,
    EventFeature,
    GeoEnrichment,
    LabelDef,
    ModelDef,
    TableFeature,
)
from clickwise.spec.loader import load_pipeline, parse_pipeline, pipeline_json_schema
from clickwise.spec.pipeline import Pipeline, StorageDef
from clickwise.spec.streams import CsvDef, FieldDef, JoinDef, StreamDef, TimeDef
from clickwise.spec.tables import AggregationDef, FilterDef, PriorDef, TableDef, default_hop_ms

__all__ = [
    "AgentEnrichment",
    "AggregationDef",
    "CsvDef",
    "DecisionDef",
    "DerivedFeature",
    "EventFeature",
    "FieldDef",
    "FilterDef",
    "GeoEnrichment",
    "JoinDef",
    "LabelDef",
    "ModelDef",
    "Pipeline",
    "PriorDef",
    "StorageDef",
    "StreamDef",
    "TableDef",
    "TableFeature",
    "TimeDef",
    "default_hop_ms",
    "load_pipeline",
    "parse_pipeline",
    "pipeline_json_schema",
]
