"""Training on a synthetic training set where ``user_affinity`` (a table feature) drives the label."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest
from model_training_sets import TINY_PIPELINE, tiny_columns, tiny_pipeline, write_training_set

from clickwise.model import (
    BackendUnavailableError,
    FingerprintMismatchError,
    Predictor,
    TrainingDataError,
    TrainResult,
    train,
)
from clickwise.model.dataset import read_training_set
from clickwise.time import FixedClock

ROWS, IMMATURE = 6000, 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path]:
    base = tmp_path_factory.mktemp("train")
    data = write_training_set(base / "data", tiny_pipeline(), tiny_columns(ROWS, immature=IMMATURE))
    phases: list[str] = []
    result = train(
        tiny_pipeline(),
        str(data),
        str(base / "models"),
        progress=lambda done, total, phase: phases.append(phase),
        clock=FixedClock(1_234),
    )
    assert "training the model" in phases and phases[-1] == "writing the report"
    return result, data


def test_the_model_beats_the_baseline_without_table_features(trained: tuple[TrainResult, Path]) -> None:
    result, _ = trained
    model, baseline = result.metrics["model"], result.metrics["baseline"]
    assert model["auc"] > baseline["auc"] + 0.15
    assert model["log_loss"] < baseline["log_loss"]
    assert baseline["features"] == ["browser", "is_bot_agent", "cost", "hour_of_day"]
    assert model["lift_top_decile"] > 2.0
    for key in ("auc", "log_loss", "pr_auc", "calibration_error", "lift_top_decile", "base_rate"):
        assert isinstance(model[key], float)


def test_the_version_folder_has_every_artifact(trained: tuple[TrainResult, Path]) -> None:
    result, _ = trained
    folder = Path(result.model_dir)
    assert result.version == "v0001" and folder.name == "v0001"
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.txt", "report.html"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]
    html = (folder / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 4
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "baseline (no table features)" in html


def test_model_json_records_what_the_model_is(trained: tuple[TrainResult, Path]) -> None:
    result, data = trained
    card: dict[str, Any] = orjson.loads((Path(result.model_dir) / "model.json").read_bytes())
    assert card == orjson.loads(orjson.dumps(result.card))
    assert card["version"] == "v0001" and card["kind"] == "lightgbm" and card["created_ms"] == 1_234
    assert card["pipeline"] == {"name": "tiny", "fingerprint": tiny_pipeline().fingerprint()}
    assert [f["name"] for f in card["features"]] == list(tiny_pipeline().features)
    assert card["encoding"]["vocabularies"]["is_bot_agent"] == [False, True]
    assert set(card["encoding"]["vocabularies"]["browser"]) == {"Chrome", "Safari", "Firefox", "Edge"}
    assert card["data"]["mature_rows"] == ROWS - IMMATURE and card["data"]["rows_read"] == ROWS
    split = card["split"]
    parts = [split[name] for name in ("fit", "early_stop", "validation")]
    assert parts[0]["to_ms"] < parts[1]["from_ms"] <= parts[1]["to_ms"] < split["cut_ms"]
    assert parts[2]["from_ms"] == split["cut_ms"]
    assert parts[1]["to_ms"] + card["label"]["horizon_ms"] <= split["cut_ms"]  # purged
    assert sum(p["rows"] for p in parts) + split["purged_rows"] == ROWS - IMMATURE
    assert parts[2]["rows"] == pytest.approx(0.25 * (ROWS - IMMATURE), abs=5)
    assert card["params"]["num_leaves"] == 15 and 1 <= card["trees"] <= 80
    assert card["metrics"]["model"]["rows"] == parts[2]["rows"]
    gain = card["importance"]["gain"]
    assert max(gain, key=gain.get) == "user_affinity"
    assert card["metrics"]["truth"] is None and card["metrics"]["segment_score_last"] is None


def _validation_rows(result: TrainResult, data: Path) -> pa.Table:
    data_set = read_training_set(tiny_pipeline(), str(data))
    event_ms = data_set.event_ms()
    return data_set.table.filter(pa.array(event_ms >= result.card["split"]["cut_ms"]))


def test_the_predictor_reproduces_the_validation_predictions(trained: tuple[TrainResult, Path]) -> None:
    result, data = trained
    rows = _validation_rows(result, data)
    predictor = Predictor.load(result.model_dir, pipeline=tiny_pipeline())
    expected = result.validation_predictions
    assert np.array_equal(predictor.predict(rows), expected)
    assert np.array_equal(predictor.predict(pl.from_arrow(rows)), expected)
    dicts = rows.to_pylist()
    assert np.array_equal(predictor.predict(dicts), expected)
    assert predictor.predict_one(dicts[7]) == expected[7]
    assert predictor.predict([]).shape == (0,)


def test_missing_and_unseen_values_are_scored(trained: tuple[TrainResult, Path]) -> None:
    result, _ = trained
    predictor = Predictor.load(result.model_dir)
    row = {"user_impressions_1h": 2, "user_affinity": 1.5, "browser": "Chrome", "cost": 0.002}
    column = predictor.features.index("browser")
    unseen_row, null_row = {**row, "browser": "NetscapeNavigator"}, {**row, "browser": None}
    assert predictor.matrix([unseen_row])[0, column] == 4.0  # the unknown code: after the 4 browsers
    assert np.isnan(predictor.matrix([null_row])[0, column])
    # no training row had the unknown code, so LightGBM sends it where it sends a missing value
    assert predictor.predict_one(unseen_row) == predictor.predict_one(null_row)
    assert predictor.predict_one({"nothing": 1}) == predictor.predict(pa.table({"x": [1]}))[0]
    rows = pa.table(
        {"user_affinity": [1.5, -1.0], "browser": pa.array(["Chrome", "Edge"]).dictionary_encode()}
    )
    assert predictor.predict(rows).dtype == np.float64


def test_single_row_latency(trained: tuple[TrainResult, Path]) -> None:
    result, _ = trained
    predictor = Predictor.load(result.model_dir)
    row = {"user_impressions_1h": 2, "user_affinity": 0.5, "browser": "Safari", "is_bot_agent": False}
    predictor.predict_one(row)
    started = time.perf_counter()
    for _ in range(500):
        predictor.predict_one(row)
    print(f"predict_one: {(time.perf_counter() - started) / 500 * 1e6:.0f} us per row")


def test_a_training_set_of_other_definitions_is_refused(tmp_path: Path) -> None:
    data = write_training_set(
        tmp_path / "data", tiny_pipeline(), tiny_columns(400), fingerprint="sha256:" + "0" * 64
    )
    with pytest.raises(FingerprintMismatchError, match="Rebuild the training set with this pipeline"):
        train(tiny_pipeline(), str(data), str(tmp_path / "models"))
    assert not (tmp_path / "models").exists()


def test_a_folder_without_manifest_takes_kinds_from_the_pipeline(tmp_path: Path) -> None:
    data = write_training_set(tmp_path / "data", tiny_pipeline(), tiny_columns(300), manifest=False)
    data_set = read_training_set(tiny_pipeline(), str(data))
    kinds = {spec.name: (spec.kind, spec.type) for spec in data_set.features}
    assert kinds == {
        "user_impressions_1h": ("table", "int"),
        "user_affinity": ("table", "float"),
        "browser": ("event", "string"),
        "is_bot_agent": ("event", "bool"),
        "cost": ("event", "float"),
        "hour_of_day": ("event", "int"),
    }
    assert data_set.rows == 300 - 40 and data_set.manifest is None
    assert np.all(np.diff(data_set.event_ms()) >= 0)


def test_unusable_training_sets_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="does not exist"):
        train(tiny_pipeline(), str(tmp_path / "nowhere"), str(tmp_path / "models"))
    columns = tiny_columns(500)
    columns["clicked"] = np.zeros(500, dtype=np.int8)
    data = write_training_set(tmp_path / "flat", tiny_pipeline(), columns)
    with pytest.raises(TrainingDataError, match="both clicked and unclicked"):
        train(tiny_pipeline(), str(data), str(tmp_path / "models"))
    short = tiny_columns(50, hours=1, immature=0)
    data = write_training_set(tmp_path / "short", tiny_pipeline(), short)
    with pytest.raises(TrainingDataError, match="use a longer period"):
        train(tiny_pipeline(), str(data), str(tmp_path / "models"))


def test_without_early_stopping_and_with_a_feature_subset(tmp_path: Path) -> None:
    variant = TINY_PIPELINE.replace(
        "params: {n_estimators: 80,",
        "features: [user_affinity, browser]\n  params: {early_stopping_rounds: 0, n_estimators: 20,",
    )
    pipeline = tiny_pipeline(variant)
    data = write_training_set(tmp_path / "data", pipeline, tiny_columns(2000))
    result = train(pipeline, str(data), str(tmp_path / "models"))
    assert result.card["split"]["early_stop"] is None and result.card["trees"] == 20
    assert result.metrics["baseline"]["features"] == ["browser"]
    assert [f["name"] for f in result.card["features"]] == ["user_affinity", "browser"]
    assert result.to_json()["rows"]["early_stop"] == 0


def test_xgboost_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = tiny_pipeline(
        TINY_PIPELINE.replace("validation_fraction: 0.25", "kind: xgboost\n  validation_fraction: 0.25")
    )
    data = write_training_set(tmp_path / "data", pipeline, tiny_columns(2000))
    try:
        import xgboost  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match=r"pip install 'clickwise\[xgboost\]'"):
            train(pipeline, str(data), str(tmp_path / "models"))
        return
    result = train(pipeline, str(data), str(tmp_path / "models"))
    assert result.card["kind"] == "xgboost" and (Path(result.model_dir) / "model.ubj").exists()
    assert result.metrics["model"]["auc"] > result.metrics["baseline"]["auc"]
    assert result.card["params"]["dropped"] == ["min_child_samples"]
    rows = _validation_rows(result, data)
    predictor = Predictor.load(result.model_dir)
    assert np.array_equal(predictor.predict(rows), result.validation_predictions)
    assert predictor.predict_one(rows.to_pylist()[3]) == result.validation_predictions[3]
