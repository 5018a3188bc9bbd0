"""Evaluate a feed's aggregations for many (key, time) pairs at once: the bulk read path.

Backfills, snapshots, histories and ``get_many`` ask for thousands to millions of (key, as-of)
pairs; evaluating them one by one in Python costs microseconds each. Here one run per feed is
searched once per pair in compiled loops (numba) and prefix sums give counts and sums, so a pair
costs tens of nanoseconds per aggregation. The answers equal :func:`evaluate_feed` exactly: the same
window bounds, tie rules and fixed-point sums, checked against the same oracle in the tests.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

from clickwise.tables.feeds import FIXED_POINT_SCALE, AggPlan, Feed, RatioPlan
from clickwise.tables.runs import Run, key_order
from clickwise.tables.sketch import (
    ALPHA,
    LINEAR_COUNTS,
    LINEAR_LIMIT,
    RANKS,
    REGISTERS,
    REST_BITS,
    estimate_from_registers,
    registers,
)

_NO_PREVIOUS = np.iinfo(np.int64).max  # rows left out by a mask are never a first occurrence
PREPARE_PARTS = 8
"""Key ranges a run's distinct-count links are split into when an executor builds them."""


@dataclass
class Column:
    """One aggregation for every pair: ``values`` where ``valid`` (None: all valid); text values are
    codes into ``labels``."""

    values: np.ndarray
    valid: np.ndarray | None = None
    labels: np.ndarray | None = None

    def to_arrow(self) -> pa.Array:
        mask = None if self.valid is None else ~self.valid
        if self.labels is None:
            return pa.array(self.values, mask=mask)
        codes = pa.array(self.values.astype(np.int32), mask=mask)
        texts = pa.array(self.labels, pa.string()) if len(self.labels) else pa.array([""], pa.string())
        return pa.DictionaryArray.from_arrays(codes, texts).cast(pa.string())


@dataclass
class Pairs:
    """(key hash, as-of time) pairs to evaluate, and the same pairs sorted by key (then time, as
    given) so that the searches walk each run forward."""

    key_hash: np.ndarray
    as_of_ms: np.ndarray
    known: np.ndarray
    order: np.ndarray
    sorted_hash: np.ndarray
    sorted_ms: np.ndarray
    sorted_known: np.ndarray

    @classmethod
    def of(cls, key_hash: np.ndarray, as_of_ms: np.ndarray, known: np.ndarray | None = None) -> Pairs:
        """``known[i]`` False marks a pair whose key is missing (a null key field): it reads as empty."""
        key_hash = np.ascontiguousarray(key_hash, dtype=np.uint64)
        as_of_ms = np.ascontiguousarray(as_of_ms, dtype=np.int64)
        known = np.ones(len(key_hash), dtype=np.bool_) if known is None else np.asarray(known, dtype=np.bool_)
        order = key_order(key_hash)[0].order  # stable: pairs in time order stay in time order per key
        return cls(key_hash, as_of_ms, known, order, key_hash[order], as_of_ms[order], known[order])

    def __len__(self) -> int:
        return len(self.key_hash)


def evaluate_feed_batch(feed: Feed, run: Run | None, pairs: Pairs) -> dict[str, Column]:
    """Every aggregation of ``feed`` for each pair over one run (in the pairs' given order)."""
    count = len(pairs)
    if run is None or len(run) == 0:
        return {agg.name: _empty(agg, count) for agg in feed.aggs}
    windows = sorted({(a.window_ms, a.hop_ms) for a in feed.aggs})
    positions = _locate(
        run.distinct,
        run.starts.astype(np.int64, copy=False),
        run.times,
        run.base_ms,
        pairs.sorted_hash,
        pairs.sorted_known,
        pairs.sorted_ms,
        pairs.order,
        np.array([w for w, _ in windows], dtype=np.int64),
        np.array([h for _, h in windows], dtype=np.int64),
    )
    lo, end = positions[0], positions[1]  # rows [lo, end) are the key's events before T
    columns: dict[str, Column] = {}
    for agg in feed.aggs:
        start = positions[2 + windows.index((agg.window_ms, agg.hop_ms))]
        columns[agg.name] = _aggregate(agg, run, lo, start, end, pairs.as_of_ms)
    return columns


