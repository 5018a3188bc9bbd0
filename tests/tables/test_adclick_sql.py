"""The seed's tables (examples/adclick/pipeline.yaml) on generated data, in DuckDB SQL.

The SQL reads the lake's Parquet files directly and is written from the definition alone: window
``floor(T - w, h) <= _event_ms < T`` with the default hops (1 minute under 12 hours, 1 hour under
12 days, 1 day beyond), float sums in fixed point (``round_even(v * 1e9)``), last values ordered by
``(_event_ms, _arrival_ms, value)``, and the click -> impression country join as of the click's
time, inclusive. It is checked against the brute-force oracle now, and against the engine once
``clickwise.tables`` has ``Tables``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from tables_oracle import EVENT_MS, Oracle, diff_row

from clickwise.events import Ingestor
from clickwise.spec import Pipeline, load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.time import FixedClock

PIPELINE = Path(__file__).resolve().parents[2] / "examples" / "adclick" / "pipeline.yaml"
START_MS = 1_700_000_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
USER_RETENTION = 90 * DAY
JOIN_RETENTION = 2 * DAY  # impression_country: a click finds impressions of the last 2 days
STREAMS = ("impressions", "clicks", "predictions")


@dataclass(frozen=True)
class Adclick:
    pipeline: Pipeline
    root_dir: Path
    now_ms: int
    oracle: Oracle
    queries: dict[str, list[tuple[object, int]]]  # table -> (key, T)


@pytest.fixture(scope="module")
def adclick(tmp_path_factory: pytest.TempPathFactory) -> Adclick:
    folder = tmp_path_factory.mktemp("adclick")
    summary = generate(
        folder / "generated", users=300, hours=30, seed=20240607, start_ms=START_MS, fmt="parquet"
    )
    pipeline = load_pipeline(PIPELINE)
    root_dir = folder / "root"
    root = open_root(root_dir)
    now_ms = summary.max_arrival_ms + MINUTE
    report = Ingestor(pipeline, root, clock=FixedClock(now_ms)).ingest_files(
        [str(folder / "generated" / stream) for stream in STREAMS]
    )
    assert all(report.streams[s].rejected == 0 for s in STREAMS), report.as_dict()
    edge_clicks = _edge_clicks(Oracle.from_lake(pipeline, root))
    counts = Ingestor(pipeline, root, clock=FixedClock(now_ms)).ingest_table(
        edge_clicks, "clicks", tag="edges"
    )
    assert counts.accepted == edge_clicks.num_rows
    oracle = Oracle.from_lake(pipeline, root)
    return Adclick(pipeline, root_dir, now_ms, oracle, _queries(oracle, summary.end_ms, summary.max_ts_ms))


def _edge_clicks(oracle: Oracle) -> pa.Table:
    """Clicks in the same millisecond as their impression (they take its country) and one
    millisecond before it (they do not): the generator never makes these."""
    rng = random.Random(3)
    located = [e for e in oracle.events("impressions") if e["country"] is not None]
    records = [
        {
            "click_id": f"edge-{number}",
            "impression_id": e["impression_id"],
            "user_id": e["user_id"],
            "campaign_id": e["campaign_id"],
            "ts": e[EVENT_MS] - number % 2,
            "arrival_ts": e[EVENT_MS] + 500,
        }
        for number, e in enumerate(rng.sample(located, 40))
    ]
    return pa.Table.from_pylist(records)


def _queries(oracle: Oracle, end_ms: int, max_ts_ms: int) -> dict[str, list[tuple[object, int]]]:
    """(key, T) pairs: at impression and click times (the event itself excluded), just after them,
    exactly one window later, and at random times."""
    rng = random.Random(17)
    impressions = oracle.events("impressions")
    clicks = oracle.events("clicks")
    predictions = oracle.events("predictions")
    users = sorted({e["user_id"] for e in impressions})
    span = (START_MS - HOUR, max_ts_ms + 2 * HOUR)
    user: list[tuple[object, int]] = []
    for shift, count in ((0, 60), (1, 20), (HOUR, 20), (DAY, 10), (DAY + 1, 5)):
        user += [(e["user_id"], e[EVENT_MS] + shift) for e in rng.sample(impressions, count)]
    user += [(e["user_id"], e[EVENT_MS] + rng.choice([0, 1])) for e in rng.sample(predictions, 20)]
    user += [(e["user_id"], e[EVENT_MS] + 1) for e in rng.sample(clicks, 15)]
    user += [(rng.choice(users), rng.randrange(*span)) for _ in range(40)]
    user += [("u-nobody", rng.randrange(*span))]
    joined = [e for e in clicks if e["country"] is not None]
    country: list[tuple[object, int]] = [(e["country"], e[EVENT_MS] + 1) for e in rng.sample(joined, 20)]
    by_id = {e["impression_id"]: e for e in impressions}
    edges = [c for c in clicks if c["click_id"].startswith("edge-")]
    country += [(by_id[c["impression_id"]]["country"], c[EVENT_MS] + 1) for c in edges]
    country += [(e["country"], e[EVENT_MS]) for e in rng.sample(impressions, 10) if e["country"] is not None]
    countries = sorted({e["country"] for e in impressions if e["country"] is not None})
    country += [(rng.choice(countries), rng.randrange(*span)) for _ in range(10)] + [("ZZ", end_ms)]
    campaign: list[tuple[object, int]] = [(e["campaign_id"], e[EVENT_MS] + 1) for e in rng.sample(clicks, 15)]
    campaign += [(e["campaign_id"], e[EVENT_MS] + DAY) for e in rng.sample(impressions, 5)]
    campaign += [(e["campaign_id"], rng.randrange(*span)) for e in rng.sample(impressions, 10)]
    overall: list[tuple[object, int]] = [
        (None, e[EVENT_MS] + rng.choice([0, 1])) for e in rng.sample(clicks, 10)
    ]
    overall += [(None, rng.randrange(*span)) for _ in range(5)]
    return {"user": user, "country": country, "campaign": campaign, "global": overall}


# --- the SQL --------------------------------------------------------------------------------------


def _in_window(alias: str, window_ms: int) -> str:
    """``T - w <= event_ms < T``: windows are exact; ``lifetime`` is the table's retention."""
    return f"{alias}._event_ms >= q.t - {window_ms} AND {alias}._event_ms < q.t"


