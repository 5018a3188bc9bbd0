"""Training sets and model versions on S3 (a real S3 API server on loopback)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
from model_training_sets import tiny_columns, tiny_pipeline, write_training_set

from clickwise.model import Predictor, evaluate, list_versions, resolve, set_active, train

pytestmark = pytest.mark.integration


def test_train_predict_and_evaluate_on_s3(tmp_path: Path, s3_bucket: str) -> None:
    local = write_training_set(tmp_path / "data", tiny_pipeline(), tiny_columns(2000))
    s3 = pafs.S3FileSystem(endpoint_override=_endpoint(), scheme="http", region="us-east-1")
    pafs.copy_files(str(local), f"{s3_bucket}/sets/tiny", destination_filesystem=s3)
    data, models = f"s3://{s3_bucket}/sets/tiny", f"s3://{s3_bucket}/models"

    first = train(tiny_pipeline(), data, models)
    second = train(tiny_pipeline(), data, models)
    assert (first.version, second.version) == ("v0001", "v0002")
    assert list_versions(models) == ["v0001", "v0002"]
    assert resolve("latest", models) == f"{models}/v0002"
    set_active(models, "v0001")
    assert resolve(models) == f"{models}/v0001"

    predictor = Predictor.load(resolve("active", models))
    local_result = train(tiny_pipeline(), str(local), str(tmp_path / "models"))
    assert np.array_equal(first.validation_predictions, local_result.validation_predictions)
    assert predictor.card["split"] == local_result.card["split"]
    report = evaluate(tiny_pipeline(), data, first.model_dir, out=f"s3://{s3_bucket}/money")
    assert report.files["json"] == f"s3://{s3_bucket}/money/money.json"


def _endpoint() -> str:
    return os.environ["CLICKWISE_S3_ENDPOINT"].removeprefix("http://")
