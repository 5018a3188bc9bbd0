"""A brute-force oracle for lookup tables, written from the definition (DESIGN.md section 3).

It shares no code with ``clickwise.tables``: it reads the pipeline's definitions and the lake's
events (``Lake.read_all(stream).to_pylist()``) and computes every value by scanning events.

The value of aggregation ``a`` (window ``w``, hop ``h``) of a table for key ``k`` at ``T`` covers
the events of ``k`` with::

    floor(T - w, h) <= _event_ms < T          (h is 1 ms unless declared: exact windows)
    T - R <= _event_ms < T                    (``lifetime``, R the table's retention)

Events are grouped by table key once; a read slices its group by event time with ``bisect`` and
aggregates the slice in plain Python. A stream's joins (``streams.<s>.joins``) are applied to its
events before they are grouped: each output field gets the join table's aggregation as of the
event's own time ``t``, inclusive: the value as of ``t + 1`` (``floor(t + 1 - w, h) <= _event_ms <=
t``; ``time_since_last`` is then ``t - last``).

Retention: a table takes an event only when it arrived at most the table's retention ``R`` behind
the watermark it arrived to: ``_event_ms >= seen - allowed_lateness - R``, where ``seen`` is the
highest ``_event_ms`` of all events (every stream) with a strictly smaller ``_arrival_ms``. When the
table's inputs from that stream include a join's output, the join tables' retentions count too.

Choices where the definition leaves room (keep them in step with the report to the engine's owner):

- ``first``/``last`` skip null values: the value of the earliest/latest event whose value is not
  null, events ordered by ``(_event_ms, _arrival_ms, value)``.
- A ratio is null when its numerator or denominator is null, or (without a prior) when the
  denominator is 0.
- ``snapshot`` lists a key when any stream feeding the table has an event of that key before
  ``as_of`` (aggregation filters and windows do not matter).
- Float sums: ``sum(round(v * 1e9)) / 1e9`` with Python's ``int / float`` (the integer is converted
  to a float, then divided); mean: that float divided by the number of non-null values.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clickwise.spec import AggregationDef, FilterDef, Pipeline, TableDef

EVENT_MS = "_event_ms"
ARRIVAL_MS = "_arrival_ms"
FIXED_POINT = 1e9
HLL_P = 14
HLL_M = 1 << HLL_P
_HLL_REST_BITS = 64 - HLL_P

Event = Mapping[str, Any]
KeyTuple = tuple[Any, ...]


# --- the definition, one function per rule ----------------------------------------------------


def window_start_ms(as_of_ms: int, window_ms: int, hop_ms: int) -> int:
    """``floor(T - w, h)``: the earliest event time a windowed read at ``as_of_ms`` includes."""
    return (as_of_ms - window_ms) // hop_ms * hop_ms


def matches(flt: FilterDef, event: Event) -> bool:
    """Whether an event passes a filter; a null value matches only ``is_null``."""
    value = event.get(flt.field)
    if flt.op == "is_null":
        return value is None
    if flt.op == "not_null":
        return value is not None
    if value is None:
        return False
    wanted = flt.value
    if flt.op == "in":
        assert isinstance(wanted, list)
        return value in wanted
    if flt.op == "not_in":
        assert isinstance(wanted, list)
        return value not in wanted
    compare = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
    }[flt.op]
    return bool(compare(value, wanted))


def fixed_point_total(values: Iterable[float]) -> int:
    """The exact integer sum of ``round(v * 1e9)`` (round half to even)."""
    return sum(round(v * FIXED_POINT) for v in values)


def hll_hash(value: object) -> int:
    """The 64-bit hash the distinct-count sketch uses: blake2b-64 of ``str(value)``, big-endian."""
    return int.from_bytes(hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest(), "big")


def hll_estimate(values: Iterable[object]) -> int:
    """The HyperLogLog estimate (p = 14) of the number of distinct values, from the definition."""
    registers: dict[int, int] = {}
    for value in set(values):
        hashed = hll_hash(0.0 if isinstance(value, float) and value == 0 else value)  # -0.0 is 0.0
        index = hashed >> _HLL_REST_BITS
        rest = hashed & ((1 << _HLL_REST_BITS) - 1)
        rank = _HLL_REST_BITS - rest.bit_length() + 1
        if rank > registers.get(index, 0):
            registers[index] = rank
    zeros = HLL_M - len(registers)
    # sum(2 ** -register), computed exactly in units of 2 ** -64 and rounded once to a float.
    scaled = zeros << 64
    for rank in registers.values():
        scaled += 1 << (64 - rank)
    inverse_sum = scaled / (1 << 64)
    alpha = 0.7213 / (1 + 1.079 / HLL_M)
    estimate = alpha * HLL_M**2 / inverse_sum
    if estimate <= 2.5 * HLL_M and zeros > 0:
        estimate = HLL_M * math.log(HLL_M / zeros)
    return int(round(estimate))


def distinct_count(values: Sequence[object], exact_up_to: int) -> int:
    """Exact number of distinct values up to ``exact_up_to``, else the sketch's estimate."""
    distinct = set(values)
    if len(distinct) <= exact_up_to:
        return len(distinct)
    return hll_estimate(distinct)


