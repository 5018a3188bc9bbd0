"""Retention never changes an answer: tables over spans several times their retention.

Events span more than 3x every retention of the pipeline, some arrive later than a retention (they
must go to dead letters, the same way however they are batched), and the tables drop old state as
they go. Every read inside a table's horizon must equal the brute-force oracle; a read before the
horizon of dropped state is refused; one catch-up of everything, micro-batches in arrival order, and
a replay with restarts all give the same answers.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from tables_oracle import EVENT_MS, Oracle, diff_row

from clickwise.events import Ingestor
from clickwise.spec import Pipeline, parse_pipeline
from clickwise.storage import open_root
from clickwise.tables import Tables
from clickwise.tables.engine import TableReadError
from clickwise.tables.retention import ArrivalWatermarks, lookback_ms
from clickwise.time import FixedClock

MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
SPAN_MS = 6 * HOUR  # > 3x the longest retention below (90m)

PIPELINE = """
version: 1
name: retention_check
allowed_lateness: 2m
streams:
  views:
    fields:
      view_id: string
      user: string
      region: {type: string, required: false}
      price: float
      ts: int
      arr: int
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: view_id
  clicks:
    fields:
      click_id: string
      view_id: string
      user: string
      ts: int
      arr: int
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: click_id
    joins:
      - {table: view_region, key: {view_id: view_id}, take: {region: region}}
tables:
  user:
    key: [user]
    retention: 90m
    aggregations:
      views_30m: {stream: views, op: count, window: 30m}
      views_hopped_30m: {stream: views, op: count, window: 30m, hop: 7m}
      views_total: {stream: views, op: count, window: lifetime}
      spend_total: {stream: views, op: sum, field: price, window: lifetime}
      last_price: {stream: views, op: last, field: price, window: lifetime}
      since_view: {stream: views, op: time_since_last, window: lifetime}
      clicks_total: {stream: clicks, op: count, window: lifetime}
  view_region:
    key: [view_id]
    retention: 40m
    aggregations:
      region: {stream: views, op: last, field: region, window: lifetime}
  region:
    key: [region]
    retention: 60m
    aggregations:
      views_20m: {stream: views, op: count, window: 20m}
      clicks_20m: {stream: clicks, op: count, window: 20m}
      clicks_total: {stream: clicks, op: count, window: lifetime}
"""


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return parse_pipeline(PIPELINE, source="test_retention")


def _records(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Views and clicks over SPAN_MS; most arrive within seconds, some minutes to hours late."""
    rng = random.Random(seed)

    def arrival(ts: int) -> int:
        roll = rng.random()
        if roll < 0.85:
            return ts + rng.choice([0, 0, 1, 500, 20_000])
        if roll < 0.95:
            return ts + rng.randrange(MINUTE, 30 * MINUTE)
        return ts + rng.randrange(40 * MINUTE, 3 * HOUR)  # past some or all retentions

    views = []
    for number in range(700):
        ts = T0 + rng.randrange(SPAN_MS)
        views.append(
            {
                "view_id": f"v{number}",
                "user": rng.choice("abcdef"),
                "region": rng.choice(["north", "south", "east", None]),
                "price": rng.choice([0.1, 0.25, 1.5, 3.0]),
                "ts": ts,
                "arr": arrival(ts),
            }
        )
    clicks = []
    for number in range(250):
        view = rng.choice(views)
        ts = view["ts"] + rng.choice([0, 1, 30_000, 10 * MINUTE, 39 * MINUTE, 45 * MINUTE])
        clicks.append({"click_id": f"c{number}", "view_id": view["view_id"], "user": view["user"], "ts": ts})
        clicks[-1]["arr"] = arrival(ts)
    return {"views": views, "clicks": clicks}


@contextmanager
def _root() -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="cw-retention-") as folder:
        yield open_root(Path(folder) / "root")


def _ingest(pipeline: Pipeline, root: Any, records: dict[str, list[dict[str, Any]]], tag: str) -> None:
    ingestor = Ingestor(pipeline, root, clock=FixedClock(T0 + SPAN_MS + 4 * HOUR))
    for stream in ("views", "clicks"):
        if records[stream]:
            counts = ingestor.ingest_table(
                pa.Table.from_pylist(records[stream]), stream, tag=f"{tag}-{stream}"
            )
            assert counts.rejected == 0


