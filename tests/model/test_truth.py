"""On generated data: Bayes-optimal metrics from the generator's truth, and the third stream's score.

The training set is built here with plain polars (a per-user running count, an as-of join on the
predictions stream, and the click label) standing in for the backfill, which is tested elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from model_training_sets import write_training_set

from clickwise.model import TrainingDataError, train
from clickwise.model.truth import gap_closed
from clickwise.spec import parse_pipeline
from clickwise.synth import generate

HORIZON_MS = 15 * 60_000
SYNTH_PIPELINE = """
version: 1
name: synth
streams:
  impressions:
    fields: {impression_id: string, user_id: string, campaign_id: string, domain: string, ip: string,
             user_agent: string, cost: float, ts: int, arrival_ts: int}
    time: {field: ts, format: epoch_ms}
    event_id: impression_id
  clicks:
    fields: {click_id: string, impression_id: string, user_id: string, campaign_id: string, ts: int,
             arrival_ts: int}
    time: {field: ts, format: epoch_ms}
  predictions:
    fields: {user_id: string, segment_id: string, score: float, ts: int, arrival_ts: int}
    time: {field: ts, format: epoch_ms}
tables:
  user:
    key: [user_id]
    aggregations:
      impressions_total: {stream: impressions, op: count, window: lifetime}
      segment_score_last: {stream: predictions, op: last, field: score, window: lifetime}
features:
  user_impressions_total: {table: user, aggregation: impressions_total}
  segment_score_last: {table: user, aggregation: segment_score_last}
  cost: {event: cost}
  hour_of_day: {time_part: hour_of_day}
label: {exposure: impressions, outcome: clicks, match: [impression_id], horizon: 15m}
model:
  validation_fraction: 0.3
  params: {n_estimators: 60, learning_rate: 0.1, num_leaves: 7, min_child_samples: 40, num_threads: 1}
"""


def _training_columns(synth: Path) -> dict[str, list[object]]:
    impressions = pl.read_parquet(synth / "impressions").sort("ts", "impression_id")
    clicks = pl.read_parquet(synth / "clicks")
    predictions = pl.read_parquet(synth / "predictions").sort("ts")
    rows = impressions.with_columns(user_impressions_total=pl.int_range(pl.len()).over("user_id"))
    rows = rows.join_asof(
        predictions.select("user_id", "ts", pl.col("score").alias("segment_score_last")),
        on="ts",
        by="user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    first_click = clicks.group_by("impression_id").agg(pl.col("ts").min().alias("click_ts"))
    rows = rows.join(first_click, on="impression_id", how="left")
    clicked = pl.col("click_ts").is_not_null() & (pl.col("click_ts") >= pl.col("ts"))
    clicked = clicked & (pl.col("click_ts") < pl.col("ts") + HORIZON_MS)
    end_ms = impressions["ts"].max()
    assert isinstance(end_ms, int)
    rows = rows.select(
        pl.col("impression_id").alias("event_id"),
        pl.col("ts").alias("event_ms"),
        pl.col("user_impressions_total").cast(pl.Int64),
        "segment_score_last",
        "cost",
        ((pl.col("ts") // 3_600_000) % 24).cast(pl.Int32).alias("hour_of_day"),
        clicked.cast(pl.Int8).alias("clicked"),
        (pl.col("ts") + HORIZON_MS <= end_ms).alias("label_mature"),
    )
    return {name: rows[name].to_list() for name in rows.columns}


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("synth")
    generate(base / "synth", users=400, hours=30, seed=11, start_ms=1_700_006_400_000)
    pipeline = parse_pipeline(SYNTH_PIPELINE, source="synth")
    data = write_training_set(base / "data", pipeline, _training_columns(base / "synth"))
    return data, base / "synth" / "truth"


def test_truth_gives_bayes_metrics_and_the_gap_closed(synth_data: tuple[Path, Path], tmp_path: Path) -> None:
    data, truth = synth_data
    pipeline = parse_pipeline(SYNTH_PIPELINE, source="synth")
    result = train(pipeline, str(data), str(tmp_path / "models"), truth=str(truth))
    compared = result.metrics["truth"]
    validation_rows = result.card["split"]["validation"]["rows"]
    assert compared["matched_rows"] == compared["validation_rows"] == validation_rows
    bayes, model, baseline = compared["bayes"], compared["model"], compared["baseline"]
    assert bayes["auc"] > baseline["auc"]
    assert bayes["log_loss"] < baseline["log_loss"]
    assert model == result.metrics["model"]  # every validation row matched: the same rows
    assert compared["gap_closed"] == gap_closed(model["auc"], baseline["auc"], bayes["auc"])
    segment = result.metrics["segment_score_last"]
    assert 0.0 <= segment["auc"] <= 1.0 and segment["null_rows"] > 0
    html = (Path(result.model_dir) / "report.html").read_text()
    assert "Bayes-optimal" in html and "segment_score_last" in html


def test_truth_of_other_data_is_refused(synth_data: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = synth_data
    other = tmp_path / "other"
    generate(other, users=20, hours=1, seed=3, start_ms=1_600_000_000_000)
    pipeline = parse_pipeline(SYNTH_PIPELINE, source="synth")
    with pytest.raises(TrainingDataError, match="is it the truth of the data"):
        train(pipeline, str(data), str(tmp_path / "models"), truth=str(other / "truth"))


def test_gap_closed_is_undefined_without_a_gap() -> None:
    assert gap_closed(0.7, 0.6, 0.6) is None
    assert gap_closed(None, 0.6, 0.8) is None
    assert gap_closed(0.6, 0.6, 0.8) == 0.0
