"""How a run stores its events, checked against the oracle's definition of each aggregation.

A run keeps event and arrival times as offsets from their minimum (int32 when the run spans less
than 24.8 days, int64 beyond) and summed columns as running totals. Neither may change an answer:
reads of one key (``evaluate_feed``) and of many pairs (``evaluate_feed_batch``) at moments inside
the run, at window edges and far outside the int32 range must equal a scan of the events, before
and after a file round trip, a merge and a retention cut; and a run built from batches added in any
time order (a catch-up's windows, then retried joins) equals the definition too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tables_oracle import ARRIVAL_MS, EVENT_MS, aggregate, empty_value, matches, same_value, window_start_ms

from clickwise.spec import parse_pipeline
from clickwise.tables import runs as runs_module
from clickwise.tables.batch import Pairs, evaluate_feed_batch
from clickwise.tables.evaluate import evaluate_feed
from clickwise.tables.feeds import Feed, table_feeds
from clickwise.tables.hashing import hash_text
from clickwise.tables.runs import Run, RunBuilder, build_run, drop_before, merge_runs

DAY = 86_400_000
T0 = 1_700_000_000_000

PIPELINE = parse_pipeline(
    """
version: 1
name: runs
streams:
  views:
    fields:
      view_id: string
      user: string
      price: {type: float, required: false}
      tag: {type: string, required: false}
      ts: int
    time: {field: ts, format: epoch_ms}
    event_id: view_id
tables:
  user:
    key: [user]
    aggregations:
      views_1h: {stream: views, op: count, window: 1h, hop: 1m}
      views_total: {stream: views, op: count, window: lifetime}
      spend_1d: {stream: views, op: sum, field: price, window: 1d, hop: 1h}
      cheap_spend_total: {stream: views, op: sum, field: price, window: lifetime,
                          filter: {field: price, op: lt, value: 1.0}}
      price_mean_total: {stream: views, op: mean, field: price, window: lifetime}
      tag_last_total: {stream: views, op: last, field: tag, window: lifetime}
      tag_first_1d: {stream: views, op: first, field: tag, window: 1d}
      tags_total: {stream: views, op: distinct_count, field: tag, window: lifetime}
      since_view: {stream: views, op: time_since_last, window: lifetime}
"""
)
FEED = table_feeds(PIPELINE, "user")[0]
AGGS = PIPELINE.tables["user"].aggregations
FIELD_TYPES = {"price": "float", "tag": "string"}


def _events(span_ms: int, count: int, seed: int) -> list[dict[str, Any]]:
    """Events in time order over ``span_ms`` (ties included), arrival times later than event times."""
    rng = random.Random(seed)
    times = sorted(T0 + rng.randrange(span_ms) // 1000 * 1000 for _ in range(count))
    return [
        {
            "user": rng.choice("abc"),
            "price": rng.choice([None, 0.25, 0.5, 1.75, 3.125]),
            "tag": rng.choice([None, "x", "y", "z"]),
            EVENT_MS: t,
            ARRIVAL_MS: t + rng.choice([0, 0, 5, 3 * DAY]),
        }
        for t in times
    ]


def _frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    frame = pl.DataFrame(events, schema={"user": pl.String, "price": pl.Float64, "tag": pl.String,
                                         EVENT_MS: pl.Int64, ARRIVAL_MS: pl.Int64})  # fmt: skip
    return frame.sort([EVENT_MS, ARRIVAL_MS], maintain_order=True)


def _run(feed: Feed, events: list[dict[str, Any]]) -> Run:
    run = build_run(feed, _frame(events))
    assert run is not None
    return run


def _expected(events: list[dict[str, Any]], user: str, as_of_ms: int) -> dict[str, Any]:
    mine = [e for e in events if e["user"] == user and e[EVENT_MS] < as_of_ms]
    answer = {}
    for name, agg in AGGS.items():
        low = (
            as_of_ms - PIPELINE.tables["user"].retention  # lifetime: what the table remembers
            if agg.window is None
            else window_start_ms(as_of_ms, agg.window, agg.hop_ms)
        )
        chosen = [e for e in mine if e[EVENT_MS] >= low and (agg.filter is None or matches(agg.filter, e))]
        field_type = FIELD_TYPES.get(agg.field or "")
        answer[name] = (
            aggregate(agg, chosen, as_of_ms, field_type) if chosen else empty_value(agg, field_type)
        )
    return answer


def _moments(events: list[dict[str, Any]], seed: int) -> list[int]:
    rng = random.Random(seed)
    times = [e[EVENT_MS] for e in events]
    inside = [rng.randrange(times[0] - DAY, times[-1] + DAY) for _ in range(30)]
    edges = [t + d for t in rng.sample(times, 10) for d in (0, 1, 3_600_000, 3_600_001, DAY, DAY + 1)]
    outside = [T0 - 100 * 365 * DAY, T0 - 30 * DAY, T0 + 30 * DAY, T0 + 100 * 365 * DAY]  # beyond int32
    return inside + edges + outside


def _check(run: Run, events: list[dict[str, Any]], moments: list[int]) -> None:
    pairs = [(user, moment) for user in "abcd" for moment in moments]
    batch = evaluate_feed_batch(
        FEED,
        run,
        Pairs.of(
            np.array([hash_text(u) for u, _ in pairs], dtype=np.uint64),
            np.array([m for _, m in pairs], dtype=np.int64),
        ),
    )
    batch_rows = {name: column.to_arrow().to_pylist() for name, column in batch.items()}
    for row, (user, moment) in enumerate(pairs):
        expected = _expected(events, user, moment)
        one = evaluate_feed(FEED, [run], hash_text(user), moment)
        for name, value in expected.items():
            assert same_value(value, one[name]), (name, user, moment, value, one[name])
            assert same_value(value, batch_rows[name][row]), (
                name,
                user,
                moment,
                value,
                batch_rows[name][row],
            )


@pytest.mark.parametrize(("span_ms", "dtype"), [(6 * 3_600_000, np.int32), (40 * DAY, np.int64)])
def test_offsets_and_totals_answer_like_the_definition(span_ms: int, dtype: type) -> None:
    events = _events(span_ms, 400, seed=span_ms % 97)
    run = _run(FEED, events)
    assert run.times.dtype == dtype
    assert run.arrivals is not None and run.arrivals.dtype == dtype  # (arrivals span 3 days more)
    assert set(run.totals) == {"v_spend_1d", "v_cheap_spend_total", "v_price_mean_total"}
    assert not set(run.totals) & set(run.values)  # a summed column is kept once, as its total
    moments = _moments(events, seed=1)
    _check(run, events, moments)

    reloaded = Run.from_bytes(run.to_bytes(), summed=FEED.summed_columns)
    assert reloaded.times.dtype == dtype and reloaded.base_ms == run.base_ms
    _check(reloaded, events, moments)

    half = len(events) // 2
    merged = merge_runs([_run(FEED, events[:half]), _run(FEED, events[half:])])
    _check(merged, events, moments)

    cutoff = events[len(events) // 3][EVENT_MS]
    kept = [e for e in events if e[EVENT_MS] >= cutoff]
    _check(drop_before(run, cutoff), kept, moments)


@pytest.mark.parametrize("seed", range(4))
def test_a_run_built_from_batches_in_any_order_answers_like_the_definition(seed: int) -> None:
    """Batches come in time order (windows) or not (joined events retried later); keys repeat
    across batches. Building with ``keys`` gives those keys' events only and keeps the batches."""
    rng = random.Random(seed)
    events = _events(2 * DAY, 600, seed=seed)
    cuts = sorted(rng.sample(range(1, len(events)), 4))
    parts = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    if seed % 2:
        rng.shuffle(parts)
    builder = RunBuilder(FEED)
    for part in parts:
        builder.add(_frame(part))
    moments = _moments(events, seed=seed)
    only_a = builder.build(keys=np.array([hash_text("a"), hash_text("nobody")], dtype=np.uint64))
    assert only_a is not None and only_a.key_texts.to_pylist() == ["a"]
    _check(only_a, [e for e in events if e["user"] == "a"], moments)
    assert len(builder) == len(events)  # (still every event)
    run = builder.build()
    assert run is not None and len(builder) == 0
    assert sorted(run.key_texts.to_pylist()) == sorted({e["user"] for e in events})
    _check(run, events, moments)


