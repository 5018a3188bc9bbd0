"""The backfill on generated adclick data (``clickwise.synth.generate``, the seed's pipeline).

- every table feature of a sample of rows equals the lookup path,
  ``Tables.get_one(table, key, as_of_ms=t)``, for the key read from the exposure's stored fields;
  event features equal those fields, ``hour_of_day`` the UTC hour, the derived ratio its inputs';
- the labels, and the count of positives, equal an independent count from the generator's own raw
  files (not the lake): a click with the impression's id and ``t <= click_ms < t + 15 min``,
  duplicates once;
- the rows are exactly the generated impressions of the range, one file per hour partition, and
  ``label_mature`` follows the watermark computed from the raw files;
- CSV with a header and SageMaker CSV (text codes, 0/1 booleans, empty nulls) decode back to the
  Parquet values.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
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
from tables_oracle import empty_value, same_value

from clickwise.dataset import BackfillReport, backfill
from clickwise.events import Ingestor, Lake
from clickwise.events.validate import EVENT_MS
from clickwise.features import FeatureSet
from clickwise.spec import Pipeline, load_pipeline
from clickwise.spec.features import DerivedFeature, EventFeature, TableFeature
from clickwise.storage import Root, open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.time import FixedClock

PIPELINE = Path(__file__).resolve().parents[2] / "examples" / "adclick" / "pipeline.yaml"
START_MS = 1_700_000_000_000  # not on an hour boundary
MINUTE = 60_000
HORIZON_MS = 15 * MINUTE
STREAMS = ("impressions", "clicks", "predictions")
SAMPLE = 400


@dataclass(frozen=True)
class Adclick:
    pipeline: Pipeline
    root: Root
    generated: Path
    from_ms: int
    to_ms: int
    out: Path
    report: BackfillReport
    rows: list[Row]


@pytest.fixture(scope="module")
def adclick(tmp_path_factory: pytest.TempPathFactory) -> Adclick:
    folder = tmp_path_factory.mktemp("adclick")
    summary = generate(
        folder / "generated", users=2_000, hours=3, seed=20240611, start_ms=START_MS, fmt="parquet"
    )
    pipeline = load_pipeline(PIPELINE)
    root = open_root(folder / "root")
    report = Ingestor(pipeline, root, clock=FixedClock(summary.max_arrival_ms + MINUTE)).ingest_files(
        [str(folder / "generated" / stream) for stream in STREAMS]
    )
    assert all(report.streams[s].rejected == 0 for s in STREAMS), report.as_dict()
    from_ms, to_ms = START_MS + 20 * MINUTE, summary.end_ms - 7
    out = folder / "set"
    made = backfill(pipeline, root, str(out), from_ms, to_ms)
    rows, _ = read_parquet_rows(out)
    return Adclick(pipeline, root, folder / "generated", from_ms, to_ms, out, made, flatten(rows))


def raw(adclick: Adclick, stream: str) -> list[dict[str, Any]]:
    """The generator's own records of a stream (its files, not the lake)."""
    paths = sorted((adclick.generated / stream).glob("*.parquet"))
    assert paths, f"no generated {stream} files"
    return [record for path in paths for record in pq.read_table(path).to_pylist()]


def test_the_generator_and_pipeline_are_what_this_file_assumes(adclick: Adclick) -> None:
    label = adclick.pipeline.label
    assert label is not None
    assert (label.exposure, label.outcome, dict(label.match)) == (
        "impressions",
        "clicks",
        {"impression_id": "impression_id"},
    )
    assert (label.horizon, label.tolerance) == (HORIZON_MS, 0)
    assert adclick.report.rows > 10_000 and adclick.report.positives > 50