def _count(source: str, key_condition: str, window: str) -> str:
    return f"(SELECT count(*) FROM {source} e WHERE {key_condition} AND {window})"


def _ratio(numerator: str, denominator: str) -> str:
    return f"CASE WHEN {denominator} = 0 THEN NULL ELSE CAST({numerator} AS DOUBLE) / {denominator} END"


USER_SQL = f"""
WITH parts AS (
  SELECT q.qid, q.t,
    {_count("impressions", "e.user_id = q.k", _in_window("e", HOUR))} AS impressions_1h,
    {_count("impressions", "e.user_id = q.k", _in_window("e", DAY))} AS impressions_24h,
    {_count("impressions", "e.user_id = q.k", _in_window("e", 7 * DAY))} AS impressions_7d,
    {_count("impressions", "e.user_id = q.k", _in_window("e", USER_RETENTION))} AS impressions_total,
    {_count("clicks", "e.user_id = q.k", _in_window("e", 7 * DAY))} AS clicks_7d,
    {_count("clicks", "e.user_id = q.k", _in_window("e", USER_RETENTION))} AS clicks_total,
    (SELECT count(DISTINCT e.domain) FROM impressions e
       WHERE e.user_id = q.k AND {_in_window("e", 30 * DAY)}) AS domains_30d,
    (SELECT coalesce(sum(CAST(round_even(e.cost * 1e9, 0) AS BIGINT)), 0) FROM impressions e
       WHERE e.user_id = q.k AND {_in_window("e", DAY)}) AS spend_units_24h,
    (SELECT max(e._event_ms) FROM impressions e
       WHERE e.user_id = q.k AND {_in_window("e", USER_RETENTION)}) AS last_ms,
    (SELECT e.score FROM predictions e
       WHERE e.user_id = q.k AND e.score IS NOT NULL AND {_in_window("e", USER_RETENTION)}
       ORDER BY e._event_ms DESC, e._arrival_ms DESC, e.score DESC LIMIT 1) AS segment_score_last
  FROM queries q
)
SELECT qid, impressions_1h, impressions_24h, impressions_7d, impressions_total, clicks_7d, clicks_total,
  {_ratio("clicks_7d", "impressions_7d")} AS ctr_7d,
  domains_30d,
  CAST(spend_units_24h AS DOUBLE) / 1e9 AS spend_24h,
  t - last_ms AS ms_since_last_impression,
  segment_score_last
FROM parts ORDER BY qid
"""

CLICKS_WITH_COUNTRY_SQL = f"""
CREATE VIEW clicks_with_country AS
SELECT c.*,
  (SELECT i.country FROM impressions i
     WHERE i.impression_id = c.impression_id AND i._event_ms <= c._event_ms
       AND i._event_ms > c._event_ms - {JOIN_RETENTION} AND i.country IS NOT NULL
     ORDER BY i._event_ms DESC, i._arrival_ms DESC, i.country DESC LIMIT 1) AS country
FROM clicks c
"""


def _ctr_table_sql(impression_key: str, click_source: str, click_key: str) -> str:
    return f"""
WITH parts AS (
  SELECT q.qid,
    {_count("impressions", impression_key, _in_window("e", DAY))} AS impressions_24h,
    {_count(click_source, click_key, _in_window("e", DAY))} AS clicks_24h
  FROM queries q
)
SELECT qid, impressions_24h, clicks_24h, {_ratio("clicks_24h", "impressions_24h")} AS ctr_24h
FROM parts ORDER BY qid
"""