def aggregate(agg: AggregationDef, events: Sequence[Event], as_of_ms: int, field_type: str | None) -> object:
    """One aggregation (not a ratio) over the events of its window, filter already applied."""
    op = agg.op
    if op == "count":
        return len(events)
    if op == "time_since_last":
        return as_of_ms - max(e[EVENT_MS] for e in events) if events else None
    assert agg.field is not None
    name = agg.field
    present = [e for e in events if e.get(name) is not None]
    values = [e[name] for e in present]
    is_float = field_type == "float"
    if op == "sum":
        if is_float:
            return fixed_point_total(values) / FIXED_POINT
        return sum(int(v) for v in values)
    if op == "mean":
        if not values:
            return None
        total = fixed_point_total(values) / FIXED_POINT if is_float else sum(int(v) for v in values)
        return total / len(values)
    if op == "min":
        return min(values) if values else None
    if op == "max":
        return max(values) if values else None
    if op in ("first", "last"):
        if not present:
            return None
        ordered = [(e[EVENT_MS], e[ARRIVAL_MS], e[name]) for e in present]
        return (min(ordered) if op == "first" else max(ordered))[2]
    if op == "distinct_count":
        return distinct_count(values, agg.exact_up_to)
    raise ValueError(f"unknown op {op!r}")


def empty_value(agg: AggregationDef, field_type: str | None) -> object:
    """What an empty window gives."""
    if agg.op in ("count", "distinct_count"):
        return 0
    if agg.op == "sum":
        return 0.0 if field_type == "float" else 0
    return None


# --- the oracle -------------------------------------------------------------------------------