def _by_arrival(records: dict[str, list[dict[str, Any]]], step_ms: int) -> list[dict[str, list[Any]]]:
    """Micro-batches of what arrived in each ``step_ms`` (a stream's view of the same events)."""
    buckets: dict[int, dict[str, list[Any]]] = {}
    for stream, rows in records.items():
        for row in rows:
            buckets.setdefault(row["arr"] // step_ms, {"views": [], "clicks": []})[stream].append(row)
    return [buckets[moment] for moment in sorted(buckets)]


def _read_times(rng: random.Random, oracle: Oracle) -> list[int]:
    times = sorted({e[EVENT_MS] for stream in ("views", "clicks") for e in oracle.events(stream)})
    picks = rng.sample(times, 60)
    return sorted({t + d for t in picks for d in (0, 1)} | {T0 + SPAN_MS + HOUR})


def _answers(tables: Tables, oracle: Oracle, times: list[int]) -> dict[tuple[str, object, int], Any]:
    """Every table's rows at ``times`` (inside each table's horizon), checked against the oracle;
    reads before a horizon must be refused."""
    keys = {"user": list("abcdefz"), "region": ["north", "south", "east", "nowhere"], "view_region": []}
    keys["view_region"] = [f"v{n}" for n in range(0, 700, 37)]
    answers: dict[tuple[str, object, int], Any] = {}
    problems: list[str] = []
    for table, table_keys in keys.items():
        horizon = tables.exact_from_ms(table)
        for as_of in times:
            for key in table_keys:
                if horizon is not None and as_of < horizon:
                    with pytest.raises(TableReadError, match="retention"):
                        tables.get_one(table, key, as_of_ms=as_of)
                    continue
                got = tables.get_one(table, key, as_of_ms=as_of)
                problems += [
                    f"{table} {key!r} @ {as_of}: {p}" for p in diff_row(oracle.row(table, key, as_of), got)
                ]
                answers[(table, key, as_of)] = got
    assert not problems, "\n".join(problems[:20])
    return answers


def _oracle(pipeline: Pipeline, records: dict[str, list[dict[str, Any]]], root: Any) -> Oracle:
    return Oracle.from_lake(pipeline, root)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11])
def test_answers_do_not_depend_on_batching_or_dropped_state(pipeline: Pipeline, seed: int) -> None:
    records = _records(seed)
    rng = random.Random(seed)
    with _root() as whole_root, _root() as stream_root:
        _ingest(pipeline, whole_root, records, "all")
        whole = Tables.open(pipeline, whole_root, clock=FixedClock(T0 + SPAN_MS + 4 * HOUR))
        whole.catch_up()
        oracle = _oracle(pipeline, records, whole_root)
        times = _read_times(rng, oracle)
        expected = _answers(whole, oracle, times)

        streamed = Tables.open(pipeline, stream_root, clock=FixedClock(T0 + SPAN_MS + 4 * HOUR))
        batches = _by_arrival(records, 5 * MINUTE)
        for number, batch in enumerate(batches):
            _ingest(pipeline, stream_root, batch, f"b{number:04d}")
            streamed.catch_up()
            if number % 10 == 9:
                streamed.compact()  # drops state past retention as the watermark moves
            if number % 25 == 24:
                streamed = Tables.open(pipeline, stream_root, clock=FixedClock(T0 + SPAN_MS + 4 * HOUR))
        streamed.compact()
        assert streamed.counters()["expired_events"] == whole.counters()["expired_events"] > 0
        assert any(streamed.exact_from_ms(t) is not None for t in pipeline.tables), "nothing was dropped"
        got = _answers(streamed, _oracle(pipeline, records, stream_root), times)
        shared = set(got) & set(expected)
        assert len(shared) > len(got) // 2
        assert all(got[k] == expected[k] for k in shared)


def test_a_click_finds_its_impression_however_much_data_came_later(pipeline: Pipeline) -> None:
    """The reported defect: one catch-up over a span longer than the join table's retention dropped
    every early view (against the watermark at the end), so early clicks lost their region."""
    records = _records(5)
    for row in records["views"] + records["clicks"]:
        row["arr"] = row["ts"]  # nothing late
    with _root() as root:
        _ingest(pipeline, root, records, "all")
        tables = Tables.open(pipeline, root, clock=FixedClock(T0 + SPAN_MS + 4 * HOUR))
        report = tables.catch_up()
        assert report.expired == 0
        oracle = Oracle.from_lake(pipeline, root)
        first_hour = T0 + HOUR
        for region in ("north", "south", "east"):
            assert tables.get_one("region", region, as_of_ms=first_hour) == oracle.row(
                "region", region, first_hour
            )
        assert tables.get_one("region", "north", as_of_ms=first_hour)["clicks_total"] > 0


def test_lookback_covers_the_longest_window_and_lifetime(pipeline: Pipeline) -> None:
    assert lookback_ms(pipeline.tables["user"]) == 90 * MINUTE  # lifetime: the retention
    assert lookback_ms(pipeline.tables["region"]) == 60 * MINUTE


def test_arrival_watermarks_see_only_strictly_earlier_arrivals() -> None:
    event_ms = np.array([10, 500, 20, 30, 700])
    arrival_ms = np.array([5, 6, 6, 6, 9])
    marks = ArrivalWatermarks.of(event_ms, arrival_ms, high_ms=40)
    assert marks.seen(arrival_ms).tolist() == [40, 40, 40, 40, 500]
    assert marks.seen(np.array([0, 100])).tolist() == [40, 700]