def _empty(agg: AggPlan, count: int) -> Column:
    """What an empty window reads as: 0 for counts and sums, null otherwise."""
    op = agg.op
    if op in ("count", "distinct_count"):
        return Column(np.zeros(count, dtype=np.int64))
    if op == "sum":
        return Column(np.zeros(count, dtype=np.float64 if agg.field_type == "float" else np.int64))
    missing = np.zeros(count, dtype=np.bool_)
    if op == "mean":
        return Column(np.zeros(count, dtype=np.float64), missing)
    if op == "time_since_last":
        return Column(np.zeros(count, dtype=np.int64), missing)
    if agg.field_type == "string":
        return Column(np.zeros(count, dtype=np.int32), missing, np.zeros(0, dtype=object))
    dtypes = {"float": np.float64, "bool": np.bool_}
    return Column(np.zeros(count, dtype=dtypes.get(agg.field_type or "", np.int64)), missing)


def _aggregate(
    agg: AggPlan, run: Run, lo: np.ndarray, start: np.ndarray, end: np.ndarray, as_of_ms: np.ndarray
) -> Column:
    op = agg.op
    valid = run.values.get(agg.valid_column)
    if op == "count":
        if valid is None:
            return Column(end - start)
        prefix = run.prefix(agg.valid_column)
        return Column(prefix[end] - prefix[start])
    if op in ("sum", "mean"):
        return _sum_or_mean(agg, run, start, end)
    if op == "time_since_last":
        if valid is None:
            last = np.where(end > start, end - 1, -1)
        else:
            last = _last_valid(valid, start, end)
        found = last >= 0
        return Column(np.where(found, as_of_ms - run.event_ms(np.maximum(last, 0)), 0), found)
    assert valid is not None
    values = run.values[agg.column]
    labels = run.labels.get(agg.column)
    if op == "distinct_count":
        return Column(_distinct(agg, run, values, valid, lo, start, end))
    if op in ("min", "max"):
        chosen, found = _min_max(values, valid, start, end, op == "max")
        return Column(chosen, found, labels)
    first = op == "first"
    index = _first_valid(valid, start, end) if first else _last_valid(valid, start, end)
    arrivals = run.arrivals if run.arrivals is not None else np.zeros(0, dtype=np.int64)
    chosen = _pick_tied(run.times, arrivals, values, valid, index, start, end, first)
    return Column(chosen, index >= 0, labels)


def _sum_or_mean(agg: AggPlan, run: Run, start: np.ndarray, end: np.ndarray) -> Column:
    fixed = run.totals[agg.column]
    total = fixed[end] - fixed[start]
    is_float = agg.field_type == "float"
    if agg.op == "sum":
        return Column(total / FIXED_POINT_SCALE if is_float else total)
    counts = run.prefix(agg.valid_column)
    count = counts[end] - counts[start]
    amount = total / FIXED_POINT_SCALE if is_float else total.astype(np.float64)
    found = count > 0
    return Column(np.where(found, amount / np.maximum(count, 1), 0.0), found)


