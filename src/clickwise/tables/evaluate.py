"""Evaluate aggregations of one key at one time over the runs of a feed.

Each run gives a mergeable partial (a count, a fixed-point sum, a candidate first/last, a set of
value hashes...); partials of all runs merge into the answer. The window at ``T`` covers events with
``floor(T - w, hop) <= event_ms < T`` (DESIGN.md section 3; hop 1 unless declared: exact); lifetime
is the table's retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clickwise.tables.feeds import FIXED_POINT_SCALE, AggPlan, Feed, RatioPlan
from clickwise.tables.point import distinct_in, first_valid_index, last_valid_index, locate
from clickwise.tables.runs import Run
from clickwise.tables.sketch import estimate_distinct

Partial = Any


class _Plan:
    """Per-feed constants for reads: the distinct (window, hop) pairs and which one each
    aggregation uses; for one-run reads, where each aggregation's first row is
    among the located edges, and what a key without events reads as."""

    __slots__ = ("pairs", "slots", "aggs", "windows", "hops", "reads", "empty")

    def __init__(self, feed: Feed) -> None:
        pairs: list[tuple[int, int]] = []
        slots = []
        for agg in feed.aggs:
            pair = (agg.window_ms, agg.hop_ms)
            if pair not in pairs:
                pairs.append(pair)
            slots.append(pairs.index(pair))
        self.pairs = pairs
        self.slots = slots
        self.aggs = feed.aggs
        self.windows = np.array([w for w, _ in pairs], dtype=np.int64)
        self.hops = np.array([h for _, h in pairs], dtype=np.int64)
        # edges from locate(): [lo, hi, end, start of window pair 0, ...]
        self.reads = [(agg.name, agg, 3 + slot) for agg, slot in zip(feed.aggs, slots, strict=True)]
        self.empty = {agg.name: _finish(agg, [], 0) for agg in feed.aggs}  # (no moment in it)


_PLANS: dict[int, _Plan] = {}


def _plan(feed: Feed) -> _Plan:
    plan = _PLANS.get(id(feed))
    if plan is None or plan.aggs is not feed.aggs:
        plan = _PLANS[id(feed)] = _Plan(feed)
    return plan


def evaluate_feed(
    feed: Feed, runs: Sequence[Run], key_hash: int | np.uint64, as_of_ms: int
) -> dict[str, Any]:
    """Every aggregation of ``feed`` for one key as of ``as_of_ms``."""
    plan = _plan(feed)
    if len(runs) == 1:  # the common case after compaction: one compiled search, no partials
        return _from_one_run(feed, plan, runs[0], key_hash, as_of_ms)
    slices = []
    for run in runs:
        lo, hi = run.key_slice(key_hash)
        if lo != hi:
            slices.append((run, lo, hi))
    if not slices:
        return {agg.name: _finish(agg, [], as_of_ms) for agg in feed.aggs}
    # bounds[0] is as_of_ms; bounds[1 + i] is the lower edge of window pair i
    bounds = [as_of_ms, *(((as_of_ms - w) // h) * h for w, h in plan.pairs)]
    if len(slices) == 1:  # the common case after compaction: no partials to merge
        run, lo, hi = slices[0]
        positions = (run.times[lo:hi].searchsorted(run.offsets(bounds)) + lo).tolist()
        end = positions[0]
        result = {}
        for agg, slot in zip(feed.aggs, plan.slots, strict=True):
            result[agg.name] = _single(agg, run, positions[slot + 1], end, as_of_ms)
        return result
    partials: list[list[Partial]] = [[] for _ in feed.aggs]
    for run, lo, hi in slices:
        times = run.times[lo:hi]
        offsets = run.offsets(bounds)
        if times[0] >= offsets[0]:
            continue
        positions = (times.searchsorted(offsets) + lo).tolist()
        end = positions[0]
        for index, (agg, slot) in enumerate(zip(feed.aggs, plan.slots, strict=True)):
            start = positions[slot + 1]
            if start < end:
                partials[index].append(_partial(agg, run, start, end))
    return {agg.name: _finish(agg, partials[i], as_of_ms) for i, agg in enumerate(feed.aggs)}


def _from_one_run(
    feed: Feed, plan: _Plan, run: Run, key_hash: int | np.uint64, as_of_ms: int
) -> dict[str, Any]:
    edges = np.empty(3 + len(plan.pairs), dtype=np.int64)
    found = locate(
        run.distinct,
        run.starts,
        run.times,
        run.base_ms,
        np.uint64(key_hash),
        as_of_ms,
        plan.windows,
        plan.hops,
        edges,
    )
    if not found:
        return dict(plan.empty)
    positions = edges.tolist()
    end = positions[2]
    return {name: _single(agg, run, positions[start], end, as_of_ms) for name, agg, start in plan.reads}


def prepare_run(feed: Feed, run: Run) -> None:
    """Build the cumulative sums reads of ``feed`` use on ``run`` now (on the updater's thread)
    rather than on the first read (tens of milliseconds for a run of millions of events)."""
    for agg in feed.aggs:  # (a sum needs no count of its rows: only a mean divides by it)
        if agg.op in ("count", "mean") and agg.valid_column in run.values:
            run.prefix(agg.valid_column)  # counts of included rows


def _single(agg: AggPlan, run: Run, start: int, end: int, as_of_ms: int) -> Any:
    """The final value from one run's rows ``[start, end)`` (same answers as partial + finish)."""
    op = agg.op
    if op == "count":
        if start >= end:
            return 0
        if agg.filter is None:
            return end - start
        prefix = run.prefix(agg.valid_column)
        return int(prefix[end] - prefix[start])
    if start >= end:
        return _finish(agg, [], as_of_ms)
    if op == "time_since_last":
        valid = run.values.get(agg.valid_column)
        index = end - 1 if valid is None else last_valid_index(valid, start, end)
        return None if index < 0 else as_of_ms - run.time_at(index)
    if op in ("first", "last"):
        return _first_or_last_one(agg, run, start, end, as_of_ms)
    if op == "distinct_count":
        count = distinct_in(run.values[agg.column], run.values[agg.valid_column], start, end, agg.exact_up_to)
        if count >= 0:
            return count  # above the exact bound (-1): the sketch of the general path
    if op in ("sum", "mean"):
        fixed = run.totals[agg.column]
        count = 0
        if op == "mean":
            counts = run.prefix(agg.valid_column)
            count = int(counts[end] - counts[start])
        return _finish(agg, [(int(fixed[end] - fixed[start]), count)], as_of_ms)
    return _finish(agg, [_partial(agg, run, start, end)], as_of_ms)


def _partial(agg: AggPlan, run: Run, start: int, end: int) -> Partial:
    op = agg.op
    valid_name = agg.valid_column
    has_mask = valid_name in run.values
    if op == "count":
        return _count(run, valid_name, start, end) if has_mask else end - start
    if op == "time_since_last":
        if not has_mask:
            return run.time_at(end - 1)
        index = last_valid_index(run.values[valid_name], start, end)
        return run.time_at(index) if index >= 0 else None
    if op in ("sum", "mean"):
        fixed = run.totals[agg.column]
        count = _count(run, valid_name, start, end) if op == "mean" else 0  # a sum ignores its count
        return int(fixed[end] - fixed[start]), count
    mask = run.values[valid_name][start:end]
    values = run.values[agg.column][start:end]
    if op == "distinct_count":
        return values[mask]
    if not mask.any():
        return None
    if op in ("min", "max"):
        chosen = values[mask]
        return run.decode(agg.column, chosen.min() if op == "min" else chosen.max())
    return _first_or_last(run, agg, start, end, mask)


def _count(run: Run, mask_name: str, start: int, end: int) -> int:
    prefix = run.prefix(mask_name)
    return int(prefix[end] - prefix[start])


def _first_or_last_one(agg: AggPlan, run: Run, start: int, end: int, as_of_ms: int) -> Any:
    """The first/last value of rows ``[start, end)`` of one run: the row itself unless another row
    of the same moment is beside it (then the general path breaks the tie)."""
    valid = run.values[agg.valid_column]
    last = agg.op == "last"
    index = last_valid_index(valid, start, end) if last else first_valid_index(valid, start, end)
    if index < 0:
        return None
    neighbour = index - 1 if last else index + 1
    if start <= neighbour < end and run.times[neighbour] == run.times[index]:
        return _finish(agg, [_first_or_last(run, agg, start, end, valid[start:end])], as_of_ms)
    return _py(run.decode(agg.column, run.values[agg.column][index]))


def _first_or_last(run: Run, agg: AggPlan, start: int, end: int, mask: np.ndarray) -> Partial:
    """(event_ms, arrival_ms, value) of the first/last included event; exact ties pick min/max value."""
    last = agg.op != "first"
    index = end - 1 - int(mask[::-1].argmax()) if last else start + int(mask.argmax())
    times, arrivals = run.times, run.arrivals
    neighbour = index + 1 if not last else index - 1  # rows of one moment are adjacent (time order)
    if not start <= neighbour < end or times[neighbour] != times[index]:  # no tie: the row itself
        arrival_ms = int(arrivals[index]) + run.arrival_base_ms if arrivals is not None else 0
        return run.time_at(index), arrival_ms, run.decode(agg.column, run.values[agg.column][index])
    hits = np.flatnonzero(mask) + start
    index = int(hits[0] if agg.op == "first" else hits[-1])
    tied = hits[times[hits] == times[index]]
    arrival_ms = 0
    if arrivals is not None:
        arrival_ms = int(arrivals[index]) + run.arrival_base_ms
        tied = tied[arrivals[tied] == arrivals[index]]
    candidates = [run.values[agg.column][i] for i in tied.tolist()]
    value = min(candidates) if agg.op == "first" else max(candidates)
    return run.time_at(index), arrival_ms, run.decode(agg.column, value)


def _finish(agg: AggPlan, partials: list[Partial], as_of_ms: int) -> Any:
    op = agg.op
    if op == "count":
        return int(sum(partials))
    if op in ("sum", "mean"):
        total = sum(p[0] for p in partials)
        count = sum(p[1] for p in partials)
        is_float = agg.field_type == "float"
        if op == "sum":
            return total / FIXED_POINT_SCALE if is_float else int(total)
        if count == 0:
            return None
        return (total / FIXED_POINT_SCALE if is_float else total) / count
    if op == "distinct_count":
        if not partials:
            return 0
        hashes = partials[0] if len(partials) == 1 else np.concatenate(partials)
        return estimate_distinct(hashes, agg.exact_up_to)
    present = [p for p in partials if p is not None]
    if not present:
        return None
    if op == "time_since_last":
        return as_of_ms - max(present)
    if op == "min":
        return _py(min(present))
    if op == "max":
        return _py(max(present))
    if op == "first":
        return _py(min(present, key=lambda p: (p[0], p[1], p[2]))[2])
    return _py(max(present, key=lambda p: (p[0], p[1], p[2]))[2])


def finish_ratios(ratios: Sequence[RatioPlan], values: dict[str, Any]) -> None:
    """Add ratio values computed from the numerator/denominator values already in ``values``."""
    for ratio in ratios:
        numerator = values[ratio.numerator]
        denominator = values[ratio.denominator]
        if numerator is None or denominator is None:
            values[ratio.name] = None
            continue
        if ratio.prior_value is not None and ratio.prior_weight is not None:
            numerator = numerator + ratio.prior_value * ratio.prior_weight
            denominator = denominator + ratio.prior_weight
        values[ratio.name] = None if not denominator else numerator / denominator


def _py(value: Any) -> Any:
    """A plain Python value (numpy scalars become int/float/bool)."""
    return value.item() if isinstance(value, np.generic) else value