@pytest.mark.parametrize(
    ("sizes", "shuffle"),
    [([4200, 4300], False), ([4200, 4300], True), ([4500, 300, 4200], False), ([300, 4500, 4200], True)],
)
def test_batches_that_keep_their_few_keys_once_build_like_the_definition(
    sizes: list[int], shuffle: bool
) -> None:
    """Batches of more than 4,096 rows with few keys keep each key's text and hash once and a rank
    per row; a run from such batches, out of time order, or mixed with small batches that keep a
    hash per row, answers like the definition."""
    events = _events(2 * DAY, sum(sizes), seed=len(sizes))
    cuts = np.cumsum([0, *sizes])
    parts = [events[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    if shuffle:
        parts.reverse()
    builder = RunBuilder(FEED)
    for part in parts:
        builder.add(_frame(part))
    assert [b.distinct_hash is not None for b in builder._batches] == [len(p) > 4096 for p in parts]
    run = builder.build()
    assert run is not None and sorted(run.key_texts.to_pylist()) == ["a", "b", "c"]
    _check(run, events, _moments(events, seed=len(sizes))[::3])


def test_run_files_with_absolute_times_still_read() -> None:
    """Files written before times were stored as offsets hold absolute ``event_ms``/``arrival_ms``."""
    events = _events(6 * 3_600_000, 200, seed=5)
    run = _run(FEED, events)
    data = pa.py_buffer(run.to_bytes())
    size = int.from_bytes(data.slice(0, 8).to_pybytes(), "little")
    table = pq.read_table(pa.BufferReader(data.slice(8, size)))
    old = table.drop_columns(["event_offset_ms", "arrival_offset_ms"]).replace_schema_metadata(None)
    old = old.add_column(0, "arrival_ms", pa.array(run.arrival_ms())).add_column(
        0, "event_ms", pa.array(run.event_ms())
    )
    sink = pa.BufferOutputStream()
    pq.write_table(old, sink)
    first = sink.getvalue()
    legacy = b"".join([len(first).to_bytes(8, "little"), first, data.slice(8 + size)])
    reloaded = Run.from_bytes(legacy, summed=FEED.summed_columns)
    assert reloaded.base_ms == run.base_ms and np.array_equal(reloaded.times, run.times)
    assert reloaded.arrival_base_ms == run.arrival_base_ms
    assert reloaded.arrivals is not None and run.arrivals is not None
    assert np.array_equal(reloaded.arrivals, run.arrivals)
    _check(reloaded, events, _moments(events, seed=2))


def test_a_run_larger_than_its_size_bound_is_written_all_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run files are written into a buffer of an upper bound of their size; a file that does not
    fit (the bound is wrong) goes to a growing buffer instead, byte for byte the same."""
    events = _events(6 * 3_600_000, 300, seed=11)
    run = _run(FEED, events)
    expected = run.to_bytes()
    monkeypatch.setattr(runs_module, "_largest_parquet", lambda table: 64)
    assert run.to_bytes() == expected
    _check(Run.from_bytes(expected, summed=FEED.summed_columns), events, _moments(events, seed=3))