def test_labels_and_positives_equal_a_count_from_the_raw_files(adclick: Adclick) -> None:
    clicks: dict[str, list[int]] = defaultdict(list)
    for click in raw(adclick, "clicks"):
        clicks[click["impression_id"]].append(click["ts"])
    impressions = {
        record["impression_id"]: record["ts"]
        for record in raw(adclick, "impressions")
        if adclick.from_ms <= record["ts"] < adclick.to_ms
    }
    expected = {
        impression_id: int(any(t <= click_ms < t + HORIZON_MS for click_ms in clicks.get(impression_id, ())))
        for impression_id, t in impressions.items()
    }
    got = {row["event_id"]: row["clicked"] for row in adclick.rows}
    assert len(got) == len(adclick.rows), "an impression written twice"
    assert set(got) == set(expected)
    wrong = {i: (expected[i], got[i]) for i in expected if expected[i] != got[i]}
    assert not wrong, f"{len(wrong)} labels differ (expected, got): {dict(list(wrong.items())[:10])}"
    positives = sum(expected.values())
    assert adclick.report.positives == positives == read_meta(adclick.out)["positives"]
    assert all(row["event_ms"] == impressions[row["event_id"]] for row in adclick.rows)


def test_partitions_rows_and_maturity(adclick: Adclick) -> None:
    everything = [r for stream in STREAMS for r in raw(adclick, stream)]
    watermark = max(r["ts"] for r in everything) - adclick.pipeline.allowed_lateness
    meta = read_meta(adclick.out)
    assert meta["watermark_ms"] == watermark == Tables.open(adclick.pipeline, adclick.root).watermark_ms
    assert meta["fingerprint"] == adclick.pipeline.fingerprint()
    assert meta["rows"] == adclick.report.rows == len(adclick.rows)
    partitions = sorted({partition_of(row["event_ms"]) for row in adclick.rows})
    assert len(partitions) == 4  # 22:33 to 01:13 UTC
    files = [f"{p}/part-00000.parquet" for p in partitions]
    assert files_under(adclick.out) == sorted([*files, META_FILE]) and meta["files"] == files
    assert all(adclick.from_ms <= row["event_ms"] < adclick.to_ms for row in adclick.rows)
    mature = [row["label_mature"] for row in adclick.rows]
    assert mature == [row["event_ms"] + HORIZON_MS <= watermark for row in adclick.rows]
    assert adclick.report.mature == sum(mature)
    kinds = {feature["name"]: (feature["kind"], feature["type"]) for feature in meta["features"]}
    assert kinds["country"] == ("event", "string") and kinds["is_bot_agent"] == ("event", "bool")
    assert kinds["user_ctr_7d"] == ("table", "float") and kinds["hour_of_day"] == ("time", "int")
    assert kinds["country_ctr_vs_global_24h"] == ("derived", "float")
    assert list(kinds) == list(adclick.pipeline.features)


def _empty_row(pipeline: Pipeline, table: str) -> dict[str, object]:
    """What a key without events reads as (the design's empty window)."""
    row: dict[str, object] = {}
    for name, agg in pipeline.tables[table].aggregations.items():
        if agg.op == "ratio":
            prior = agg.prior
            row[name] = None if prior is None else (0 + prior.value * prior.weight) / (0 + prior.weight)
        else:
            field_type = pipeline.stream_fields(agg.stream or "").get(agg.field or "")
            row[name] = empty_value(agg, field_type)
    return row


def test_sampled_rows_equal_the_lookup_path(adclick: Adclick) -> None:
    pipeline = adclick.pipeline
    exposures = {
        e["impression_id"]: e
        for e in Lake(adclick.root, pipeline)
        .read_all("impressions", adclick.from_ms, adclick.to_ms)
        .to_pylist()
    }
    rng = random.Random(5)
    # (null keys: generated impressions all have a country; test_backfill.py covers them)
    sample = rng.sample(adclick.rows, SAMPLE) + adclick.rows[:5] + adclick.rows[-5:]
    tables = Tables.open(pipeline, adclick.root)
    problems = []
    for row in sample:
        exposure = exposures[row["event_id"]]
        t = row["event_ms"]
        assert exposure["_event_ms"] == t
        expected: dict[str, object] = {}
        for name, feature in pipeline.features.items():
            if isinstance(feature, TableFeature):
                fields = pipeline.tables[feature.table].key
                mapping = feature.key or {f: f for f in fields}
                parts = tuple(exposure[mapping[f]] for f in fields)
                if any(part is None for part in parts):
                    values = _empty_row(pipeline, feature.table)
                else:
                    key = None if not parts else parts[0] if len(parts) == 1 else parts
                    values = tables.get_one(feature.table, key, as_of_ms=t)
                expected[name] = values[feature.aggregation]
            elif isinstance(feature, EventFeature):
                expected[name] = (
                    exposure[feature.event] if feature.event else time_part(t, str(feature.time_part))
                )
            else:
                assert isinstance(feature, DerivedFeature)
                expected[name] = derived_value(feature.op, *(expected[i] for i in feature.inputs))
        for name, want in expected.items():
            if not same_value(want, row[name]):
                problems.append(f"{row['event_id']} at {t}: {name}: expected {want!r}, got {row[name]!r}")
    assert not problems, f"{len(problems)} differences:\n  " + "\n  ".join(problems[:30])