@dataclass
class _Group:
    """The events of one key fed to a table by one stream, in event-time order."""

    times: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Oracle:
    """Answers ``value``/``row``/``snapshot``/``history`` for a pipeline's tables by brute force.

    ``events`` maps stream names to the stored events (as read from the lake: declared fields,
    enrichment fields, ``_event_ms``, ``_arrival_ms``). Keys are given like the engine takes them:
    the value itself for a one-field key, a tuple in the table's key order for several fields,
    ``None`` for a global table.
    """

    def __init__(self, pipeline: Pipeline, events: Mapping[str, Sequence[Event]]) -> None:
        unknown = sorted(set(events) - set(pipeline.streams))
        if unknown:
            raise ValueError(f"events given for unknown streams {unknown}")
        self.pipeline = pipeline
        self._raw = {
            name: sorted(events.get(name, ()), key=lambda e: (e[EVENT_MS], e[ARRIVAL_MS]))
            for name in pipeline.streams
        }
        self._types = {name: pipeline.stream_fields(name) for name in pipeline.streams}
        self._joined: dict[str, list[Event]] = {}
        arrivals = sorted((e[ARRIVAL_MS], e[EVENT_MS]) for stream in self._raw.values() for e in stream)
        self._arrivals = [a for a, _ in arrivals]
        self._seen_through: list[int] = []  # highest event time of arrivals[: i + 1]
        for _, event_ms in arrivals:
            previous = self._seen_through[-1] if self._seen_through else event_ms
            self._seen_through.append(max(event_ms, previous))
        self._joining: set[str] = set()
        self._groups: dict[tuple[str, str], dict[KeyTuple, _Group]] = {}

    @classmethod
    def from_lake(cls, pipeline: Pipeline, root: Any) -> Oracle:
        """An oracle over everything the lake of ``root`` holds now."""
        from clickwise.events import Lake

        lake = Lake(root, pipeline)
        return cls(pipeline, {name: lake.read_all(name).to_pylist() for name in pipeline.streams})

    # --- public reads ---------------------------------------------------------------------

    def value(self, table: str, key: object, aggregation: str, as_of_ms: int) -> object:
        """The aggregation's value for ``key`` at ``as_of_ms`` (events strictly before it)."""
        return self._value(table, self.key_tuple(table, key), aggregation, as_of_ms, inclusive=False)

    def row(self, table: str, key: object, as_of_ms: int) -> dict[str, object]:
        """Every aggregation of the table for ``key`` at ``as_of_ms``."""
        key_tuple = self.key_tuple(table, key)
        return {
            name: self._value(table, key_tuple, name, as_of_ms, inclusive=False)
            for name in self.pipeline.tables[table].aggregations
        }

    def keys(self, table: str, as_of_ms: int | None = None) -> list[object]:
        """Keys with an event (of any feeding stream) before ``as_of_ms`` (all keys when None)."""
        found: set[KeyTuple] = set()
        for stream in self._table_def(table).streams():
            for key_tuple, group in self._group_map(table, stream).items():
                if as_of_ms is None or group.times[0] < as_of_ms:
                    found.add(key_tuple)
        return [self.public_key(table, k) for k in sorted(found, key=_sortable)]

    def snapshot(self, table: str, as_of_ms: int) -> dict[object, dict[str, object]]:
        """Public key -> row, for every key with an event before ``as_of_ms``."""
        return {key: self.row(table, key, as_of_ms) for key in self.keys(table, as_of_ms)}

    def history(
        self, table: str, key: object, from_ms: int, to_ms: int, every_ms: int
    ) -> list[dict[str, object]]:
        """Rows at ``from_ms, from_ms + every_ms, ...`` up to ``to_ms`` inclusive, with ``as_of_ms``."""
        return [
            {"as_of_ms": as_of_ms, **self.row(table, key, as_of_ms)}
            for as_of_ms in range(from_ms, to_ms + 1, every_ms)
        ]

    def events(self, stream: str) -> list[Event]:
        """A stream's events in event-time order, with its join outputs filled in."""
        if stream not in self._joined:
            if stream in self._joining:
                raise ValueError(f"stream {stream!r} joins a table that it feeds itself")
            self._joining.add(stream)
            try:
                self._joined[stream] = self._apply_joins(stream)
            finally:
                self._joining.discard(stream)
        return self._joined[stream]

    # --- keys -----------------------------------------------------------------------------

    def key_tuple(self, table: str, key: object) -> KeyTuple:
        fields = self._table_def(table).key
        if not fields:
            if key is not None:
                raise ValueError(f"table {table!r} is global: its key is None, got {key!r}")
            return ()
        if len(fields) == 1:
            return (key,)
        if not isinstance(key, tuple) or len(key) != len(fields):
            raise ValueError(f"table {table!r} is keyed by {fields}: give a tuple, got {key!r}")
        return key

    def public_key(self, table: str, key_tuple: KeyTuple) -> object:
        fields = self._table_def(table).key
        if not fields:
            return None
        return key_tuple[0] if len(fields) == 1 else tuple(key_tuple)

    # --- internals ------------------------------------------------------------------------

    def _table_def(self, table: str) -> TableDef:
        if table not in self.pipeline.tables:
            raise ValueError(f"unknown table {table!r}; tables: {sorted(self.pipeline.tables)}")
        return self.pipeline.tables[table]

    def _value(self, table: str, key: KeyTuple, name: str, as_of_ms: int, *, inclusive: bool) -> object:
        agg = self._table_def(table).aggregations[name]
        if agg.op == "ratio":
            assert agg.numerator is not None and agg.denominator is not None
            numerator = self._value(table, key, agg.numerator, as_of_ms, inclusive=inclusive)
            denominator = self._value(table, key, agg.denominator, as_of_ms, inclusive=inclusive)
            return _ratio(agg, numerator, denominator)
        assert agg.stream is not None
        field_type = self._types[agg.stream].get(agg.field) if agg.field else None
        events = self._window(table, key, agg, as_of_ms, inclusive=inclusive)
        if not events:
            return empty_value(agg, field_type)
        return aggregate(agg, events, as_of_ms, field_type)

    def _window(
        self, table: str, key: KeyTuple, agg: AggregationDef, as_of_ms: int, *, inclusive: bool
    ) -> list[Event]:
        assert agg.stream is not None
        group = self._group_map(table, agg.stream).get(key)
        if group is None:
            return []
        end = as_of_ms + 1 if inclusive else as_of_ms
        if agg.window is None:
            earliest = end - self._table_def(table).retention
        else:
            earliest = window_start_ms(end, agg.window, agg.hop_ms)
        start = bisect.bisect_left(group.times, earliest)
        stop = bisect.bisect_left(group.times, end)
        events = group.events[start:stop]
        if agg.filter is not None:
            flt = agg.filter
            events = [e for e in events if matches(flt, e)]
        return events

    def _group_map(self, table: str, stream: str) -> dict[KeyTuple, _Group]:
        if (table, stream) not in self._groups:
            fields = self._table_def(table).key
            groups: dict[KeyTuple, _Group] = {}
            oldest = self._oldest_taken_ms(table, stream)
            for event in self.events(stream):
                seen = self._seen_before(event[ARRIVAL_MS])
                if seen is not None and event[EVENT_MS] < seen - self.pipeline.allowed_lateness - oldest:
                    continue  # it arrived too far behind the watermark: past retention
                key = tuple(event.get(f) for f in fields)
                if any(part is None for part in key):
                    continue  # an event with a null key field is in no row of the table
                group = groups.setdefault(key, _Group())
                group.times.append(event[EVENT_MS])
                group.events.append(event)
            self._groups[(table, stream)] = groups
        return self._groups[(table, stream)]

    def _seen_before(self, arrival_ms: int) -> int | None:
        """The highest event time of the events that arrived strictly before ``arrival_ms``."""
        count = bisect.bisect_left(self._arrivals, arrival_ms)
        return self._seen_through[count - 1] if count else None

    def _oldest_taken_ms(self, table: str, stream: str) -> int:
        """How far behind the watermark an event of ``stream`` may be for ``table`` to take it."""
        definition = self._table_def(table)
        inputs = set(definition.key)
        for agg in definition.aggregations.values():
            if agg.stream == stream:
                inputs.update(f for f in (agg.field, agg.filter.field if agg.filter else None) if f)
        retentions = [definition.retention]
        for join in self.pipeline.streams[stream].joins:
            if set(join.take) & inputs:
                retentions.append(self._table_def(join.table).retention)
        return min(retentions)

    def _apply_joins(self, stream: str) -> list[Event]:
        joins = self.pipeline.streams[stream].joins
        raw = self._raw[stream]
        if not joins:
            return list(raw)
        joined = []
        for event in raw:
            enriched = dict(event)
            for join in joins:
                table_key = self._table_def(join.table).key
                key = tuple(event.get(join.key[f]) for f in table_key)
                for output, aggregation in join.take.items():
                    enriched[output] = (
                        None
                        if any(part is None for part in key)
                        else self._value(join.table, key, aggregation, event[EVENT_MS], inclusive=True)
                    )
            joined.append(enriched)
        return joined


