"""Compile a table definition into feeds: what each stream contributes to a table.

A *feed* is one (table, stream) pair: the aggregations of the table that read that stream, and the
columns a run of that feed keeps for them. Ratios read other aggregations and have no feed.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickwise.spec import AggregationDef, FilterDef, Pipeline, TableDef

FIXED_POINT_SCALE = 1_000_000_000
"""Float sums are exact in units of 1e-9: each value is rounded to that grid, then summed as
integers, so a sum never depends on the order of its terms (floats are not associative)."""

_NEEDS_ORDER = {"first", "last"}


@dataclass(frozen=True)
class AggPlan:
    """One aggregation as a feed computes it."""

    name: str
    op: str
    window_ms: int  # (lifetime is the table's retention: see ``_plan``)
    hop_ms: int
    field: str | None
    field_type: str | None
    filter: FilterDef | None
    exact_up_to: int

    @property
    def column(self) -> str:
        return f"v_{self.name}"

    @property
    def valid_column(self) -> str:
        return f"n_{self.name}"

    @property
    def filter_column(self) -> str:
        return f"f_{self.name}"


@dataclass(frozen=True)
class Feed:
    """What one stream contributes to one table."""

    table: str
    stream: str
    key_fields: tuple[str, ...]
    aggs: tuple[AggPlan, ...]
    needs_order: bool
    join_fields: frozenset[str]

    @property
    def name(self) -> str:
        return f"{self.table}.{self.stream}"

    @property
    def summed_columns(self) -> frozenset[str]:
        """Value columns only ever summed (sums and means): runs keep their running totals."""
        return frozenset(agg.column for agg in self.aggs if agg.op in ("sum", "mean"))

    def input_fields(self) -> list[str]:
        """Event fields this feed reads (keys, aggregated fields, filter fields)."""
        fields = dict.fromkeys(self.key_fields)
        for agg in self.aggs:
            for name in (agg.field, agg.filter.field if agg.filter else None):
                if name is not None:
                    fields[name] = None
        return list(fields)

    @property
    def waits_for_join(self) -> bool:
        """True when an input field is filled by a stream join (it may resolve later)."""
        return bool(self.join_fields & set(self.input_fields()))


@dataclass(frozen=True)
class RatioPlan:
    name: str
    numerator: str
    denominator: str
    prior_value: float | None
    prior_weight: float | None


def table_feeds(pipeline: Pipeline, table_name: str) -> list[Feed]:
    """The feeds of a table, one per stream that feeds it, in first-use order."""
    table = pipeline.tables[table_name]
    feeds = []
    for stream in table.streams():
        fields = pipeline.stream_fields(stream)
        join_fields = frozenset(output for join in pipeline.streams[stream].joins for output in join.take)
        aggs = tuple(
            _plan(name, agg, fields, table.retention)
            for name, agg in table.aggregations.items()
            if agg.op != "ratio" and agg.stream == stream
        )
        feeds.append(
            Feed(
                table=table_name,
                stream=stream,
                key_fields=tuple(table.key),
                aggs=aggs,
                needs_order=any(a.op in _NEEDS_ORDER for a in aggs),
                join_fields=join_fields,
            )
        )
    return feeds


def table_ratios(table: TableDef) -> list[RatioPlan]:
    return [
        RatioPlan(
            name,
            agg.numerator or "",
            agg.denominator or "",
            agg.prior.value if agg.prior else None,
            agg.prior.weight if agg.prior else None,
        )
        for name, agg in table.aggregations.items()
        if agg.op == "ratio"
    ]


def _plan(name: str, agg: AggregationDef, fields: dict[str, str], retention_ms: int) -> AggPlan:
    """``lifetime`` is the table's retention, read exactly (a time to live)."""
    return AggPlan(
        name=name,
        op=agg.op,
        window_ms=retention_ms if agg.window is None else agg.window,
        hop_ms=1 if agg.window is None else agg.hop_ms,
        field=agg.field,
        field_type=fields.get(agg.field) if agg.field else None,
        filter=agg.filter,
        exact_up_to=agg.exact_up_to,
    )
