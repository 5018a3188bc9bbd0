"""The backfill against independent oracles, on hypothesis-generated streams and hand-placed edges.

Records go through the real ingest path into a lake (1-3 batches, late events, exact ties on event
time), then :func:`clickwise.dataset.backfill` writes a training set, which is read back with plain
pyarrow / ``csv`` (``dataset_helpers``) and checked row by row, exactly:

- table features equal the brute-force table oracle (``tables_oracle.Oracle.row``) for the key read
  from the exposure's own fields, as of the exposure's time (a null key field reads as a key
  without events);
- event features equal the raw record's field, time parts the UTC part of the event time, derived
  features Python float arithmetic with "null in, null out, division by zero gives null";
- the label equals a brute-force scan of the raw outcome records:
  ``t - tolerance <= outcome_ms < t + horizon`` with every match field equal and not null;
- ``label_mature`` is ``t + horizon <= watermark`` with the watermark computed from the raw records
  (highest event time minus the allowed lateness);
- the range, the partition files, ``_dataset.json`` and the report; CSV, SageMaker CSV and the
  refusals that keep existing data safe.
"""

from __future__ import annotations

import functools
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_helpers import (
    META_FILE,
    Row,
    derived_value,
    files_under,
    flatten,
    partition_of,
    read_csv_rows,
    read_meta,
    read_parquet_rows,
    read_sagemaker_rows,
    time_part,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tables_oracle import Oracle, diff_row

from clickwise.dataset import BackfillReport, DatasetError, backfill
from clickwise.events import Ingestor
from clickwise.spec import LabelDef, Pipeline, parse_pipeline
from clickwise.spec.features import DerivedFeature, EventFeature, TableFeature
from clickwise.storage import Root, open_root
from clickwise.time import FixedClock

MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary (2023-11-14T22:00Z)
STEP = 30_000
SLOTS = 300  # views fall in [T0, T0 + 2.5 h] plus small offsets: three or four hour partitions
NOW_MS = T0 + 6 * HOUR  # the ingest clock (arrival times come from the records)
LATENESS = MINUTE  # the pipeline's allowed_lateness

PIPELINE = Template(
    """
version: 1
name: backfill_check
allowed_lateness: 1m
streams:
  views:
    fields:
      view_id: {type: string, max_length: 32}
      user: {type: string, required: false}
      referrer: {type: string, required: false}
      region: {type: string, required: false}
      price: {type: float, required: false}
      qty: {type: int, required: false}
      promo: {type: bool, required: false}
      ts: int
      arr: {type: int, required: false}
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: view_id
  clicks:
    fields:
      click_id: {type: string, max_length: 32}
      shown_id: {type: string, required: false}
      user: {type: string, required: false}
      ts: int
      arr: {type: int, required: false}
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: click_id
tables:
  user:
    key: [user]
    aggregations:
      views_10m: {stream: views, op: count, window: 10m, hop: 2m}
      views_total: {stream: views, op: count, window: lifetime}
      price_sum_30m: {stream: views, op: sum, field: price, window: 30m, hop: 7m}
      qty_sum_10m: {stream: views, op: sum, field: qty, window: 10m}
      price_mean_10m: {stream: views, op: mean, field: price, window: 10m, hop: 3m}
      qty_max_10m: {stream: views, op: max, field: qty, window: 10m, hop: 2m}
      price_min_30m: {stream: views, op: min, field: price, window: 30m, hop: 5m}
      region_last_total: {stream: views, op: last, field: region, window: lifetime}
      promo_first_10m: {stream: views, op: first, field: promo, window: 10m}
      regions_total: {stream: views, op: distinct_count, field: region, window: lifetime, exact_up_to: 2}
      big_views_30m: {stream: views, op: count, window: 30m, filter: {field: qty, op: ge, value: 5}}
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
      price_max_total: {stream: views, op: max, field: price, window: lifetime}
  region:
    key: [region]
    aggregations:
      views_10m: {stream: views, op: count, window: 10m}
      qty_mean_total: {stream: views, op: mean, field: qty, window: lifetime}
  everything:
    key: []
    aggregations:
      views_10m: {stream: views, op: count, window: 10m, hop: 4m}
      clicks_total: {stream: clicks, op: count, window: lifetime}
      ctr_total: {op: ratio, numerator: clicks_total, denominator: views_10m}
features:
  user_views_10m: {table: user, aggregation: views_10m}
  user_views_total: {table: user, aggregation: views_total}
  user_price_sum_30m: {table: user, aggregation: price_sum_30m}
  user_qty_sum_10m: {table: user, aggregation: qty_sum_10m}
  user_price_mean_10m: {table: user, aggregation: price_mean_10m}
  user_qty_max_10m: {table: user, aggregation: qty_max_10m}
  user_price_min_30m: {table: user, aggregation: price_min_30m}
  user_region_last: {table: user, aggregation: region_last_total}
  user_promo_first_10m: {table: user, aggregation: promo_first_10m}
  user_regions_total: {table: user, aggregation: regions_total}
  user_big_views_30m: {table: user, aggregation: big_views_30m}
  user_clicks_10m: {table: user, aggregation: clicks_10m}
  user_ctr_10m: {table: user, aggregation: ctr_10m}
  user_ms_since_view: {table: user, aggregation: since_view}
  user_ms_since_click_10m: {table: user, aggregation: since_click_10m}
  referrer_views_total: {table: user, aggregation: views_total, key: {user: referrer}}
  referrer_ctr_smooth_10m: {table: user, aggregation: ctr_smooth_10m, key: {user: referrer}}
  pair_views_30m: {table: user_region, aggregation: views_30m}
  pair_price_max: {table: user_region, aggregation: price_max_total}
  region_views_10m: {table: region, aggregation: views_10m}
  region_qty_mean: {table: region, aggregation: qty_mean_total}
  all_views_10m: {table: everything, aggregation: views_10m}
  all_ctr: {table: everything, aggregation: ctr_total}
  price: {event: price}
  qty: {event: qty}
  promo: {event: promo}
  region: {event: region}
  hour: {time_part: hour_of_day}
  minute: {time_part: minute_of_hour}
  weekday: {time_part: day_of_week}
  ctr_vs_all: {op: divide, inputs: [user_ctr_10m, all_ctr]}
  views_per_click: {op: divide, inputs: [user_views_10m, user_clicks_10m]}
  price_times_qty: {op: multiply, inputs: [price, qty]}
  qty_plus_views: {op: add, inputs: [qty, user_views_10m]}
  price_above_mean: {op: subtract, inputs: [price, user_price_mean_10m]}
  chained: {op: divide, inputs: [price_above_mean, views_per_click]}
label:
  name: clicked
  exposure: views
  outcome: clicks
  match: $match
  horizon: $horizon
  tolerance: $tolerance
"""
)

# Every feature's kind and value type, written from the pipeline above (not from clickwise).
FEATURES: dict[str, tuple[str, str]] = {
    "user_views_10m": ("table", "int"),
    "user_views_total": ("table", "int"),
    "user_price_sum_30m": ("table", "float"),
    "user_qty_sum_10m": ("table", "int"),
    "user_price_mean_10m": ("table", "float"),
    "user_qty_max_10m": ("table", "int"),
    "user_price_min_30m": ("table", "float"),
    "user_region_last": ("table", "string"),
    "user_promo_first_10m": ("table", "bool"),
    "user_regions_total": ("table", "int"),
    "user_big_views_30m": ("table", "int"),
    "user_clicks_10m": ("table", "int"),
    "user_ctr_10m": ("table", "float"),
    "user_ms_since_view": ("table", "int"),
    "user_ms_since_click_10m": ("table", "int"),
    "referrer_views_total": ("table", "int"),
    "referrer_ctr_smooth_10m": ("table", "float"),
    "pair_views_30m": ("table", "int"),
    "pair_price_max": ("table", "float"),
    "region_views_10m": ("table", "int"),
    "region_qty_mean": ("table", "float"),
    "all_views_10m": ("table", "int"),
    "all_ctr": ("table", "float"),
    "price": ("event", "float"),
    "qty": ("event", "int"),
    "promo": ("event", "bool"),
    "region": ("event", "string"),
    "hour": ("time", "int"),
    "minute": ("time", "int"),
    "weekday": ("time", "int"),
    "ctr_vs_all": ("derived", "float"),
    "views_per_click": ("derived", "float"),
    "price_times_qty": ("derived", "float"),
    "qty_plus_views": ("derived", "float"),
    "price_above_mean": ("derived", "float"),
    "chained": ("derived", "float"),
}
ARROW_TYPES = {
    "int": pa.types.is_integer,
    "float": pa.types.is_float64,
    "string": pa.types.is_string,
    "bool": pa.types.is_boolean,
}

USERS = ["a", "b", "c"]
KEY_USERS = [*USERS, ""]  # an empty text is a key like any other; only null means "no key"
REGIONS = ["north", "south", "east"]
OFFSETS = [0, 0, 0, 1, 999, STEP - 1]
VIEW_SCHEMA = pa.schema(
    [
        ("view_id", pa.string()),
        ("user", pa.string()),
        ("referrer", pa.string()),
        ("region", pa.string()),
        ("price", pa.float64()),
        ("qty", pa.int64()),
        ("promo", pa.bool_()),
        ("ts", pa.int64()),
        ("arr", pa.int64()),
    ]
)
CLICK_SCHEMA = pa.schema(
    [
        ("click_id", pa.string()),
        ("shown_id", pa.string()),
        ("user", pa.string()),
        ("ts", pa.int64()),
        ("arr", pa.int64()),
    ]
)
SCHEMAS = {"views": VIEW_SCHEMA, "clicks": CLICK_SCHEMA}


@dataclass(frozen=True)
class LabelSpec:
    """How the generated pipeline's label is set: match fields (exposure -> outcome), in ms."""

    two_fields: bool = False
    horizon_ms: int = 5 * MINUTE
    tolerance_ms: int = 0

    @property
    def match(self) -> dict[str, str]:
        return {"view_id": "shown_id", "user": "user"} if self.two_fields else {"view_id": "shown_id"}


@functools.cache
def make_pipeline(spec: LabelSpec = LabelSpec()) -> Pipeline:
    match = "{" + ", ".join(f"{k}: {v}" for k, v in spec.match.items()) + "}"
    text = PIPELINE.substitute(match=match, horizon=spec.horizon_ms, tolerance=spec.tolerance_ms)
    return parse_pipeline(text, source="test_backfill")


def without_label(pipeline: Pipeline) -> Pipeline:
    text = PIPELINE.substitute(match="[view_id]", horizon="5m", tolerance="0s")
    return parse_pipeline(text.split("\nlabel:")[0] + "\n", source="test_backfill (no label)")


# --- the oracles ------------------------------------------------------------------------------


def brute_label(label: LabelDef, view: Mapping[str, Any], clicks: Sequence[Mapping[str, Any]]) -> int:
    """1 when some raw outcome matches on every field (equal, not null) within
    ``[t - tolerance, t + horizon)``; duplicates cannot count twice in a 0/1 label."""
    t = view["ts"]
    for click in clicks:
        same = all(
            view.get(mine) is not None and click.get(theirs) is not None and view[mine] == click[theirs]
            for mine, theirs in label.match.items()
        )
        if same and t - label.tolerance <= click["ts"] < t + label.horizon:
            return 1
    return 0


def table_key(pipeline: Pipeline, feature: TableFeature, view: Mapping[str, Any]) -> object:
    """The key a table feature reads, from the exposure's own fields (as the oracle takes keys)."""
    fields = pipeline.tables[feature.table].key
    mapping = feature.key if feature.key is not None else {name: name for name in fields}
    parts = tuple(view.get(mapping[name]) for name in fields)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts


def raw_watermark(views: Sequence[Mapping[str, Any]], clicks: Sequence[Mapping[str, Any]]) -> int | None:
    times = [r["ts"] for r in [*views, *clicks]]
    return max(times) - LATENESS if times else None


def expected_rows(
    pipeline: Pipeline,
    oracle: Oracle,
    views: Sequence[Mapping[str, Any]],
    clicks: Sequence[Mapping[str, Any]],
    from_ms: int,
    to_ms: int,
) -> dict[str, Row]:
    """event_id -> the training row, from the oracles alone."""
    label = pipeline.label
    assert label is not None
    watermark = raw_watermark(views, clicks)
    reads: dict[tuple[str, object, int], dict[str, object]] = {}
    rows: dict[str, Row] = {}
    for view in views:
        t = view["ts"]
        if not from_ms <= t < to_ms:
            continue
        row: Row = {"event_id": view["view_id"], "event_ms": t}
        for name, feature in pipeline.features.items():
            if isinstance(feature, TableFeature):
                key = table_key(pipeline, feature, view)
                if (feature.table, key, t) not in reads:
                    reads[(feature.table, key, t)] = oracle.row(feature.table, key, t)
                row[name] = reads[(feature.table, key, t)][feature.aggregation]
            elif isinstance(feature, EventFeature):
                row[name] = view.get(feature.event) if feature.event else time_part(t, str(feature.time_part))
            else:
                assert isinstance(feature, DerivedFeature)
                row[name] = derived_value(feature.op, row[feature.inputs[0]], row[feature.inputs[1]])
        row[label.name] = brute_label(label, view, clicks)
        row["label_mature"] = watermark is not None and t + label.horizon <= watermark
        assert view["view_id"] not in rows, "the generator made two views with one id"
        rows[view["view_id"]] = row
    return rows


# --- checking a written set -------------------------------------------------------------------


def check_dataset(
    pipeline: Pipeline,
    out: Path,
    report: BackfillReport,
    expected: dict[str, Row],
    *,
    from_ms: int,
    to_ms: int,
    watermark: int | None,
) -> list[Row]:
    """Every file, column, row and count of a Parquet set against the expected rows; returns the
    rows as read (partition by partition)."""
    label = pipeline.label
    assert label is not None
    columns = ["event_id", "event_ms", *pipeline.features, label.name, "label_mature"]
    partitions = sorted({partition_of(row["event_ms"]) for row in expected.values()})
    files = [f"{p}/part-00000.parquet" for p in partitions]
    assert files_under(out) == sorted([*files, META_FILE])

    by_partition, file_columns = read_parquet_rows(out)
    problems: list[str] = []
    seen: set[str] = set()
    for partition, rows in by_partition.items():
        assert file_columns[partition] == columns, (partition, file_columns[partition])
        order = [(row["event_ms"], row["event_id"]) for row in rows]
        assert order == sorted(order), f"{partition}: rows not in (event_ms, event_id) order"
        for row in rows:
            event_id = row["event_id"]
            if event_id in seen:
                problems.append(f"{event_id}: written twice")
                continue
            seen.add(event_id)
            if event_id not in expected:
                problems.append(f"{event_id} at {row['event_ms']}: not an exposure of the range")
                continue
            if partition_of(row["event_ms"]) != partition:
                problems.append(f"{event_id} at {row['event_ms']}: in partition {partition}")
            problems += [f"{event_id} at {row['event_ms']}: {p}" for p in diff_row(expected[event_id], row)]
    problems += [f"{missing}: missing" for missing in sorted(set(expected) - seen)]
    if problems:
        shown = "\n  ".join(problems[:30])
        pytest.fail(f"{len(problems)} differences from the oracles:\n  {shown}")

    positives = sum(row[label.name] for row in expected.values())
    mature = sum(row["label_mature"] for row in expected.values())
    meta = read_meta(out)
    assert meta["fingerprint"] == pipeline.fingerprint()
    assert meta["pipeline"] == pipeline.name
    assert meta["format"] == "parquet"
    assert meta["label"] == label.name
    assert meta["columns"] == columns
    assert meta["features"] == [{"name": n, "kind": k, "type": t} for n, (k, t) in FEATURES.items()]
    assert meta["files"] == files
    assert (meta["rows"], meta["positives"]) == (len(expected), positives)
    assert (meta["from_ms"], meta["to_ms"]) == (from_ms, to_ms)
    assert meta["watermark_ms"] == watermark
    assert meta["horizon_ms"] == label.horizon
    assert (report.rows, report.positives, report.mature) == (len(expected), positives, mature)
    assert (report.partitions, sorted(report.files)) == (len(files), files)
    assert (report.from_ms, report.to_ms) == (from_ms, to_ms)
    return [row for partition in sorted(by_partition) for row in by_partition[partition]]


def check_arrow_types(out: Path) -> None:
    """Each feature's Parquet type fits the type ``_dataset.json`` declares."""
    for relative in files_under(out):
        if relative.endswith(".parquet"):
            schema = pq.read_schema(out / relative)
            for name, (_, kind) in FEATURES.items():
                field_type = schema.field(name).type
                assert ARROW_TYPES[kind](field_type), f"{relative}: {name} is {field_type}, declared {kind}"
            assert pa.types.is_integer(schema.field("clicked").type)
            assert pa.types.is_boolean(schema.field("label_mature").type)


# --- scenarios --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    label: LabelSpec
    batches: list[dict[str, list[dict[str, Any]]]]
    from_ms: int
    to_ms: int

    def records(self, stream: str, upto: int | None = None) -> list[dict[str, Any]]:
        batches = self.batches if upto is None else self.batches[: upto + 1]
        return [r for batch in batches for r in batch[stream]]


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
    label = LabelSpec(
        two_fields=draw(st.booleans()),
        horizon_ms=draw(st.sampled_from([5 * MINUTE, 10 * MINUTE])),
        tolerance_ms=draw(st.sampled_from([0, 0, 1, 30_000])),
    )
    n_batches = draw(st.integers(1, 3))
    batches: list[dict[str, list[dict[str, Any]]]] = [{"views": [], "clicks": []} for _ in range(n_batches)]
    views: list[dict[str, Any]] = []
    for number in range(draw(st.integers(0, 40))):
        if views and draw(st.integers(0, 2)) == 0:  # exact ties on event time
            ts = views[draw(st.integers(0, len(views) - 1))]["ts"]
        else:
            ts = T0 + draw(st.integers(0, SLOTS)) * STEP + draw(st.sampled_from(OFFSETS))
        view = {
            "view_id": f"v{number:02d}",
            "user": draw(_optional(st.sampled_from(KEY_USERS))),
            "referrer": draw(_optional(st.sampled_from([*KEY_USERS, "stranger"]))),
            "region": draw(_optional(st.sampled_from(REGIONS))),
            "price": draw(_prices),
            "qty": draw(_optional(st.integers(-3, 12))),
            "promo": draw(_optional(st.booleans())),
            "ts": ts,
            "arr": ts + draw(st.sampled_from([0, 0, 1, 5_000])),
        }
        views.append(view)
        batches[draw(st.integers(0, n_batches - 1))]["views"].append(view)
    edges = [
        -label.tolerance_ms - 1,
        -label.tolerance_ms,
        -1,
        0,
        1,
        label.horizon_ms - 1,
        label.horizon_ms,
        label.horizon_ms + 1,
        STEP,
    ]
    for number in range(draw(st.integers(0, 25))):
        if views and draw(st.integers(0, 3)) > 0:
            view = views[draw(st.integers(0, len(views) - 1))]
            shown: str | None = view["view_id"]
            user = view["user"] if draw(st.integers(0, 3)) > 0 else draw(_optional(st.sampled_from(USERS)))
            ts = view["ts"] + draw(st.sampled_from(edges))
        else:
            shown = draw(st.sampled_from(["nope", None]))
            user = draw(_optional(st.sampled_from(USERS)))
            ts = T0 + draw(st.integers(0, SLOTS)) * STEP + draw(st.sampled_from(OFFSETS))
        click = {"click_id": f"c{number:02d}", "shown_id": shown, "user": user, "ts": ts, "arr": ts}
        batches[draw(st.integers(0, n_batches - 1))]["clicks"].append(click)
        if draw(st.integers(0, 5)) == 0:  # sent twice: the same click, arriving later
            batch = draw(st.integers(0, n_batches - 1))
            batches[batch]["clicks"].append({**click, "arr": ts + 2_000})
    # the range: everything, or edges on event times and on a grid (not hour-aligned), both sides
    times = sorted({v["ts"] for v in views})
    grid = st.integers(-4, SLOTS // 2 + 4).map(lambda n: T0 + n * STEP * 2)
    moments = st.one_of(grid, st.sampled_from(times)) if times else grid
    from_ms = draw(st.one_of(st.just(T0 - HOUR), moments))
    to_ms = draw(
        st.one_of(
            st.just(T0 + 4 * HOUR), moments, st.integers(HOUR // 2, 3 * HOUR).map(lambda d: from_ms + d)
        )
    )
    if to_ms <= from_ms:
        to_ms = from_ms + 1 + draw(st.integers(0, 2 * HOUR))
    seed = draw(st.integers(0, 2**32 - 1))
    for batch in batches:
        for records in batch.values():
            random.Random(seed).shuffle(records)
    return Scenario(label, batches, from_ms, to_ms)


# --- running ----------------------------------------------------------------------------------


def ingest(pipeline: Pipeline, root: Root, batch: Mapping[str, list[dict[str, Any]]], tag: str) -> None:
    ingestor = Ingestor(pipeline, root, clock=FixedClock(NOW_MS))
    for stream in ("views", "clicks"):
        records = batch.get(stream, [])
        if records:
            counts = ingestor.ingest_table(
                pa.Table.from_pylist(records, schema=SCHEMAS[stream]), stream, tag=f"{tag}-{stream}"
            )
            assert counts.rejected == 0, f"the generator made invalid {stream} records"


def backfill_and_check(
    pipeline: Pipeline,
    root: Root,
    out: Path,
    views: Sequence[Mapping[str, Any]],
    clicks: Sequence[Mapping[str, Any]],
    from_ms: int,
    to_ms: int,
    **options: Any,
) -> list[Row]:
    report = backfill(pipeline, root, str(out), from_ms, to_ms, **options)
    oracle = Oracle.from_lake(pipeline, root)
    expected = expected_rows(pipeline, oracle, views, clicks, from_ms, to_ms)
    watermark = raw_watermark(views, clicks)
    return check_dataset(pipeline, out, report, expected, from_ms=from_ms, to_ms=to_ms, watermark=watermark)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_backfill_equals_the_oracles_on_random_streams(scenario: Scenario) -> None:
    """After the first batch, and again (with ``overwrite``, same folder) after the last one: the
    second run catches the tables up from their saved state and replaces the first set."""
    pipeline = make_pipeline(scenario.label)
    with tempfile.TemporaryDirectory(prefix="cw-backfill-") as folder:
        root = open_root(Path(folder) / "root")
        out = Path(folder) / "set"
        last = len(scenario.batches) - 1
        for number, batch in enumerate(scenario.batches):
            ingest(pipeline, root, batch, f"batch{number:02d}")
            if number == 0 or number == last:
                rows = backfill_and_check(
                    pipeline,
                    root,
                    out,
                    scenario.records("views", number),
                    scenario.records("clicks", number),
                    scenario.from_ms,
                    scenario.to_ms,
                    overwrite=number > 0,
                )
        check_arrow_types(out)
    _note_coverage(scenario, rows)


def _note_coverage(scenario: Scenario, rows: Sequence[Row]) -> None:
    """What the scenario exercised (``pytest --hypothesis-show-statistics`` lists the shares)."""
    views = {view["view_id"]: view for view in scenario.records("views")}
    event(f"{len(scenario.batches)} batches")
    event(f"tolerance {scenario.label.tolerance_ms} ms")
    event("rows: " + ("none" if not rows else "1-9" if len(rows) < 10 else "10+"))
    checks = {
        "a positive label": any(row["clicked"] for row in rows),
        "a negative label": any(not row["clicked"] for row in rows),
        "an immature label": any(not row["label_mature"] for row in rows),
        "a tie on event time": len({row["event_ms"] for row in rows}) < len(rows),
        "a null key": any(views[row["event_id"]]["user"] is None for row in rows),
        "a division by zero": any(row["user_views_10m"] and row["user_clicks_10m"] == 0 for row in rows),
        "two partitions": len({partition_of(row["event_ms"]) for row in rows}) > 1,
    }
    for what, seen in checks.items():
        if seen:
            event(f"has {what}")


# --- hand-placed edges ------------------------------------------------------------------------


def _view(view_id: str, ts: int, **fields: Any) -> dict[str, Any]:
    record = {
        "view_id": view_id,
        "user": "a",
        "referrer": None,
        "region": "north",
        "price": 1.5,
        "qty": 2,
        "promo": None,
        "ts": ts,
        "arr": ts,
    }
    record.update(fields)
    return record


def _click(click_id: str, shown_id: str | None, ts: int, **fields: Any) -> dict[str, Any]:
    return {"click_id": click_id, "shown_id": shown_id, "user": "a", "ts": ts, "arr": ts, **fields}


@pytest.mark.parametrize("tolerance_ms", [0, 30_000])
def test_labels_at_the_edges_of_the_horizon_and_the_tolerance(tmp_path: Path, tolerance_ms: int) -> None:
    """Outcomes exactly at ``t`` count, exactly at ``t + horizon`` do not; ``t - tolerance`` counts,
    one ms before it does not; duplicates count once; a null or different match field never
    matches. Checked against labels written by hand and against the brute-force scan."""
    spec = LabelSpec(two_fields=True, horizon_ms=15 * MINUTE, tolerance_ms=tolerance_ms)
    pipeline = make_pipeline(spec)
    horizon = spec.horizon_ms
    t = T0 + 20 * MINUTE
    views = [_view(f"v{n}", t + n * 2 * HOUR // 30) for n in range(11)]
    views.append(_view("vnull", t, user=None))
    times = {v["view_id"]: v["ts"] for v in views}
    clicks = [
        _click("c0", "v0", times["v0"]),  # exactly at t: included
        _click("c1", "v1", times["v1"] + horizon),  # exactly at t + horizon: excluded
        _click("c2", "v2", times["v2"] + horizon - 1),  # the last included ms
        _click("c3", "v3", times["v3"] - tolerance_ms),  # the tolerance's first ms
        _click("c4", "v4", times["v4"] - tolerance_ms - 1),  # just before it
        _click("c5", "v5", times["v5"] + 1),  # sent twice, and a second click
        _click("c5", "v5", times["v5"] + 1, arr=times["v5"] + 9_000),
        _click("c5b", "v5", times["v5"] + 2),
        _click("c6", "v6", times["v6"] + horizon),  # two outside the horizon, one of them twice
        _click("c6", "v6", times["v6"] + horizon, arr=times["v6"] + horizon + 50),
        _click("c6b", "v6", times["v6"] - tolerance_ms - 1),
        _click("c7", "v7", times["v7"] + 1, user="b"),  # another user: no match
        _click("c8", None, times["v8"] + 1),  # no id: no match
        _click("c9", "v9", times["v9"] + 1, user=None),  # null user: no match
        _click("c10", "v10", times["v10"] - 1),  # before t: only with a tolerance
        _click("cnull", "vnull", t + 1, user=None),  # null on both sides: no match
    ]
    wanted = {f"v{n}": 0 for n in range(11)} | {"vnull": 0}
    wanted.update({"v0": 1, "v2": 1, "v3": 1, "v5": 1, "v10": 1 if tolerance_ms else 0})
    root = open_root(tmp_path / "root")
    ingest(pipeline, root, {"views": views[:6], "clicks": clicks[::2]}, "first")
    ingest(pipeline, root, {"views": views[6:], "clicks": clicks[1::2]}, "second")
    assert pipeline.label is not None
    assert {v["view_id"]: brute_label(pipeline.label, v, clicks) for v in views} == wanted
    rows = backfill_and_check(pipeline, root, tmp_path / "set", views, clicks, T0, T0 + 4 * HOUR)
    assert {row["event_id"]: row["clicked"] for row in rows} == wanted


def test_range_partitions_and_maturity_edges(tmp_path: Path) -> None:
    """Only ``from <= t < to``; hour edges start a new partition, and outcomes in the neighbouring
    partitions still label; ``label_mature`` flips exactly at ``t + horizon == watermark``."""
    spec = LabelSpec(horizon_ms=5 * MINUTE, tolerance_ms=30_000)
    pipeline = make_pipeline(spec)
    from_ms = T0 + 20 * MINUTE + 7
    to_ms = T0 + 2 * HOUR + 5 * MINUTE
    last_click = T0 + 2 * HOUR + 10 * MINUTE  # the highest event time of the lake
    watermark = last_click - LATENESS
    placed = {
        "before_from": from_ms - 1,
        "at_from": from_ms,
        "hour_end": T0 + HOUR - 1,
        "hour_start": T0 + HOUR,
        "tie_a": T0 + HOUR + 5 * MINUTE,
        "tie_b": T0 + HOUR + 5 * MINUTE,
        "mature_edge": watermark - spec.horizon_ms,
        "immature_edge": watermark - spec.horizon_ms + 1,
        "before_to": to_ms - 1,
        "at_to": to_ms,
    }
    views = [_view(name, ts, user="b" if "tie" in name else "a") for name, ts in placed.items()]
    clicks = [
        _click("last", "before_to", last_click),
        _click("tie", "tie_b", placed["tie_a"]),
        # outcomes in the next (previous) hour partition than their exposure's
        _click("after_hour", "hour_end", placed["hour_end"] + spec.horizon_ms - 1),
        _click("before_hour", "hour_start", placed["hour_start"] - spec.tolerance_ms),
    ]
    root = open_root(tmp_path / "root")
    ingest(pipeline, root, {"views": views, "clicks": clicks}, "only")
    progress: list[tuple[int, int]] = []
    rows = backfill_and_check(
        pipeline,
        root,
        tmp_path / "set",
        views,
        clicks,
        from_ms,
        to_ms,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert [row["event_id"] for row in rows] == [
        "at_from",
        "hour_end",
        "hour_start",
        "tie_a",
        "tie_b",
        "mature_edge",
        "immature_edge",
        "before_to",
    ]
    positives = {row["event_id"] for row in rows if row["clicked"]}
    assert positives == {"tie_b", "hour_end", "hour_start"}
    mature = {row["event_id"]: row["label_mature"] for row in rows}
    assert mature["mature_edge"] is True and mature["immature_edge"] is False
    assert sorted({partition_of(row["event_ms"]) for row in rows}) == [
        "date=2023-11-14/hour=22",
        "date=2023-11-14/hour=23",
        "date=2023-11-15/hour=00",
    ]
    assert progress and progress[-1][0] == progress[-1][1]
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


# --- a small fixed lake for formats and safety ------------------------------------------------


def small_records(seed: int) -> dict[str, list[dict[str, Any]]]:
    """A few hundred views and clicks over three hours, every optional field sometimes null."""
    rng = random.Random(seed)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    views = []
    for number in range(240):
        ts = T0 + rng.randrange(0, 3 * HOUR) // 1_000 * 1_000
        views.append(
            {
                "view_id": f"v{number:03d}",
                "user": maybe(rng.choice(USERS)),
                "referrer": maybe(rng.choice(USERS)),
                "region": maybe(rng.choice(REGIONS)),
                "price": maybe(rng.choice([0.1, 0.3, 2.5e-9, 0.0, rng.uniform(-5, 5)])),
                "qty": maybe(rng.randint(-2, 9)),
                "promo": maybe(rng.random() < 0.5),
                "ts": ts,
                "arr": ts + rng.choice([0, 10]),
            }
        )
    clicks = []
    for number, view in enumerate(rng.sample(views, 60)):
        ts = view["ts"] + rng.randrange(-MINUTE, 8 * MINUTE)
        clicks.append(
            {
                "click_id": f"c{number:03d}",
                "shown_id": view["view_id"],
                "user": view["user"],
                "ts": ts,
                "arr": ts,
            }
        )
    return {"views": views, "clicks": clicks}


@dataclass(frozen=True)
class SmallLake:
    pipeline: Pipeline
    root: Root
    records: dict[str, list[dict[str, Any]]]
    from_ms: int
    to_ms: int


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> SmallLake:
    pipeline = make_pipeline(LabelSpec(horizon_ms=5 * MINUTE, tolerance_ms=1_000))
    root = open_root(tmp_path_factory.mktemp("small") / "root")
    records = small_records(41)
    ingest(pipeline, root, records, "small")
    return SmallLake(pipeline, root, records, T0 + 10 * MINUTE, T0 + 3 * HOUR)


def run_small(lake: SmallLake, out: Path | str, **options: Any) -> BackfillReport:
    return backfill(lake.pipeline, lake.root, str(out), lake.from_ms, lake.to_ms, **options)


@pytest.fixture(scope="module")
def small_parquet(small_lake: SmallLake, tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    out = tmp_path_factory.mktemp("small-parquet")
    lake = small_lake
    records = lake.records
    return backfill_and_check(
        lake.pipeline, lake.root, out, records["views"], records["clicks"], lake.from_ms, lake.to_ms
    )


def _same_rows(expected: Sequence[Row], actual: Sequence[Row], what: str) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows, expected {len(expected)}"
    problems = []
    for number, (want, got) in enumerate(zip(expected, actual, strict=True)):
        problems += [f"row {number} ({want.get('event_id')}): {p}" for p in diff_row(want, got)]
    assert not problems, f"{what}: {len(problems)} differences:\n  " + "\n  ".join(problems[:30])


def test_csv_with_header_has_the_values_of_the_parquet_set(
    small_lake: SmallLake, small_parquet: list[Row], tmp_path: Path
) -> None:
    report = run_small(small_lake, tmp_path, fmt="csv")
    meta = read_meta(tmp_path)
    assert meta["format"] == "csv"
    assert all(f.endswith("/part-00000.csv") for f in meta["files"]) and meta["files"] == sorted(report.files)
    assert files_under(tmp_path) == sorted([*meta["files"], META_FILE])
    _same_rows(small_parquet, flatten(read_csv_rows(tmp_path, meta)), "csv")
    assert meta["fingerprint"] == small_lake.pipeline.fingerprint()


def test_sagemaker_csv_is_the_label_then_the_features_as_numbers(
    small_lake: SmallLake, small_parquet: list[Row], tmp_path: Path
) -> None:
    report = run_small(small_lake, tmp_path, fmt="csv", sagemaker=True, include_immature=True)
    meta = read_meta(tmp_path)
    features = list(FEATURES)
    assert meta["format"] == "sagemaker-csv"
    assert meta["columns"] == ["clicked", *features]
    assert set(meta["encodings"]) == {n for n, (_, t) in FEATURES.items() if t in ("string", "bool")}
    for name, encoding in meta["encodings"].items():
        if FEATURES[name][1] == "string":
            assert len(set(encoding["codes"].values())) == len(encoding["codes"]), (name, encoding)
    assert report.rows == len(small_parquet)
    decoded = flatten(read_sagemaker_rows(tmp_path, meta))
    _same_rows([{k: row[k] for k in ["clicked", *features]} for row in small_parquet], decoded, "sagemaker")
    # numbers only: no header, no text, no true/false
    for relative in meta["files"]:
        text = (tmp_path / relative).read_text()
        assert '"' not in text and "true" not in text and "false" not in text, relative


def test_sagemaker_refuses_parquet_with_a_clear_error(small_lake: SmallLake, tmp_path: Path) -> None:
    report = run_small(small_lake, tmp_path / "a", sagemaker=True)  # no format given: CSV
    assert report.rows > 0 and all(path.endswith(".csv") for path in report.files)
    with pytest.raises(DatasetError, match="(?i)csv"):
        run_small(small_lake, tmp_path / "b", fmt="parquet", sagemaker=True)
    with pytest.raises(DatasetError, match="'json'"):
        run_small(small_lake, tmp_path / "c", fmt="json")
    for name in "bc":
        assert not (tmp_path / name).exists() or files_under(tmp_path / name) == []


# --- safety -----------------------------------------------------------------------------------


def _contents(folder: Path) -> dict[str, bytes]:
    return {relative: (folder / relative).read_bytes() for relative in files_under(folder)}


def test_a_non_empty_folder_is_refused_without_overwrite_and_replaced_with_it(
    small_lake: SmallLake, small_parquet: list[Row], tmp_path: Path
) -> None:
    out = tmp_path / "set"
    (out / "date=2001-01-01" / "hour=00").mkdir(parents=True)
    (out / "date=2001-01-01" / "hour=00" / "part-00000.parquet").write_bytes(b"an old set")
    (out / "notes.txt").write_text("keep me")
    before = _contents(out)
    with pytest.raises(DatasetError, match="overwrite") as refused:
        run_small(small_lake, out)
    assert "2 files" in str(refused.value) and str(out) in str(refused.value)
    assert _contents(out) == before

    report = run_small(small_lake, out, overwrite=True)
    assert files_under(out) == sorted([*report.files, META_FILE])
    rows, _ = read_parquet_rows(out)
    _same_rows(small_parquet, flatten(rows), "overwritten")


def test_an_existing_empty_folder_needs_no_overwrite(small_lake: SmallLake, tmp_path: Path) -> None:
    report = run_small(small_lake, tmp_path)
    assert report.rows > 0 and files_under(tmp_path) == sorted([*report.files, META_FILE])


def test_a_refused_format_deletes_nothing_even_with_overwrite(small_lake: SmallLake, tmp_path: Path) -> None:
    out = tmp_path / "set"
    run_small(small_lake, out)
    before = _contents(out)
    with pytest.raises(DatasetError):
        run_small(small_lake, out, fmt="parquet", sagemaker=True, overwrite=True)
    assert _contents(out) == before


def test_overwrite_never_deletes_a_clickwise_root(small_lake: SmallLake, tmp_path: Path) -> None:
    root_url = small_lake.root.url
    before = len(small_lake.root.list_files(""))
    with pytest.raises(DatasetError, match="clickwise root"):
        run_small(small_lake, root_url, overwrite=True)
    assert len(small_lake.root.list_files("")) == before


@pytest.mark.parametrize("span_ms", [0, -1, -HOUR])
def test_an_empty_range_is_a_clear_error(small_lake: SmallLake, tmp_path: Path, span_ms: int) -> None:
    out = tmp_path / "set"
    with pytest.raises(DatasetError, match="range is empty"):
        backfill(small_lake.pipeline, small_lake.root, str(out), T0, T0 + span_ms)
    assert not out.exists()


def test_a_pipeline_without_a_label_is_a_clear_error(small_lake: SmallLake, tmp_path: Path) -> None:
    pipeline = without_label(small_lake.pipeline)
    assert pipeline.label is None
    out = tmp_path / "set"
    with pytest.raises(DatasetError, match="no label"):
        backfill(pipeline, small_lake.root, str(out), T0, T0 + HOUR)
    assert not out.exists()


# --- object storage ---------------------------------------------------------------------------


def _s3_objects(bucket: str, prefix: str) -> dict[str, bytes]:
    import os

    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["CLICKWISE_S3_ENDPOINT"], region_name="us-east-1")
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return {
        item["Key"][len(prefix) + 1 :]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listing.get("Contents", [])
    }


@pytest.mark.integration
def test_backfill_to_s3(
    s3_bucket: str, small_lake: SmallLake, small_parquet: list[Row], tmp_path: Path
) -> None:
    url = f"s3://{s3_bucket}/sets/clicks"
    report = run_small(small_lake, url)
    objects = _s3_objects(s3_bucket, "sets/clicks")
    assert sorted(objects) == sorted([*report.files, META_FILE])
    assert report.out == url
    local = tmp_path / "copy"
    for relative, data in objects.items():
        (local / relative).parent.mkdir(parents=True, exist_ok=True)
        (local / relative).write_bytes(data)
    rows, _ = read_parquet_rows(local)
    _same_rows(small_parquet, flatten(rows), "s3")
    meta = read_meta(local)
    assert meta["fingerprint"] == small_lake.pipeline.fingerprint() and meta["rows"] == len(small_parquet)
    with pytest.raises(DatasetError, match="overwrite"):
        run_small(small_lake, url)
    assert _s3_objects(s3_bucket, "sets/clicks") == objects