def _ratio(agg: AggregationDef, numerator: object, denominator: object) -> object:
    if numerator is None or denominator is None:
        return None
    assert isinstance(numerator, int | float) and isinstance(denominator, int | float)
    if agg.prior is not None:
        smoothed = denominator + agg.prior.weight
        return None if smoothed == 0 else (numerator + agg.prior.value * agg.prior.weight) / smoothed
    return None if denominator == 0 else numerator / denominator


def _sortable(key: KeyTuple) -> tuple[tuple[str, str], ...]:
    return tuple((type(part).__name__, repr(part)) for part in key)


# --- comparing the engine's answers with the oracle's -----------------------------------------


def same_value(expected: object, actual: object) -> bool:
    """Equal with no tolerance, and of the same kind: ints stay ints, floats floats, None None."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool):
        return isinstance(actual, bool | np.bool_) and bool(actual) == expected
    if isinstance(expected, int):
        return (
            isinstance(actual, int | np.integer)
            and not isinstance(actual, bool | np.bool_)
            and int(actual) == expected
        )
    if isinstance(expected, float):
        return isinstance(actual, float | np.floating) and float(actual) == expected
    return type(actual) is type(expected) and actual == expected


def diff_row(expected: Mapping[str, object], actual: Mapping[str, object]) -> list[str]:
    """Human-readable differences between two rows (empty when they are the same)."""
    problems = []
    if set(expected) != set(actual):
        problems.append(f"columns differ: expected {sorted(expected)}, got {sorted(actual)}")
    for name in expected:
        if name in actual and not same_value(expected[name], actual[name]):
            problems.append(f"{name}: expected {expected[name]!r}, got {actual[name]!r}")
    return problems


__all__ = [
    "ARRIVAL_MS",
    "EVENT_MS",
    "Oracle",
    "aggregate",
    "diff_row",
    "distinct_count",
    "empty_value",
    "fixed_point_total",
    "hll_estimate",
    "hll_hash",
    "matches",
    "same_value",
    "window_start_ms",
]
