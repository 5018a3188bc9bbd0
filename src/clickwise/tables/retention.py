"""Retention: which events a table takes and which state it may drop, never changing an answer.

A table with ``retention: R`` remembers each event for ``R`` (DESIGN.md section 3):

- Its ``lifetime`` aggregations cover ``T - R <= event_ms < T`` (a time to live, like Feast's
  ``ttl``); a window may not be longer than ``R``.
- It takes an event that arrives at most ``R`` behind the watermark it arrived to:
  ``event_ms >= seen - allowed_lateness - R``, where ``seen`` is the highest event time among the
  events that arrived *strictly before* it (by arrival time; events of one arrival moment arrived
  together). Older events go to dead letters. This depends on the events and their arrival times
  only, never on how they were batched, so a file ingest, a replay in micro-batches and a
  stream give the same tables.
- An event that a stream join fills reads its join tables as of its own time, so a feed that needs
  the join's output takes it only when it is also within each join table's retention.
- Reads as of ``T >= W - R`` (``W``: the current watermark) stay exact. They look back at most
  :func:`lookback_ms` from ``T``, so the updater may drop events older than ``W - R - lookback``.
  Reads before the horizon of what was dropped are refused (:func:`exact_from_ms`), never answered
  from partial state.

>>> marks = ArrivalWatermarks.of(
...     event_ms=np.array([100, 500, 90, 40]), arrival_ms=np.array([1, 2, 2, 3]), high_ms=None
... )
>>> marks.seen(np.array([1, 2, 3, 4])).tolist()  # highest event time that arrived before each moment
[-4611686018427387904, 100, 500, 500]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clickwise.spec import Pipeline, TableDef
from clickwise.tables.feeds import Feed, table_feeds
from clickwise.time import format_duration_ms, format_ms

NOTHING_SEEN = -(2**62)
"""``seen`` before any event (far enough from int64's end that subtracting durations is safe)."""


def lookback_ms(table: TableDef) -> int:
    """How far back from ``T`` a read of ``table`` as of ``T`` looks: the longest window (with its
    hop's tail), or the retention for lifetime aggregations."""
    longest = 0
    for agg in table.aggregations.values():
        if agg.op == "ratio":
            continue
        span = table.retention if agg.window is None else agg.window + agg.hop_ms - 1
        longest = max(longest, span)
    return longest


def drop_cutoff_ms(table: TableDef, watermark_ms: int) -> int:
    """Events older than this may be dropped: no read as of ``T >= watermark - retention`` needs them."""
    return watermark_ms - table.retention - lookback_ms(table)


def exact_from_ms(table: TableDef, dropped_before_ms: int | None) -> int | None:
    """The earliest read time still answered exactly once events before ``dropped_before_ms`` were
    dropped (``None``: nothing was dropped, every time is exact)."""
    if dropped_before_ms is None:
        return None
    return dropped_before_ms + lookback_ms(table)


def feed_retention_ms(pipeline: Pipeline, feed: Feed) -> tuple[int, list[str]]:
    """How far behind the watermark an event may be and still be taken by ``feed``: its table's
    retention, or a shorter one of the tables its stream joins read when the feed takes a join's
    output (those tables are returned too)."""
    inputs = set(feed.input_fields())
    joined = [j.table for j in pipeline.streams[feed.stream].joins if set(j.take) & inputs]
    shortest = min([pipeline.tables[feed.table].retention, *(pipeline.tables[t].retention for t in joined)])
    return shortest, joined


def past_retention(
    pipeline: Pipeline, stream: str, event_ms: np.ndarray, seen_ms: int | None
) -> dict[str, tuple[int, str]]:
    """Per table fed by ``stream``: how many of ``event_ms`` (events that arrived together, after
    every event applied so far, whose highest time is ``seen_ms``) the table does not take, and why.
    (Feeds that also read a join count its tables' retention, as the engine does.)"""
    if seen_ms is None or len(event_ms) == 0:
        return {}
    found: dict[str, tuple[int, str]] = {}
    for name in pipeline.tables:
        feed = next((f for f in table_feeds(pipeline, name) if f.stream == stream), None)
        if feed is None:
            continue
        retention, _ = feed_retention_ms(pipeline, feed)
        count = int(np.count_nonzero(event_ms < seen_ms - pipeline.allowed_lateness - retention))
        if count:
            reason = (
                f"older than the {format_duration_ms(retention)} retention of table {name!r} behind the "
                f"watermark ({format_ms(seen_ms - pipeline.allowed_lateness)})"
            )
            found[name] = (count, reason)
    return found


@dataclass(frozen=True)
class ArrivalWatermarks:
    """The highest event time seen before each arrival moment, over a set of events (and ``high_ms``,
    the highest event time of everything applied before them)."""

    moments: np.ndarray  # distinct arrival times, ascending
    before: np.ndarray  # before[i]: highest event time of events that arrived before moments[i]

    @classmethod
    def of(cls, event_ms: np.ndarray, arrival_ms: np.ndarray, high_ms: int | None) -> ArrivalWatermarks:
        start = NOTHING_SEEN if high_ms is None else int(high_ms)
        if len(arrival_ms) == 0:
            return cls(np.empty(0, np.int64), np.full(1, start, np.int64))
        order = np.argsort(arrival_ms, kind="stable")
        arrivals = np.asarray(arrival_ms, np.int64)[order]
        events = np.asarray(event_ms, np.int64)[order]
        first = np.flatnonzero(np.r_[True, arrivals[1:] != arrivals[:-1]])
        group_high = np.maximum.reduceat(events, first)
        through = np.maximum.accumulate(np.maximum(group_high, start))  # through moments[i] included
        before = np.empty(len(first) + 1, np.int64)
        before[0] = start
        before[1:] = through
        return cls(arrivals[first], before)

    def seen(self, arrival_ms: np.ndarray) -> np.ndarray:
        """For each arrival time, the highest event time that arrived strictly before it."""
        return self.before[np.searchsorted(self.moments, arrival_ms, side="left")]
