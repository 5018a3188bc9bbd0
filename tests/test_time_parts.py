"""Time parts on the clock of the exposure stream's zone: a 15:22 impression in Shanghai is hour 15,
in the backfill and in the decision service alike (they share clickwise.features)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clickwise.dataset import backfill
from clickwise.errors import PipelineError
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.features import FeatureSet
from clickwise.model import train
from clickwise.serve import Service
from clickwise.serve.service import ONE_BY_ONE
from clickwise.spec import Pipeline, parse_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
START_MS = 1_767_589_200_000  # 2026-01-05T05:00:00Z, 13:00 in Shanghai
HOUR = 3_600_000
LOCAL_TEXT = "%Y-%m-%d %H:%M:%S"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"


def _pipeline(extra_features: str = "") -> Pipeline:
    """The adclick pipeline, its impressions written in Shanghai local time (text without an
    offset), with a small model."""
    text = example_path("adclick").read_text()
    epoch = (
        "      ts: int\n      arrival_ts: {type: int, required: false}\n"
        "    time: {field: ts, format: epoch_ms}"
    )
    local = (
        "      ts: string\n      arrival_ts: {type: int, required: false}\n"
        f'    time: {{field: ts, format: "{LOCAL_TEXT}", timezone: Asia/Shanghai}}'
    )
    assert text.count(epoch) == 3
    text = text.replace(epoch, local, 1)
    quick = "params: {num_leaves: 7, learning_rate: 0.1, n_estimators: 10, num_threads: 1}"
    start = text.index("params:", text.index("model:"))
    text = text[:start] + quick + text[text.index("\n", start) :]
    if extra_features:
        anchor = "  hour_of_day: {time_part: hour_of_day}\n"
        text = text.replace(anchor, anchor + extra_features)
    return parse_pipeline(text, source="adclick-shanghai")


def _shanghai_hour(epoch_ms: int) -> int:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, SHANGHAI).hour


def test_a_1522_shanghai_impression_is_hour_15_offline_and_online(tmp_path: Path) -> None:
    pipeline = _pipeline()
    generate(tmp_path / "in", users=150, hours=4, seed=11, start_ms=START_MS)
    impressions = pl.read_parquet(tmp_path / "in" / "impressions")
    local = (
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Shanghai")
    )
    impressions.with_columns(local.dt.strftime(LOCAL_TEXT).alias("ts")).write_parquet(
        tmp_path / "impressions.parquet"
    )
    root = open_root(tmp_path / "root")
    Ingestor(pipeline, root).ingest_files(
        [
            str(tmp_path / "impressions.parquet"),
            str(tmp_path / "in" / "clicks"),
            str(tmp_path / "in" / "predictions"),
        ],
        stream=None,
    )
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    backfill(pipeline, root, str(tmp_path / "training"), START_MS, START_MS + 4 * HOUR, tables=tables)
    rows = pl.read_parquet(tmp_path / "training" / "**" / "*.parquet", hive_partitioning=False)
    assert rows.height == impressions.height
    expected = [_shanghai_hour(ms) for ms in rows.get_column("event_ms").to_list()]
    assert rows.get_column("hour_of_day").to_list() == expected
    at_1522 = rows.filter(
        pl.col("event_ms").is_between(START_MS + 2 * HOUR + 22 * 60_000, START_MS + 2 * HOUR + 23 * 60_000)
    )
    assert at_1522.height and set(at_1522.get_column("hour_of_day").to_list()) == {15}

    train(pipeline, str(tmp_path / "training"), str(tmp_path / "models"))
    service = Service(pipeline, root, models=str(tmp_path / "models"))
    opportunity = {"impression_id": "o1", "user_id": "u1", "campaign_id": "c1", "domain": "a.com",
                   "ip": "8.8.8.8", "user_agent": CHROME, "cost": 0.002,
                   "ts": "2026-01-05 15:22:00"}  # fmt: skip
    one = service.decide([opportunity], explain=True)[0]
    assert one["as_of_ms"] == START_MS + 2 * HOUR + 22 * 60_000  # 07:22 UTC
    assert one["features"]["hour_of_day"] == 15
    many = service.decide([{**opportunity, "impression_id": f"o{i}"} for i in range(40)], explain=True)
    assert {answer["features"]["hour_of_day"] for answer in many} == {15}

    # without its time, an opportunity happens when it arrives, written in the stream's own format
    untimed = {key: value for key, value in opportunity.items() if key != "ts"}
    before = service.clock.now_ms() // 1000 * 1000
    now = service.decide([untimed], explain=True)[0]
    assert before <= now["as_of_ms"] <= service.clock.now_ms()
    assert now["features"]["hour_of_day"] == _shanghai_hour(now["as_of_ms"])
    assert len(service.decide([untimed] * (ONE_BY_ONE + 1))) == ONE_BY_ONE + 1  # the column path too


def test_a_time_part_takes_its_own_zone_and_both_paths_agree(tmp_path: Path) -> None:
    pipeline = _pipeline(
        "  hour_utc: {time_part: hour_of_day, timezone: UTC}\n"
        "  hour_berlin: {time_part: hour_of_day, timezone: Europe/Berlin}\n"
        "  minute_india: {time_part: minute_of_hour, timezone: '+05:30'}\n"
        "  weekday_auckland: {time_part: day_of_week, timezone: Pacific/Auckland}\n"
    )
    features = FeatureSet(pipeline)
    tables = Tables.open(pipeline, open_root(tmp_path))  # (no events: time parts only)
    # around Berlin's switch to summer time (2026-03-29 01:00 UTC) and New Year in Auckland
    moments = [1_774_746_000_000 + step * 1_800_000 for step in range(-3, 4)] + [1_767_178_800_000, 0]
    events = pl.DataFrame({"_event_ms": moments, "country": ["CN"] * len(moments)})
    events = events.with_columns(*(pl.lit(None, pl.String).alias(f) for f in features.input_fields()
                                   if f not in events.columns))  # fmt: skip
    columns = features.compute(tables, events)
    for i, moment in enumerate(moments):
        one = features.compute_one(tables, events.row(i, named=True))
        at = dt.datetime.fromtimestamp(moment / 1000, dt.UTC)
        expected = {
            "hour_of_day": at.astimezone(SHANGHAI).hour,
            "hour_utc": at.hour,
            "hour_berlin": at.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")).hour,
            "minute_india": at.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).minute,
            "weekday_auckland": at.astimezone(zoneinfo.ZoneInfo("Pacific/Auckland")).weekday(),
        }
        for name, value in expected.items():
            assert columns[name][i].as_py() == value == one[name], (name, moment)
    assert np.unique([c.as_py() for c in columns["hour_berlin"]]).size > 1


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ("{time_part: hour_of_day, timezone: Mars/Olympus}", "unknown time zone 'Mars/Olympus'"),
        ("{event: domain, timezone: UTC}", "timezone applies to time parts only"),
    ],
)
def test_a_bad_zone_is_refused_naming_the_feature(feature: str, message: str) -> None:
    with pytest.raises(PipelineError, match="features.odd") as caught:
        _pipeline(f"  odd: {feature}\n")
    assert message in str(caught.value)


def test_pipelines_without_a_zone_keep_their_fingerprint() -> None:
    text = example_path("adclick").read_text()
    plain = parse_pipeline(text)
    assert "timezone" not in plain.model_dump(mode="json")["features"]["hour_of_day"]
    zoned = parse_pipeline(
        text.replace("{time_part: hour_of_day}", "{time_part: hour_of_day, timezone: UTC}")
    )
    assert zoned.model_dump(mode="json")["features"]["hour_of_day"]["timezone"] == "UTC"
    assert zoned.fingerprint() != plain.fingerprint()
