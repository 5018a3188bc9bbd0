"""The table engine against the brute-force oracle, on hypothesis-generated streams.

Streams go through the real ingest path into a lake (several batches, late events among them), the
engine catches up after each batch, and every read (``get_one``, ``get_many``, ``snapshot``,
``history``, reads at "now") must equal the oracle computed from the lake's events at that moment,
exactly. Read times include event times and the exact window edges (``T - w`` on an event, and the
first ``T`` whose ``floor(T - w, h)`` passes an event). Reopening the engine on the same root must
give the same answers without catching up again.

Skipped while ``clickwise.tables`` has no ``Tables``.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tables_oracle import ARRIVAL_MS, EVENT_MS, Oracle, diff_row, same_value

from clickwise.events import Ingestor
from clickwise.spec import Pipeline, parse_pipeline
from clickwise.storage import open_root
from clickwise.tables import Tables
from clickwise.time import FixedClock

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary
STEP = 30_000
SLOTS = 120  # events fall in [T0, T0 + 1h) plus small offsets
NOW_MS = T0 + 3 * HOUR  # "now" for the engine and for ingest
TIMES_PER_CHECK = 20

PIPELINE = """
version: 1
name: oracle_check
allowed_lateness: 1m
streams:
  views:
    fields:
      view_id: {type: string, max_length: 32}
      user: {type: string, required: false}
      region: {type: string, required: false}
      price: {type: float, required: false}
      qty: {type: int, required: false}
      tag: {type: string, required: false}
      ts: int
      arr: {type: int, required: false}
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: view_id
  clicks:
    fields:
      click_id: {type: string, max_length: 32}
      view_id: {type: string, required: false}
      user: {type: string, required: false}
      ts: int
      arr: {type: int, required: false}
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: click_id
    joins:
      - {table: view_region, key: {view_id: view_id}, take: {region: region}}
tables:
  user:
    key: [user]
    aggregations:
      views_10m: {stream: views, op: count, window: 10m, hop: 2m}
      views_total: {stream: views, op: count, window: lifetime}
      qty_sum_10m: {stream: views, op: sum, field: qty, window: 10m}
      price_sum_30m: {stream: views, op: sum, field: price, window: 30m, hop: 7m}
      price_mean_10m: {stream: views, op: mean, field: price, window: 10m, hop: 3m}
      qty_mean_total: {stream: views, op: mean, field: qty, window: lifetime}
      price_min_30m: {stream: views, op: min, field: price, window: 30m, hop: 5m}
      price_max_total: {stream: views, op: max, field: price, window: lifetime}
      qty_max_10m: {stream: views, op: max, field: qty, window: 10m, hop: 2m}
      tag_first_10m: {stream: views, op: first, field: tag, window: 10m}
      tag_last_total: {stream: views, op: last, field: tag, window: lifetime}
      qty_last_10m: {stream: views, op: last, field: qty, window: 10m, hop: 2m}
      price_first_total: {stream: views, op: first, field: price, window: lifetime}
      tags_10m: {stream: views, op: distinct_count, field: tag, window: 10m, exact_up_to: 3}
      tags_total: {stream: views, op: distinct_count, field: tag, window: lifetime, exact_up_to: 3}
      qtys_total: {stream: views, op: distinct_count, field: qty, window: lifetime, exact_up_to: 3}
      prices_30m: {stream: views, op: distinct_count, field: price, window: 30m, exact_up_to: 3}
      big_views_30m: {stream: views, op: count, window: 30m, filter: {field: qty, op: ge, value: 5}}
      tagged_total: {stream: views, op: count, window: lifetime, filter: {field: tag, op: in, value: [x, y]}}
      cheap_spend_total:
        {stream: views, op: sum, field: price, window: lifetime, filter: {field: price, op: lt, value: 1.0}}
      clicks_10m: {stream: clicks, op: count, window: 10m, hop: 2m}
      ctr_10m: {op: ratio, numerator: clicks_10m, denominator: views_10m}
      ctr_smooth_10m:
        {op: ratio, numerator: clicks_10m, denominator: views_10m, prior: {value: 0.25, weight: 3}}
      since_view: {stream: views, op: time_since_last, window: lifetime}
      since_click_10m: {stream: clicks, op: time_since_last, window: 10m}
  user_region:
    key: [user, region]
    aggregations:
      views_30m: {stream: views, op: count, window: 30m}
      price_sum_total: {stream: views, op: sum, field: price, window: lifetime}
      clicks_total: {stream: clicks, op: count, window: lifetime}
  view_region:
    key: [view_id]
    retention: 2d
    aggregations:
      region: {stream: views, op: last, field: region, window: lifetime}
  region:
    key: [region]
    aggregations:
      views_10m: {stream: views, op: count, window: 10m}
      clicks_10m: {stream: clicks, op: count, window: 10m}
      ctr_10m: {op: ratio, numerator: clicks_10m, denominator: views_10m}
      spend_per_click:
        {op: ratio, numerator: spend_10m, denominator: clicks_10m, prior: {value: 1.5, weight: 2}}
      spend_10m: {stream: views, op: sum, field: price, window: 10m}
      not_x_total: {stream: views, op: count, window: lifetime, filter: {field: tag, op: ne, value: x}}
  everything:
    key: []
    aggregations:
      views_10m: {stream: views, op: count, window: 10m, hop: 4m}
      clicks_total: {stream: clicks, op: count, window: lifetime}
      price_mean_total: {stream: views, op: mean, field: price, window: lifetime}
      qty_sum_total: {stream: views, op: sum, field: qty, window: lifetime}
      untagged_total: {stream: views, op: count, window: lifetime, filter: {field: tag, op: is_null}}
      ctr_total: {op: ratio, numerator: clicks_total, denominator: views_10m, prior: {value: 0.1, weight: 10}}
