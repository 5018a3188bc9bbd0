"""Definitions of event streams: fields, event time, event id, renames, enrichments, joins."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from clickwise.spec.tables import FilterDef
from clickwise.spec.types import Definition, Duration, Name
from clickwise.time import check_time_format, parse_instant_ms

FieldType = Literal["string", "int", "float", "bool"]


@cache
def _instant_ms(text: str) -> int:
    return parse_instant_ms(text)


class FieldDef(Definition):
    """One field of a stream's records.

    ``max_length`` (strings, in bytes) protects the lake from absurd values such as a 1 MB user
    agent: such a record goes to dead letters instead of being stored.
    """

    type: FieldType
    required: bool = True
    max_length: Annotated[int | None, Field(gt=0)] = None
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _length_only_for_strings(self) -> FieldDef:
        if self.max_length is not None and self.type != "string":
            raise ValueError(f"max_length applies to string fields only, not to type {self.type!r}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max apply to int and float fields only, not to type {self.type!r}")
        return self


def _field_shorthand(value: Any) -> Any:
    """``user_id: string`` is short for ``user_id: {type: string}``."""
    if isinstance(value, str):
        return {"type": value}
    return value


class TimeDef(Definition):
    """Where a record's time comes from and how to read it.

    ``format``: ``epoch_ms``, ``epoch_s``, ``epoch_us``, ``epoch_ns``, ``iso``, or a strptime pattern
    (``%Y-%m-%d %H:%M:%S``). Text without an offset is read in ``timezone`` (required for patterns
    without ``%z``: real logs are often local time). Times before ``earliest`` or more than
    ``max_future`` after the moment of ingest are impossible and go to dead letters.
    """

    field: Name
    format: str = "epoch_ms"
    timezone: str | None = None
    earliest: str = "2000-01-01T00:00:00Z"
    max_future: Duration = 86_400_000

    @model_validator(mode="after")
    def _format_is_known(self) -> TimeDef:
        try:
            check_time_format(self.format, self.timezone)
            parse_instant_ms(self.earliest)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def earliest_ms(self) -> int:
        return _instant_ms(self.earliest)  # read per record by validate_one: parse each text once


class CsvDef(Definition):
    """How CSV/TSV inputs of a stream are read.

    ``header: auto`` takes the first row as a header when it names known fields. Without a header
    the ``columns`` list gives the order (default: the declared fields in order).
    """

    header: bool | Literal["auto"] = "auto"
    delimiter: str | None = None
    columns: list[str] | None = None

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"delimiter must be one character, got {value!r}")
        return value


class JoinDef(Definition):
    """Enrich a stream from a lookup table as of each event's own time (inclusive).

    A click has no IP, so it takes its impression's country from a table keyed by
    ``impression_id``: ``{table: impression_country, key: {impression_id: impression_id},
    take: {country: country}}`` (output field -> table aggregation).
    """

    table: Name
    key: dict[Name, Name]
    take: dict[Name, Name]


class KafkaSourceDef(Definition):
    """Read a stream from a Kafka topic (``clickwise run``).

    Each message's value is one JSON record of the stream, or with ``payload: json_lines`` one or
    more records, one per line (what batching producers send). ``bootstrap`` may name environment
    variables (``${CLICKWISE_KAFKA}``), read when the consumer starts, so one pipeline file works
    against any broker. Positions are stored with the lake files they produced (not only in the
    consumer group), so the tables count each message once however often it is delivered.
    ``start`` is where a partition without a stored position begins. With ``key_as_event_id``
    the message key fills the stream's event id field when the record lacks it.
    """

    kind: Literal["kafka"]
    topic: str = Field(min_length=1, max_length=249)
    bootstrap: str = "${CLICKWISE_KAFKA}"
    group: str = "clickwise"
    start: Literal["earliest", "latest"] = "earliest"
    key_as_event_id: bool = False
    payload: Literal["json", "json_lines"] = "json"
    max_messages: Annotated[int, Field(ge=1, le=1_000_000)] = 50_000
    """The most messages one poll reads (stored as one lake batch per stream)."""
    options: dict[str, str | int | float | bool] = {}
    """Extra librdkafka consumer settings (security, timeouts)."""

    @model_validator(mode="after")
    def _one_key_one_record(self) -> KafkaSourceDef:
        if self.key_as_event_id and self.payload == "json_lines":
            raise ValueError(
                "key_as_event_id needs one record per message (payload: json): a message of "
                "several JSON lines has one key for all of them"
            )
        return self


class KinesisSourceDef(Definition):
    """Read a stream from a Kinesis data stream (``clickwise run``).

    Each record's data is one JSON record of the stream, or with ``payload: json_lines`` one or
    more, one per line. Positions (per shard) are stored with the
    lake files they produced, like Kafka offsets; after a reshard, child shards are read once their
    parents are read to the end. ``endpoint`` defaults to ``CLICKWISE_KINESIS_ENDPOINT`` or
    ``AWS_ENDPOINT_URL``; ``start`` applies to shards without a stored position.
    """

    kind: Literal["kinesis"]
    stream_name: str | None = Field(default=None, min_length=1, max_length=128)
    """The Kinesis stream (default: the pipeline stream's own name)."""
    endpoint: str | None = None
    region: str | None = None
    start: Literal["trim_horizon", "latest"] = "trim_horizon"
    max_records: Annotated[int, Field(ge=1, le=10_000)] = 10_000
    """The most records one read of a shard returns."""
    payload: Literal["json", "json_lines"] = "json"


class PrefixSourceDef(Definition):
    """Ingest each new file under a folder or ``s3://bucket/prefix/`` once, as it appears."""

    kind: Literal["prefix"]
    url: str = Field(min_length=1)


SourceDef = Annotated[KafkaSourceDef | KinesisSourceDef | PrefixSourceDef, Field(discriminator="kind")]


class StreamDef(Definition):
    """An event stream: its record schema and how to read, identify and enrich its events.

    ``where`` keeps only the input records that match (the others are counted as filtered, not
    rejected): two streams can then be read from one file, e.g. downloads from a click log's rows
    with ``is_attributed == 1``.
    """

    fields: dict[Name, Annotated[FieldDef, Field()]]
    time: TimeDef
    arrival_time: TimeDef | None = None
    event_id: Name | None = None
    renames: dict[str, Name] = {}
    enrich: list[Name] = []
    joins: list[JoinDef] = []
    csv: CsvDef = CsvDef()
    where: FilterDef | None = None
    source: SourceDef | None = None
    """Where ``clickwise run`` reads the stream from besides files it is given and HTTP."""
    description: str = ""

    @field_validator("fields", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: _field_shorthand(spec) for name, spec in value.items()}
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> StreamDef:
        if not self.fields:
            raise ValueError("a stream needs at least one field")
        for role, name in (("time.field", self.time.field), ("event_id", self.event_id)):
            if name is not None and name not in self.fields:
                raise ValueError(f"{role} {name!r} is not a declared field; fields are {sorted(self.fields)}")
        if self.arrival_time is not None and self.arrival_time.field not in self.fields:
            raise ValueError(
                f"arrival_time.field {self.arrival_time.field!r} is not a declared field; "
                f"fields are {sorted(self.fields)}"
            )
        if self.where is not None and self.where.field not in self.fields:
            raise ValueError(
                f"where.field {self.where.field!r} is not a declared field; fields are {sorted(self.fields)}"
            )
        for source, target in self.renames.items():
            if target not in self.fields:
                raise ValueError(
                    f"renames maps {source!r} to {target!r}, which is not a declared field; "
                    f"fields are {sorted(self.fields)}"
                )
        return self

    def source_name(self, field: str) -> str:
        """The name a field has in input files (before renames)."""
        if self.where is not None and self.where.field not in self.fields:
            raise ValueError(
                f"where.field {self.where.field!r} is not a declared field; fields are {sorted(self.fields)}"
            )
        for source, target in self.renames.items():
            if target == field:
                return source
        return field