def _distinct(
    agg: AggPlan,
    run: Run,
    values: np.ndarray,
    valid: np.ndarray,
    lo: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """Exact distinct counts from each row's previous occurrence; above the bound, the same sketch
    estimate as the one-key path."""
    previous, firsts = _occurrences(run, agg)
    counts = _count_first_occurrences(previous, firsts, lo, start, end)
    over = np.flatnonzero(counts > agg.exact_up_to)
    if len(over):
        counts[over] = _sketch_estimates(values, valid, start[over], end[over])
    return counts


def _sketch_estimates(
    values: np.ndarray, valid: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """The HyperLogLog estimate of each window ``[start, end)`` (the same registers and estimate as
    :func:`estimate_distinct`). Windows sharing a first row and growing are folded into the same
    registers one new row at a time, so a heavy key's windows cost its rows once, not each time.

    The compiled fold gives each window's empty registers and its harmonic sum to within 1e-13;
    a window whose raw estimate is clearly in linear counting's range takes that estimate from its
    empty registers alone. The rest (large cardinalities, or a sum too close to the limit) get the
    exact computation from their registers.
    """
    order = np.lexsort((end, start))
    zeros, sums = _fold_windows(values, valid, start, end, order, REST_BITS, REGISTERS, RANKS)
    with np.errstate(divide="ignore"):
        raw = ALPHA * REGISTERS * REGISTERS / sums
    linear = (zeros > 0) & (raw <= LINEAR_LIMIT * (1 - 1e-9))
    estimates = LINEAR_COUNTS[np.where(linear, zeros, 0)]
    for i in np.flatnonzero(~linear).tolist():
        window = values[start[i] : end[i]][valid[start[i] : end[i]]]
        estimates[i] = estimate_from_registers(registers(window))
    return estimates


def _occurrences(run: Run, agg: AggPlan, executor: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the row of the same key's previous (valid) occurrence of its value, or -1;
    and how many rows so far were their key's first occurrence of their value (a prefix sum).
    Built on the first bulk read of the run (or by :func:`prepare_bulk`) and kept with it; with an
    ``executor``, ranges of keys are linked side by side."""
    name = f"{agg.column}<"
    previous = run._prefix.get(name)
    if previous is None:
        values, valid = run.values[agg.column], run.values[agg.valid_column]
        starts = run.starts.astype(np.int64, copy=False)
        previous = np.empty(len(values), dtype=np.int64)
        parts = 1 if executor is None else PREPARE_PARTS
        # key ranges holding about the same number of rows each
        bounds = np.unique(np.searchsorted(starts, np.linspace(0, len(values), parts + 1).astype(np.int64)))
        bounds[0], bounds[-1] = 0, len(starts) - 1

        def link(keys: tuple[int, int]) -> None:
            _previous_in_keys(values, valid, starts, keys[0], keys[1], previous)

        ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
        list((executor.map if executor is not None else map)(link, ranges))
        run._prefix[name] = previous
    firsts = run._prefix.get(f"{name}0")
    if firsts is None:
        firsts = run._prefix[f"{name}0"] = np.r_[np.int64(0), np.cumsum(previous < 0, dtype=np.int64)]
    return previous, firsts


def prepare_bulk(feed: Feed, run: Run, executor: Executor | None = None) -> None:
    """Build what bulk reads of ``feed`` keep with ``run`` (the links of distinct counts) now,
    rather than on the first read, split over ``executor`` when given: a backfill prepares its
    feeds before it starts, so its workers neither wait for nor repeat this work."""
    for agg in feed.aggs:
        if agg.op == "distinct_count":
            _occurrences(run, agg, executor)


def finish_ratios_batch(ratios: list[RatioPlan], columns: dict[str, Column]) -> None:
    """Add ratio columns computed from their numerator and denominator columns (same rules as
    :func:`clickwise.tables.evaluate.finish_ratios`)."""
    for ratio in ratios:
        numerator, denominator = columns[ratio.numerator], columns[ratio.denominator]
        top = numerator.values.astype(np.float64)
        bottom = denominator.values.astype(np.float64)
        valid = _both(numerator.valid, denominator.valid, len(top))
        if ratio.prior_value is not None and ratio.prior_weight is not None:
            top = top + ratio.prior_value * ratio.prior_weight
            bottom = bottom + ratio.prior_weight
        valid = valid & (bottom != 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            columns[ratio.name] = Column(np.where(valid, top / np.where(valid, bottom, 1.0), 0.0), valid)


def _both(first: np.ndarray | None, second: np.ndarray | None, count: int) -> np.ndarray:
    valid = np.ones(count, dtype=np.bool_)
    for mask in (first, second):
        if mask is not None:
            valid &= mask
    return valid


# --- compiled loops -------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _forward(times: np.ndarray, a: int, b: int, target: int) -> int:
    """The first row in ``[a, b)`` whose time is at least ``target`` (``b`` if none), galloping
    forward from ``a``: cheap when the answer is near ``a``."""
    step = 1
    while a + step <= b and times[a + step - 1] < target:
        a += step
        step *= 2
    high = min(b, a + step - 1)
    while a < high:
        middle = (a + high) >> 1
        if times[middle] < target:
            a = middle + 1
        else:
            high = middle
    return a


@numba.njit(cache=True, nogil=True)
def _backward(times: np.ndarray, a: int, b: int, target: int) -> int:
    """Like :func:`_forward`, galloping back from ``b``: cheap when the answer is near ``b``."""
    step = 1
    while b - step >= a and times[b - step] >= target:
        b -= step
        step *= 2
    low = max(a, b - step + 1)
    while low < b:
        middle = (low + b) >> 1
        if times[middle] < target:
            low = middle + 1
        else:
            b = middle
    return low


@numba.njit(cache=True, nogil=True)
def _locate(
    distinct: np.ndarray,
    key_starts: np.ndarray,
    times: np.ndarray,
    base_ms: int,
    key_hash: np.ndarray,
    known: np.ndarray,
    as_of_ms: np.ndarray,
    order: np.ndarray,
    window_ms: np.ndarray,
    hop_ms: np.ndarray,
) -> np.ndarray:
    """Row positions for pairs sorted by key hash (``order`` says where each came from, and where
    its answer goes): per pair, its key's first row (``lo``), the first
    row at or after its time (``end``; rows ``[lo, end)`` are the key's events before T) and, per
    window, the first row at or after ``floor(T - w, hop)``; returned as rows of one array.
    ``times`` are the run's event times minus ``base_ms``.

    Keys only move forward, and while the key stays the same and the time does not go back, every
    position only moves forward too, so each search gallops on from the last one.
    """
    count = len(as_of_ms)
    windows = len(window_ms)
    out = np.zeros((2 + windows, count), dtype=np.int64)
    previous = np.zeros(windows, dtype=np.int64)
    keys = len(distinct)
    position = 0  # the first distinct key >= the current pair's key
    last_hash = np.uint64(0)
    found = False
    started = False
    last_target = 0
    last_end = 0
    for i in range(count):
        if not known[i]:
            continue
        wanted = key_hash[i]
        fresh = not started or wanted != last_hash
        if fresh:
            step = 1  # gallop forward over the distinct keys
            while position + step <= keys and distinct[position + step - 1] < wanted:
                position += step
                step *= 2
            high = min(keys, position + step - 1)
            while position < high:
                middle = (position + high) >> 1
                if distinct[middle] < wanted:
                    position = middle + 1
                else:
                    high = middle
            found = position < keys and distinct[position] == wanted
            last_hash = wanted
            started = True
        if not found:
            continue
        low = key_starts[position]
        high = key_starts[position + 1]
        moment = as_of_ms[i]
        target = moment - base_ms
        moving_on = not fresh and target >= last_target
        last_end = _forward(times, last_end if moving_on else low, high, target)
        target_index = order[i]
        out[0, target_index] = low
        out[1, target_index] = last_end
        for w in range(windows):
            bound = ((moment - window_ms[w]) // hop_ms[w]) * hop_ms[w] - base_ms  # hops: absolute time
            if moving_on:
                previous[w] = _forward(times, previous[w], last_end, bound)
            elif times[low] >= bound:
                previous[w] = low
            else:
                previous[w] = _backward(times, low, last_end, bound)
            out[2 + w, target_index] = previous[w]
        last_target = target
    return out


@numba.njit(cache=True, nogil=True)
def _last_valid(valid: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    out = np.full(len(start), -1, dtype=np.int64)
    for i in range(len(start)):
        for j in range(end[i] - 1, start[i] - 1, -1):
            if valid[j]:
                out[i] = j
                break
    return out


@numba.njit(cache=True, nogil=True)
def _first_valid(valid: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    out = np.full(len(start), -1, dtype=np.int64)
    for i in range(len(start)):
        for j in range(start[i], end[i]):
            if valid[j]:
                out[i] = j
                break
    return out


@numba.njit(cache=True, nogil=True)
def _pick_tied(
    times: np.ndarray,
    arrival: np.ndarray,
    values: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    first: bool,
) -> np.ndarray:
    """The value at ``index``; among valid rows tied with it on (event time, arrival time), the
    smallest for ``first`` and the largest for ``last`` (the one-key path's tie rule)."""
    out = np.zeros(len(index), dtype=values.dtype)
    has_arrival = len(arrival) > 0
    for i in range(len(index)):
        k = index[i]
        if k < 0:
            continue
        best = values[k]
        step = 1 if first else -1
        j = k + step
        while start[i] <= j < end[i] and times[j] == times[k]:
            if has_arrival and arrival[j] != arrival[k]:
                break
            if valid[j]:
                if first and values[j] < best:
                    best = values[j]
                elif not first and values[j] > best:
                    best = values[j]
            j += step
        out[i] = best
    return out


@numba.njit(cache=True, nogil=True)
def _min_max(
    values: np.ndarray, valid: np.ndarray, start: np.ndarray, end: np.ndarray, largest: bool
) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(len(start), dtype=values.dtype)
    found = np.zeros(len(start), dtype=np.bool_)
    for i in range(len(start)):
        for j in range(start[i], end[i]):
            if not valid[j]:
                continue
            if not found[i] or (values[j] > out[i] if largest else values[j] < out[i]):
                out[i] = values[j]
                found[i] = True
    return out, found


@numba.njit(cache=True, nogil=True)
def _fold_windows(
    values: np.ndarray,
    valid: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    order: np.ndarray,
    rest_bits: int,
    size: int,
    ranks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per window (taken in ``order``: by start, then end), the empty registers and the harmonic sum
    ``sum(2 ** -register)`` of the HyperLogLog registers of its valid rows (index = the hash's top
    bits, rank = the leading zeros of the rest plus one, as :func:`clickwise.tables.sketch.registers`).
    A histogram of register values is kept beside the registers, so a sum costs ``ranks`` steps."""
    zeros = np.zeros(len(start), dtype=np.int64)
    sums = np.zeros(len(start), dtype=np.float64)
    regs = np.zeros(size, dtype=np.uint8)
    histogram = np.zeros(ranks, dtype=np.int64)
    mask = (np.uint64(1) << np.uint64(rest_bits)) - np.uint64(1)
    first, done = -1, -1
    for k in range(len(order)):
        i = order[k]
        if start[i] != first or end[i] < done:
            regs[:] = 0
            histogram[:] = 0
            histogram[0] = size
            first, done = start[i], start[i]
        for j in range(done, end[i]):
            if not valid[j]:
                continue
            value = values[j]
            index = value >> np.uint64(rest_bits)
            rest = value & mask
            length = 0
            while rest > 0:
                rest >>= np.uint64(1)
                length += 1
            rank = rest_bits - length + 1
            old = regs[index]
            if rank > old:
                regs[index] = rank
                histogram[old] -= 1
                histogram[rank] += 1
        done = end[i]
        zeros[i] = histogram[0]
        total = 0.0
        for rank in range(ranks - 1, -1, -1):  # small terms first
            total += histogram[rank] * math.ldexp(1.0, -rank)
        sums[i] = total
    return zeros, sums


@numba.njit(cache=True, nogil=True)
def _previous_in_keys(
    values: np.ndarray,
    valid: np.ndarray,
    starts: np.ndarray,
    first_key: int,
    end_key: int,
    previous: np.ndarray,
) -> None:
    """Within each of the keys ``[first_key, end_key)``, link every valid row to the previous valid
    row with the same value, in ``previous`` (rows left out by the mask never count as an occurrence)."""
    for key in range(first_key, end_key):
        low, high = starts[key], starts[key + 1]
        previous[low:high] = _NO_PREVIOUS
        rows = np.empty(high - low, dtype=np.int64)
        count = 0
        for j in range(low, high):
            if valid[j]:
                rows[count] = j
                count += 1
        rows = rows[:count]
        order = np.argsort(values[rows], kind="mergesort")  # stable: equal values stay in row order
        last_value = values[0]
        last_row = -1
        for k in range(count):
            row = rows[order[k]]
            if last_row >= 0 and values[row] == last_value:
                previous[row] = last_row
            else:
                previous[row] = -1
            last_value = values[row]
            last_row = row


@numba.njit(cache=True, nogil=True)
def _count_first_occurrences(
    previous: np.ndarray, firsts: np.ndarray, lo: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Rows in ``[start, end)`` whose value did not occur earlier in the window: distinct values.
    A window holding the key's whole history counts first occurrences from a prefix sum."""
    out = np.zeros(len(start), dtype=np.int64)
    for i in range(len(start)):
        low = start[i]
        if low == lo[i]:
            out[i] = firsts[end[i]] - firsts[low]
            continue
        total = 0
        for j in range(low, end[i]):
            if previous[j] < low:
                total += 1
        out[i] = total
    return out