"""

USERS = ["a", "b", "c"]
REGIONS = ["north", "south", "east"]
TAGS = ["x", "y", "z", "w", "v"]
OFFSETS = [0, 0, 0, 1, 999, STEP - 1]
VIEW_SCHEMA = pa.schema(
    [
        ("view_id", pa.string()),
        ("user", pa.string()),
        ("region", pa.string()),
        ("price", pa.float64()),
        ("qty", pa.int64()),
        ("tag", pa.string()),
        ("ts", pa.int64()),
        ("arr", pa.int64()),
    ]
)
CLICK_SCHEMA = pa.schema(
    [
        ("click_id", pa.string()),
        ("view_id", pa.string()),
        ("user", pa.string()),
        ("ts", pa.int64()),
        ("arr", pa.int64()),
    ]
)
SCHEMAS = {"views": VIEW_SCHEMA, "clicks": CLICK_SCHEMA}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return parse_pipeline(PIPELINE, source="test_tables_vs_oracle")


# --- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Raw records per batch (``batches[i][stream]``), where to reopen the engine, a seed for reads."""

    batches: list[dict[str, list[dict[str, Any]]]]
    reopen_after: list[bool]
    seed: int

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [r for batch in self.batches for r in batch.get(stream, [])]


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


_prices = _optional(
    st.one_of(
        st.sampled_from([0.1, 0.2, 0.3, 2.5e-9, 1.5, 0.0, 999.999999999]),
        st.floats(-1000, 1000, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    )
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n_batches = draw(st.integers(1, 3))
    batches: list[dict[str, list[dict[str, Any]]]] = [{"views": [], "clicks": []} for _ in range(n_batches)]
    views: list[tuple[int, dict[str, Any]]] = []
    for number in range(draw(st.integers(0, 30))):
        if views and draw(st.booleans()):  # exact ties on event time are common in real logs
            ts = views[draw(st.integers(0, len(views) - 1))][1]["ts"]
        else:
            ts = T0 + draw(st.integers(0, SLOTS)) * STEP + draw(st.sampled_from(OFFSETS))
        record = {
            "view_id": f"v{number}",
            "user": draw(_optional(st.sampled_from(USERS))),
            "region": draw(_optional(st.sampled_from(REGIONS))),
            "price": draw(_prices),
            "qty": draw(_optional(st.integers(-5, 12))),
            "tag": draw(_optional(st.sampled_from(TAGS))),
            "ts": ts,
            "arr": ts + draw(st.sampled_from([0, 0, 0, 1, 5_000])),
        }
        views.append((draw(st.integers(0, n_batches - 1)), record))
    for batch, record in views:
        batches[batch]["views"].append(record)
    for number in range(draw(st.integers(0, 20))):
        if views and draw(st.integers(0, 4)) > 0:
            view_batch, view = views[draw(st.integers(0, len(views) - 1))]
            # A click never reaches the lake before its view, so its join never changes afterwards
            # (test_join_sees_a_source_event_that_arrives_later covers the other case).
            batch = draw(st.integers(view_batch, n_batches - 1))
            view_id = view["view_id"]
            user = view["user"] if draw(st.booleans()) else draw(_optional(st.sampled_from(USERS)))
            ts = view["ts"] + draw(st.sampled_from([0, 0, 1, -1, STEP, 600_000]))
        else:
            batch = draw(st.integers(0, n_batches - 1))
            view_id = draw(st.sampled_from(["nope", None]))
            user = draw(_optional(st.sampled_from(USERS)))
            ts = T0 + draw(st.integers(0, SLOTS)) * STEP + draw(st.sampled_from(OFFSETS))
        arrival = ts + draw(st.sampled_from([0, 1, 5_000]))
        batches[batch]["clicks"].append(
            {"click_id": f"c{number}", "view_id": view_id, "user": user, "ts": ts, "arr": arrival}
        )
    seed = draw(st.integers(0, 2**32 - 1))
    for batch in batches:
        for records in batch.values():
            random.Random(seed).shuffle(records)
    reopen = draw(st.lists(st.booleans(), min_size=n_batches, max_size=n_batches))
    return Scenario(batches, reopen, seed)


# --- running a scenario -------------------------------------------------------------------------


@contextmanager
def _engine_root() -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="cw-tables-") as folder:
        yield open_root(Path(folder) / "root")


def _ingest(ingestor: Ingestor, batch: dict[str, list[dict[str, Any]]], number: int) -> None:
    for stream in ("views", "clicks"):  # a join's source first: see the note in scenarios()
        records = batch.get(stream, [])
        if records:
            table = pa.Table.from_pylist(records, schema=SCHEMAS[stream])
            counts = ingestor.ingest_table(table, stream, tag=f"batch{number:02d}-{stream}")
            assert counts.rejected == 0, f"the generator made invalid {stream} records"


def _open(pipeline: Pipeline, root: Any) -> Any:
    return Tables.open(pipeline, root, clock=FixedClock(NOW_MS))


def _close(tables: Any) -> None:
    close = getattr(tables, "close", None)
    if close is not None:
        close()


def run_scenario(pipeline: Pipeline, scenario: Scenario, *, times_per_check: int = TIMES_PER_CHECK) -> None:
    """Ingest batch by batch, catching up and checking every read against the oracle after each."""
    rng = random.Random(scenario.seed)
    keys = _query_keys(pipeline, scenario)
    with _engine_root() as root:
        ingestor = Ingestor(pipeline, root, clock=FixedClock(NOW_MS))
        tables = _open(pipeline, root)
        try:
            tables.catch_up()
            _check(tables, Oracle.from_lake(pipeline, root), keys, [T0, NOW_MS], rng, "empty lake")
            oracle = None
            for number, batch in enumerate(scenario.batches):
                _ingest(ingestor, batch, number)
                tables.catch_up()
                oracle = Oracle.from_lake(pipeline, root)
                times = _read_times(pipeline, oracle, rng, times_per_check)
                _check(tables, oracle, keys, times, rng, f"after batch {number}")
                if scenario.reopen_after[number]:
                    _close(tables)
                    tables = _open(pipeline, root)
                    _check(tables, oracle, keys, times, rng, f"reopened after batch {number}")
            assert oracle is not None
            _close(tables)
            tables = _open(pipeline, root)
            times = _read_times(pipeline, oracle, rng, times_per_check)
            _check(tables, oracle, keys, times, rng, "reopened at the end, before catch_up")
            tables.catch_up()
            _check(tables, oracle, keys, times, rng, "reopened at the end, after a no-op catch_up")
        finally:
            _close(tables)


def _query_keys(pipeline: Pipeline, scenario: Scenario) -> dict[str, list[object]]:
    """Every key a scenario can produce, plus one that never occurs."""
    view_ids = [r["view_id"] for r in scenario.records("views")]
    view_ids = random.Random(scenario.seed).sample(view_ids, min(40, len(view_ids)))
    keys: dict[str, list[object]] = {
        "user": [*USERS, "nobody"],
        "user_region": [*((u, r) for u in USERS for r in REGIONS), ("a", "nowhere")],
        "view_region": [*view_ids, "nope"],
        "region": [*REGIONS, "nowhere"],
        "everything": [None],
    }
    assert set(keys) == set(pipeline.tables)
    return keys


def _read_times(pipeline: Pipeline, oracle: Oracle, rng: random.Random, count: int) -> list[int]:
    """Event times, their neighbours and the exact window edges around them, sampled."""
    edges = {
        (agg.window, agg.hop_ms)
        for table in pipeline.tables.values()
        for agg in table.aggregations.values()
        if agg.window is not None
    }
    event_times = sorted({e[EVENT_MS] for stream in pipeline.streams for e in oracle.events(stream)})
    candidates: set[int] = set()
    for t in event_times:
        candidates |= {t - 1, t, t + 1}
        for window, hop in edges:
            leaves = (t // hop + 1) * hop + window  # the first T whose window no longer holds t
            candidates |= {t + window, leaves - 1, leaves}
    chosen = set(rng.sample(sorted(candidates), min(count, len(candidates))))
    chosen |= {T0, NOW_MS}
    if event_times:
        chosen |= {event_times[0], event_times[-1] + 1}
    return sorted(chosen)


# --- comparing ----------------------------------------------------------------------------------


class _Problems:
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.found: list[str] = []

    def row(self, what: str, expected: dict[str, object], actual: object) -> None:
        if not isinstance(actual, dict):
            self.found.append(f"{what}: expected a dict, got {actual!r}")
            return
        for problem in diff_row(expected, actual):
            self.found.append(f"{what}: {problem}")

    def check(self) -> None:
        if self.found:
            shown = "\n  ".join(self.found[:25])
            more = f"\n  ... and {len(self.found) - 25} more" if len(self.found) > 25 else ""
            pytest.fail(f"{len(self.found)} differences from the oracle ({self.stage}):\n  {shown}{more}")


def _check(
    tables: Any,
    oracle: Oracle,
    keys: dict[str, list[object]],
    times: Sequence[int],
    rng: random.Random,
    stage: str,
) -> None:
    problems = _Problems(stage)
    for table, table_keys in keys.items():
        for as_of in times:
            expected = [oracle.row(table, key, as_of) for key in table_keys]
            actual = tables.get_many(table, list(table_keys), as_of_ms=as_of)
            if len(actual) != len(table_keys):
                problems.found.append(
                    f"{table}.get_many at {as_of}: {len(actual)} rows for {len(table_keys)} keys"
                )
                continue
            for key, want, got in zip(table_keys, expected, actual, strict=True):
                problems.row(f"{table}.get_many([..{key!r}..], as_of_ms={as_of})", want, got)
        for as_of in rng.sample(list(times), min(3, len(times))):
            for key in table_keys:
                got = tables.get_one(table, key, as_of_ms=as_of)
                problems.row(
                    f"{table}.get_one({key!r}, as_of_ms={as_of})", oracle.row(table, key, as_of), got
                )
            _check_snapshot(problems, tables, oracle, table, as_of)
        key = rng.choice(table_keys)
        problems.row(
            f"{table}.get_one({key!r}) at now", oracle.row(table, key, NOW_MS), tables.get_one(table, key)
        )
        _check_history(problems, tables, oracle, table, key, rng)
    problems.check()


def _check_snapshot(problems: _Problems, tables: Any, oracle: Oracle, table: str, as_of: int) -> None:
    definition = oracle.pipeline.tables[table]
    what = f"{table}.snapshot(as_of_ms={as_of})"
    snapshot = tables.snapshot(table, as_of)
    columns = set(snapshot.column_names)
    wanted = {*definition.key, *definition.aggregations}
    if columns != wanted:
        problems.found.append(f"{what}: columns {sorted(columns)}, expected {sorted(wanted)}")
        return
    got: dict[object, dict[str, object]] = {}
    for record in snapshot.to_pylist():
        parts = tuple(record.pop(field) for field in definition.key)
        key = oracle.public_key(table, parts)
        if key in got:
            problems.found.append(f"{what}: key {key!r} appears twice")
        got[key] = record
    expected = oracle.snapshot(table, as_of)
    if set(got) != set(expected):
        problems.found.append(f"{what}: keys {sorted(got, key=repr)}, expected {sorted(expected, key=repr)}")
    for key in set(got) & set(expected):
        problems.row(f"{what}[{key!r}]", expected[key], got[key])


def _check_history(
    problems: _Problems, tables: Any, oracle: Oracle, table: str, key: object, rng: random.Random
) -> None:
    every = rng.choice([60_000, 90_001, 7 * 60_000])
    start = T0 - rng.choice([0, 1, 59_999, 600_000])
    end = start + every * rng.randint(0, 12) + rng.choice([0, 1])
    what = f"{table}.history({key!r}, {start}, {end}, {every})"
    expected = oracle.history(table, key, start, end, every)
    got = tables.history(table, key, start, end, every).to_pylist()
    if len(got) != len(expected):
        problems.found.append(f"{what}: {len(got)} rows, expected {len(expected)}")
        return
    for want, row in zip(expected, got, strict=True):
        problems.row(f"{what} at {want['as_of_ms']}", want, row)


# --- the tests ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_engine_equals_oracle_on_random_streams(pipeline: Pipeline, scenario: Scenario) -> None:
    run_scenario(pipeline, scenario)


def _view(number: int, ts: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "view_id": f"v{number}",
        "user": "a",
        "region": "north",
        "price": None,
        "qty": None,
        "tag": None,
        "ts": ts,
        "arr": ts,
    }
    record.update(fields)
    return record


def _click(number: int, ts: int, view_id: str | None, **fields: Any) -> dict[str, Any]:
    return {"click_id": f"c{number}", "view_id": view_id, "user": "a", "ts": ts, "arr": ts, **fields}


def test_window_edges_ties_and_late_events(pipeline: Pipeline) -> None:
    """Hand-placed events on the edges of every window, read at every candidate time."""
    edge = T0 + 20 * 60_000
    views = [
        _view(0, T0, price=0.1, qty=5, tag="x"),
        _view(1, T0 + 1, price=0.2, qty=7, tag="y", arr=T0 + 5),
        _view(2, T0 + 1, price=2.5e-9, qty=2, tag="z", arr=T0 + 5),
        _view(3, T0 + 1, price=None, qty=9, tag="w", arr=T0 + 2),
        _view(4, edge - 1, price=3.0, qty=-1, tag="v", region="south"),
        _view(5, edge, price=1.5, qty=12, tag="x", user="b"),
        _view(6, edge + 600_000, price=0.3, qty=0, tag=None),
    ]
    late = [_view(7, T0 + 120_000, price=0.7, qty=6, tag="y"), _view(8, edge - 1, price=0.0, tag="z")]
    clicks = [_click(0, T0 + 1, "v1"), _click(1, edge, "v5", user="b"), _click(2, edge + 5, "nope")]
    late_clicks = [_click(3, T0 + 120_000, "v7"), _click(4, T0 + 119_999, "v7")]
    scenario = Scenario(
        batches=[{"views": views, "clicks": clicks}, {"views": late, "clicks": late_clicks}],
        reopen_after=[True, False],
        seed=7,
    )
    run_scenario(pipeline, scenario, times_per_check=400)


def test_distinct_counts_past_the_bound_follow_the_sketch(pipeline: Pipeline) -> None:
    """Thousands of distinct values: the sketch's estimate, not the exact count, over merged tiles.

    With a few dozen values a sketch estimate equals the exact count, so only a big set tells a
    correct sketch (hash, register index, rank, estimate) from a wrong one.
    """
    rng = random.Random(5)
    views = [
        _view(
            number,
            T0 + rng.randrange(0, HOUR),
            tag=f"t{number}",
            qty=number,
            price=number / 7,
            user=rng.choice(["a", "a", "b"]),
        )
        for number in range(3_000)
    ]
    batches = [{"views": views[:1_800], "clicks": []}, {"views": views[1_800:], "clicks": []}]
    scenario = Scenario(batches=batches, reopen_after=[False, True], seed=5)
    run_scenario(pipeline, scenario, times_per_check=12)
    oracle = Oracle(pipeline, {"views": [{**v, EVENT_MS: v["ts"], ARRIVAL_MS: v["arr"]} for v in views]})
    exact = len({v["tag"] for v in views if v["user"] == "a"})
    assert oracle.value("user", "a", "tags_total", NOW_MS) != exact  # so this test can tell them apart


def test_join_sees_a_source_event_that_arrives_later(pipeline: Pipeline) -> None:
    """A click ingested before its view still counts under the view's region once the view lands.

    The join is defined on event time ("as of the click's time, inclusive"), not on what had
    arrived when the click was first applied.
    """
    t = T0 + 30 * 60_000
    scenario = Scenario(
        batches=[
            {"views": [], "clicks": [_click(0, t, "v0"), _click(1, t - 1, "v0")]},
            {"views": [_view(0, t, region="east", user="c")], "clicks": []},
        ],
        reopen_after=[False, False],
        seed=11,
    )
    run_scenario(pipeline, scenario, times_per_check=100)
    with _engine_root() as root:
        ingestor = Ingestor(pipeline, root, clock=FixedClock(NOW_MS))
        tables = _open(pipeline, root)
        try:
            for number, batch in enumerate(scenario.batches):
                _ingest(ingestor, batch, number)
                tables.catch_up()
            row = tables.get_one("region", "east", as_of_ms=t + 1)
            assert same_value(1, row["clicks_10m"]) and same_value(1, row["views_10m"]), row
        finally:
            _close(tables)