TABLE_SQL = {
    "user": USER_SQL,
    "country": _ctr_table_sql("e.country = q.k", "clicks_with_country", "e.country = q.k"),
    "campaign": _ctr_table_sql("e.campaign_id = q.k", "clicks", "e.campaign_id = q.k"),
    "global": _ctr_table_sql("TRUE", "clicks", "TRUE"),
}


def _connect(data: Adclick) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for stream in STREAMS:
        files = (data.root_dir / "lake" / stream).as_posix() + "/**/*.parquet"
        con.execute(
            f"CREATE VIEW {stream} AS SELECT * FROM read_parquet('{files}', hive_partitioning = false)"
        )
    con.execute(CLICKS_WITH_COUNTRY_SQL)
    return con


def sql_rows(data: Adclick, table: str) -> list[dict[str, object]]:
    """One row per query of ``table`` (aggregation name -> value), computed by DuckDB from the lake."""
    con = _connect(data)
    try:
        pairs = data.queries[table]
        queries = pa.table(
            {
                "qid": pa.array(range(len(pairs)), pa.int64()),
                "k": pa.array([key for key, _ in pairs], pa.string()),
                "t": pa.array([t for _, t in pairs], pa.int64()),
            }
        )
        con.register("queries", queries)
        rows = con.sql(TABLE_SQL[table]).to_arrow_table().to_pylist()
    finally:
        con.close()
    assert [row.pop("qid") for row in rows] == list(range(len(pairs)))
    return rows


def _compare(
    data: Adclick, table: str, expected: list[dict[str, object]], actual: list[Any], who: str
) -> None:
    problems = []
    for (key, t), want, got in zip(data.queries[table], expected, actual, strict=True):
        problems += [f"{table} {key!r} at {t}: {p}" for p in diff_row(want, got)]
    shown = "\n  ".join(problems[:25])
    assert not problems, f"{len(problems)} differences between DuckDB and {who}:\n  {shown}"


# --- the tests ------------------------------------------------------------------------------------


def test_pipeline_windows_are_the_ones_the_sql_assumes(adclick: Adclick) -> None:
    user = adclick.pipeline.tables["user"].aggregations
    windows = {name: (agg.window, agg.hop) for name, agg in user.items() if agg.op != "ratio"}
    assert windows["impressions_1h"] == (HOUR, None) and windows["domains_30d"] == (30 * DAY, None)
    assert windows["spend_24h"] == (DAY, None) and windows["segment_score_last"] == (None, None)
    assert user["domains_30d"].exact_up_to == 1000


def test_duckdb_click_countries_equal_the_oracle(adclick: Adclick) -> None:
    con = _connect(adclick)
    try:
        rows = con.sql("SELECT click_id, country FROM clicks_with_country").fetchall()
    finally:
        con.close()
    expected = {e["click_id"]: e["country"] for e in adclick.oracle.events("clicks")}
    assert dict(rows) == expected
    edges = {k: v for k, v in expected.items() if k.startswith("edge-")}
    assert len(edges) == 40
    assert all((v is not None) == (int(k.split("-")[1]) % 2 == 0) for k, v in edges.items())


@pytest.mark.parametrize("table", ["user", "country", "campaign", "global"])
def test_duckdb_equals_the_oracle(adclick: Adclick, table: str) -> None:
    rows = sql_rows(adclick, table)
    expected = [adclick.oracle.row(table, key, t) for key, t in adclick.queries[table]]
    _compare(adclick, table, rows, expected, "the oracle")
    if table == "user":
        assert max(r["domains_30d"] for r in rows) <= 1000, "the SQL counts distinct values exactly"
        assert sum(r["ctr_7d"] is not None and r["ctr_7d"] > 0 for r in rows) >= 5
        assert sum(r["segment_score_last"] is not None for r in rows) >= 20
        assert sum(r["impressions_1h"] > 0 for r in rows) >= 30
    if table == "country":
        assert sum(r["clicks_24h"] > 0 for r in rows) >= 10  # clicks did take their impression's country


def test_engine_equals_duckdb(adclick: Adclick) -> None:
    from clickwise.tables import Tables

    tables = Tables.open(adclick.pipeline, open_root(adclick.root_dir), clock=FixedClock(adclick.now_ms))
    try:
        tables.catch_up()
        for table in ("user", "country", "campaign", "global"):
            rows = sql_rows(adclick, table)
            got = [tables.get_one(table, key, as_of_ms=t) for key, t in adclick.queries[table]]
            _compare(adclick, table, rows, got, "the engine")
    finally:
        close = getattr(tables, "close", None)
        if close is not None:
            close()
