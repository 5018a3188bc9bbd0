"""Definitions of features, enrichments, the label, the model and the decision."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from clickwise.spec.tables import Scalar
from clickwise.spec.types import Definition, Duration, Name
from clickwise.time import parse_zone


class GeoEnrichment(Definition):
    """IP address to country (ISO 3166 alpha-2). Bundled GeoLite2 data unless ``mmdb`` names a file."""

    kind: Literal["geo"]
    input: Name = "ip"
    output: Name = "country"
    mmdb: str | None = None


class AgentEnrichment(Definition):
    """User agent to ``browser``, ``os``, ``device_type`` and ``is_bot_agent`` (with ``prefix``)."""

    kind: Literal["agent"]
    input: Name = "user_agent"
    prefix: str = ""

    def outputs(self) -> dict[str, str]:
        """Output field name -> its type."""
        return {
            f"{self.prefix}browser": "string",
            f"{self.prefix}os": "string",
            f"{self.prefix}device_type": "string",
            f"{self.prefix}is_bot_agent": "bool",
        }


Enrichment = Annotated[GeoEnrichment | AgentEnrichment, Field(discriminator="kind")]

TimePart = Literal["hour_of_day", "day_of_week", "minute_of_hour"]


class TableFeature(Definition):
    """A table aggregation, read as of the exposure's time for the exposure's key.

    ``key`` maps the table's key fields to the exposure's fields (default: same names).
    """

    table: Name
    aggregation: Name
    key: dict[Name, Name] | None = None
    description: str = ""


class EventFeature(Definition):
    """A field of the (enriched) exposure event, or a part of its event time (``time_part``).

    A time part is read on the clock of ``timezone`` (an IANA name such as ``Asia/Shanghai``, or an
    offset such as ``+08:00``); by default the zone the exposure stream declares for its times
    (``time.timezone``), else UTC. An impression at 15:22 in Shanghai has ``hour_of_day`` 15.
    """

    event: Name | None = None
    time_part: TimePart | None = None
    timezone: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> EventFeature:
        if (self.event is None) == (self.time_part is None):
            raise ValueError("an event feature needs exactly one of 'event' (a field) or 'time_part'")
        if self.timezone is not None:
            if self.time_part is None:
                raise ValueError("timezone applies to time parts only (time_part: hour_of_day, ...)")
            parse_zone(self.timezone)  # (a TimeFormatError is a ValueError that names the zone)
        return self

    @model_serializer(mode="wrap")
    def _without_default_zone(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``timezone`` out when not given, so that pipelines written before it existed keep
        their fingerprint (and their models)."""
        dumped: dict[str, Any] = handler(self)
        if dumped.get("timezone", "") is None:
            del dumped["timezone"]
        return dumped


class DerivedFeature(Definition):
    """Arithmetic on other features: ``{op: divide, inputs: [country_ctr_24h, global_ctr_24h]}``.

    Null in, null out; dividing by zero gives null.
    """

    op: Literal["divide", "multiply", "add", "subtract"]
    inputs: Annotated[list[Name], Field(min_length=2, max_length=2)]
    description: str = ""


def _feature_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "table" in value:
            return "table"
        if "op" in value or "inputs" in value:
            return "derived"
        return "event"
    if isinstance(value, TableFeature):
        return "table"
    return "derived" if isinstance(value, DerivedFeature) else "event"


FeatureDef = Annotated[
    Annotated[TableFeature, Tag("table")]
    | Annotated[EventFeature, Tag("event")]
    | Annotated[DerivedFeature, Tag("derived")],
    Discriminator(_feature_kind),
]


class LabelDef(Definition):
    """label(i) = 1 when a matching outcome has ``t_i - tolerance <= outcome_ms < t_i + horizon``.

    ``match`` maps exposure fields to outcome fields (a list means the same names on both sides).
    Duplicate outcomes count once.
    """

    name: Name = "clicked"
    exposure: Name
    outcome: Name
    match: dict[Name, Name]
    horizon: Duration
    tolerance: Duration = 0

    @model_validator(mode="before")
    @classmethod
    def _list_match(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("match"), list):
            value = {**value, "match": {name: name for name in value["match"]}}
        return value

    @model_validator(mode="after")
    def _positive_horizon(self) -> LabelDef:
        if self.horizon <= 0:
            raise ValueError("horizon must be positive")
        if not self.match:
            raise ValueError("match needs at least one field")
        return self


class ModelDef(Definition):
    """Which learner, on which features, with which parameters."""

    kind: Literal["lightgbm", "xgboost"] = "lightgbm"
    features: list[Name] | None = None
    params: dict[str, Scalar] = {}
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2


class RuleDef(Definition):
    """A blocking rule on a feature: ``{feature: user_impressions_1h, op: gt, value: 600}``."""

    feature: Name
    op: Literal["eq", "ne", "gt", "ge", "lt", "le"]
    value: Scalar


class DecisionDef(Definition):
    """Serve when ``p_click * value_per_click > cost``; block when any ``block`` rule holds.

    ``cost`` is the name of an exposure field (the price of this impression) or a constant.
    """

    cost: Name | float
    value_per_click: Annotated[float, Field(gt=0)]
    block: list[RuleDef] = []
