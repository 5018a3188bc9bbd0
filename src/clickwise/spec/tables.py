"""Definitions of lookup tables: keys, aggregations, windows, hops, filters.

The value of an aggregation with window ``w`` at time ``T`` covers the events of the key with
``T - w <= event_ms < T`` (exact, the default); with a declared hop ``h``, ``floor(T - w, h) <=
event_ms < T`` (a hopped window: the tail up to one hop longer). ``lifetime`` covers every event the
table remembers: ``T - retention <= event_ms < T`` (DESIGN.md section 3; see
:mod:`clickwise.tables.retention`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from clickwise.spec.types import Definition, Duration, Name, Window
from clickwise.time import MS_PER_DAY, format_duration_ms

AggregationOp = Literal[
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "first",
    "last",
    "distinct_count",
    "ratio",
    "time_since_last",
]
_NEEDS_FIELD = {"sum", "mean", "min", "max", "first", "last", "distinct_count"}
_NO_FIELD = {"count", "ratio", "time_since_last"}

FilterOp = Literal["eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "is_null", "not_null"]
Scalar = str | int | float | bool


class FilterDef(Definition):
    """Count only some events: ``{field: campaign_id, op: eq, value: c17}``."""

    field: Name
    op: FilterOp
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> FilterDef:
        if self.op in ("is_null", "not_null"):
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list as value, got {self.value!r}")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs one value, got {self.value!r}")
        return self


class PriorDef(Definition):
    """Smoothing for a ratio: ``(numerator + value * weight) / (denominator + weight)``."""

    value: float
    weight: Annotated[float, Field(gt=0)]


def default_hop_ms(window_ms: int | None) -> int:
    """The hop used when an aggregation does not set ``hop``: 1 ms, an exact window (DESIGN.md
    section 3). A window's name says what it covers: ``24h`` read at 00:59 starts at 00:59 the day
    before, not at 00:00.

    >>> default_hop_ms(60 * 60 * 1000), default_hop_ms(7 * 86_400_000), default_hop_ms(None)
    (1, 1, 1)
    """
    return 1


class AggregationDef(Definition):
    """One named aggregation of a table.

    ``ratio`` combines two aggregations of the same table (``numerator``/``denominator``, e.g.
    CTR = clicks / impressions), optionally smoothed with a ``prior``; an empty denominator without
    a prior gives null. ``distinct_count`` is exact up to ``exact_up_to`` values, then a mergeable,
    deterministic sketch. ``time_since_last`` is the time from the stream's latest event to the read
    time (null before the first event).
    """

    op: AggregationOp
    stream: Name | None = None
    field: Name | None = None
    window: Window = None
    hop: Duration | None = None
    filter: FilterDef | None = None
    numerator: Name | None = None
    denominator: Name | None = None
    prior: PriorDef | None = None
    exact_up_to: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    description: str = ""

    @model_validator(mode="after")
    def _shape_fits_op(self) -> AggregationDef:
        if self.op == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError(
                    "op 'ratio' needs numerator and denominator (names of this table's aggregations)"
                )
            if self.stream is not None or self.field is not None or self.filter is not None:
                raise ValueError("op 'ratio' takes numerator/denominator, not stream/field/filter")
            return self
        if self.numerator is not None or self.denominator is not None or self.prior is not None:
            raise ValueError(f"numerator/denominator/prior belong to op 'ratio', not {self.op!r}")
        if self.stream is None:
            raise ValueError(f"op {self.op!r} needs the stream it aggregates")
        if self.op in _NEEDS_FIELD and self.field is None:
            raise ValueError(f"op {self.op!r} needs a field")
        if self.op in _NO_FIELD and self.field is not None:
            raise ValueError(f"op {self.op!r} takes no field (got {self.field!r})")
        if self.hop is not None and self.hop <= 0:
            raise ValueError(f"hop must be positive, got {self.hop!r} ms")
        return self

    @property
    def hop_ms(self) -> int:
        """The tile size: ``hop`` when set, else the default for the window."""
        return self.hop if self.hop is not None else default_hop_ms(self.window)


class TableDef(Definition):
    """A keyed lookup table fed by one or more streams.

    ``key: []`` makes a global table (one row). ``retention`` is how long the table remembers an
    event: ``lifetime`` aggregations cover the last ``retention``, no window may be longer, and an
    event that arrives more than ``retention`` behind the watermark goes to dead letters. Answers
    never depend on when the table dropped old state (:mod:`clickwise.tables.retention`).
    """

    key: list[Name]
    aggregations: dict[Name, AggregationDef]
    retention: Duration = 90 * MS_PER_DAY
    description: str = ""

    @model_validator(mode="after")
    def _ratios_resolve(self) -> TableDef:
        if not self.aggregations:
            raise ValueError("a table needs at least one aggregation")
        if self.retention <= 0:
            raise ValueError(f"retention must be positive, got {self.retention!r} ms")
        for name, agg in self.aggregations.items():
            if agg.window is not None and agg.window > self.retention:
                raise ValueError(
                    f"aggregation {name!r}: its window ({format_duration_ms(agg.window)}) is longer than "
                    f"the table's retention ({format_duration_ms(self.retention)}), so it could never "
                    "be full; raise the table's retention or shorten the window"
                )
        for name, agg in self.aggregations.items():
            if agg.op != "ratio":
                continue
            for part in (agg.numerator, agg.denominator):
                if part not in self.aggregations:
                    raise ValueError(
                        f"aggregation {name!r}: {part!r} is not an aggregation of this table; "
                        f"it has {sorted(self.aggregations)}"
                    )
                if self.aggregations[part].op == "ratio":
                    raise ValueError(f"aggregation {name!r}: {part!r} is itself a ratio; use counts or sums")
        return self

    def streams(self) -> list[str]:
        """The streams that feed this table, in first-use order."""
        seen: dict[str, None] = {}
        for agg in self.aggregations.values():
            if agg.stream is not None:
                seen.setdefault(agg.stream)
        return list(seen)


def dump_for_fingerprint(value: Any) -> Any:
    """Drop free-text descriptions so that editing a comment never changes a fingerprint."""
    if isinstance(value, dict):
        return {k: dump_for_fingerprint(v) for k, v in value.items() if k != "description"}
    if isinstance(value, list):
        return [dump_for_fingerprint(v) for v in value]
    return value