def _same(expected: list[Row], actual: list[Row], what: str) -> None:
    assert len(actual) == len(expected), what
    problems = [
        f"row {n}: {name}: expected {want[name]!r}, got {got.get(name)!r}"
        for n, (want, got) in enumerate(zip(expected, actual, strict=True))
        for name in want
        if not same_value(want[name], got.get(name))
    ]
    assert not problems, f"{what}: {len(problems)} differences:\n  " + "\n  ".join(problems[:30])


def test_csv_and_sagemaker_csv_decode_to_the_parquet_values(adclick: Adclick, tmp_path: Path) -> None:
    plain, coded = tmp_path / "csv", tmp_path / "sagemaker"
    backfill(adclick.pipeline, adclick.root, str(plain), adclick.from_ms, adclick.to_ms, fmt="csv")
    _same(adclick.rows, flatten(read_csv_rows(plain, read_meta(plain))), "csv")

    backfill(
        adclick.pipeline, adclick.root, str(coded), adclick.from_ms, adclick.to_ms, fmt="csv", sagemaker=True,
        include_immature=True,
    )  # fmt: skip
    meta = read_meta(coded)
    names = ["clicked", *adclick.pipeline.features]
    assert meta["columns"] == names
    assert set(meta["encodings"]) == {"browser", "os", "device_type", "country", "is_bot_agent"}
    _same(
        [{n: row[n] for n in names} for row in adclick.rows],
        flatten(read_sagemaker_rows(coded, meta)),
        "sagemaker",
    )


def test_one_event_features_equal_the_column_path(adclick: Adclick) -> None:
    """``FeatureSet.compute_one`` (the decision service's path) against ``compute`` (the backfill's)
    for stored impressions and variants of them: unknown and missing keys, other moments, events
    exactly at stored times and later than every stored event."""
    pipeline = adclick.pipeline
    tables = Tables.open(pipeline, adclick.root)
    features = FeatureSet(pipeline)
    stored = Lake(adclick.root, pipeline).read_all("impressions", adclick.from_ms, adclick.to_ms).to_pylist()
    rng = random.Random(11)
    events = rng.sample(stored, 300)
    variants = []
    for event in events[:120]:
        other = rng.choice(stored)
        change = rng.choice(["user", "country", "campaign", "time", "exact", "late", "none"])
        if change == "user":
            event = {**event, "user_id": rng.choice(["", "nobody", other["user_id"]])}
        elif change == "country":
            event = {**event, "country": rng.choice([None, "ZZ", other["country"]])}
        elif change == "campaign":
            event = {**event, "campaign_id": None}
        elif change == "time":
            event = {**event, EVENT_MS: event[EVENT_MS] + rng.randint(-3_600_000, 3_600_000)}
        elif change == "exact":
            event = {**event, EVENT_MS: other[EVENT_MS]}
        elif change == "late":
            event = {**event, EVENT_MS: adclick.to_ms + rng.randint(0, 10**9)}
        variants.append(event)
    events += variants
    frame = pl.DataFrame(events, schema=pl.from_arrow(pa.Table.from_pylist(events)).schema)
    columns = features.compute(tables, frame)
    expected = pa.table(columns).to_pylist()
    got = [features.compute_one(tables, event) for event in events]
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert list(have) == list(want)
        differ = {k: (want[k], have[k]) for k in want
                  if want[k] != have[k] or type(want[k]) is not type(have[k])}  # fmt: skip
        assert not differ, f"event {index} ({events[index]}): (columns, one) {differ}"
