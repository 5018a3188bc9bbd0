"""SageMaker sets: stable text codes, immature rows left out (and counted), the description beside
the channel prefix, and ``clickwise train`` reading the set back.

The lake holds views over three hours (each with a browser, a country and a flag) and clicks on some
of them; the label's horizon is 20 minutes, so the last views' labels are not final.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickwise.dataset import DatasetError, backfill
from clickwise.dataset.writer import text_code
from clickwise.events import Ingestor
from clickwise.model.dataset import read_training_set
from clickwise.spec import Pipeline, parse_pipeline
from clickwise.storage import Root, open_root
from clickwise.time import FixedClock

MINUTE, HOUR = 60_000, 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge", "Opera", "Brave"]

PIPELINE = """
version: 1
name: coded
allowed_lateness: 1m
streams:
  views:
    fields:
      view_id: string
      browser: {type: string, required: false}
      country: string
      bot: bool
      ts: int
    time: {field: ts, format: epoch_ms}
    event_id: view_id
  clicks:
    fields:
      view_id: string
      ts: int
    time: {field: ts, format: epoch_ms}
tables:
  per_browser:
    key: [browser]
    aggregations:
      views_1h: {stream: views, op: count, window: 1h}
features:
  browser_views_1h: {table: per_browser, aggregation: views_1h}
  browser: {event: browser}
  country: {event: country}
  bot: {event: bot}
label: {exposure: views, outcome: clicks, match: [view_id], horizon: 20m}
model:
  validation_fraction: 0.25
  params: {n_estimators: 30, num_leaves: 7, min_child_samples: 5, num_threads: 1}
"""


def _records(seed: int = 5) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    views, clicks = [], []
    for i in range(900):
        ts = T0 + int(i * 3 * HOUR / 900) + int(rng.integers(0, 1000))
        # the first hour has only the first three browsers: later hours bring texts that sort before them
        browser = BROWSERS[int(rng.integers(0, 3 if ts < T0 + HOUR else 6))] if i % 17 else None
        view = {"view_id": f"v{i:04d}", "browser": browser, "country": f"C{int(rng.integers(0, 9))}",
                "bot": bool(rng.random() < 0.1), "ts": ts}  # fmt: skip
        views.append(view)
        if rng.random() < 0.3:
            clicks.append({"view_id": view["view_id"], "ts": ts + int(rng.integers(0, 10 * MINUTE))})
    return {"views": views, "clicks": clicks}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Root]:
    pipeline = parse_pipeline(PIPELINE, source="coded")
    root = open_root(tmp_path_factory.mktemp("coded") / "root")
    ingestor = Ingestor(pipeline, root, clock=FixedClock(T0 + 5 * HOUR))
    for stream, records in _records().items():
        counts = ingestor.ingest_table(pa.Table.from_pylist(records), stream, tag=stream)
        assert counts.rejected == 0
    return pipeline, root


def _export(lake: tuple[Pipeline, Root], out: Path, start_ms: int, end_ms: int, **options: Any) -> Any:
    pipeline, root = lake
    return backfill(pipeline, root, str(out), start_ms, end_ms, **options)


def _meta(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "_dataset.json").read_text()))


def _csv_rows(out: Path, meta: dict[str, Any]) -> list[list[str]]:
    return [row for path in meta["files"] for row in csv.reader(io.StringIO((out / path).read_text()))]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_codes_are_a_function_of_the_text_not_of_the_export(
    lake: tuple[Pipeline, Root], tmp_path: Path
) -> None:
    early = _export(lake, tmp_path / "early", T0, T0 + HOUR, sagemaker=True)
    late = _export(lake, tmp_path / "late", T0 + HOUR, T0 + 3 * HOUR, sagemaker=True, include_immature=True)
    assert early.rows and late.rows
    codes = {name: _meta(tmp_path / name)["encodings"]["browser"]["codes"] for name in ("early", "late")}
    # the late hours bring "Brave", which sorts before "Chrome": codes by position would shift
    assert set(codes["early"]) == {"Chrome", "Safari", "Firefox"} and set(codes["late"]) == set(BROWSERS)
    for text, code in codes["early"].items():
        assert codes["late"][text] == code == text_code(text), text
    assert _meta(tmp_path / "late")["encodings"]["browser"]["collisions"] == []
    # row by row, the file holds each row's browser as its code (null: an empty field)
    _export(lake, tmp_path / "parquet", T0 + HOUR, T0 + 3 * HOUR)
    parquet = pa.concat_tables(
        [pq.read_table(tmp_path / "parquet" / f) for f in _meta(tmp_path / "parquet")["files"]]
    )
    column = 1 + list(lake[0].features).index("browser")
    written = [row[column] for row in _csv_rows(tmp_path / "late", _meta(tmp_path / "late"))]
    expected = [
        "" if text is None else str(text_code(text)) for text in parquet.column("browser").to_pylist()
    ]
    assert written == expected and "" in written


def test_the_description_sits_beside_the_channel_prefix(lake: tuple[Pipeline, Root], tmp_path: Path) -> None:
    report = _export(lake, tmp_path, T0, T0 + 3 * HOUR, sagemaker=True)
    meta = _meta(tmp_path)
    channel = [f for f in _files(tmp_path) if f.startswith("data/")]
    keys = [f for f in _files(tmp_path) if f.startswith("keys/")]
    assert _files(tmp_path) == sorted([*channel, *keys, "_dataset.json"])
    assert channel == meta["files"] == sorted(report.files) and len(channel) == 3
    assert all(f.endswith("/part-00000.csv") for f in channel)
    assert (
        keys
        == meta["key_files"]
        == [f.replace("data/", "keys/").replace(".csv", ".parquet") for f in channel]
    )
    assert meta["layout"]["channel"] == "data/"
    for data_file, key_file in zip(channel, keys, strict=True):
        assert (
            len((tmp_path / data_file).read_text().splitlines())
            == pq.read_metadata(tmp_path / key_file).num_rows
        )


def test_immature_rows_are_left_out_and_counted_unless_asked_for(
    lake: tuple[Pipeline, Root], tmp_path: Path
) -> None:
    parquet = _export(lake, tmp_path / "parquet", T0, T0 + 3 * HOUR)
    immature = parquet.rows - parquet.mature
    assert immature > 10
    left = _export(lake, tmp_path / "left", T0, T0 + 3 * HOUR, sagemaker=True)
    assert (left.rows, left.immature_left_out) == (parquet.mature, immature)
    meta = _meta(tmp_path / "left")
    assert (meta["rows"], meta["immature_left_out"], meta["immature_rows"]) == (
        parquet.mature,
        immature,
        "left out",
    )
    assert len(_csv_rows(tmp_path / "left", meta)) == parquet.mature

    kept = _export(lake, tmp_path / "kept", T0, T0 + 3 * HOUR, sagemaker=True, include_immature=True)
    assert (kept.rows, kept.immature_left_out) == (parquet.rows, 0)
    meta = _meta(tmp_path / "kept")
    keys = pa.concat_tables([pq.read_table(tmp_path / "kept" / f) for f in meta["key_files"]])
    assert keys.column_names == ["event_id", "event_ms", "label_mature"]
    assert keys.num_rows == parquet.rows and keys.column("label_mature").to_pylist().count(False) == immature
    with pytest.raises(DatasetError, match="--include-immature applies to --sagemaker"):
        _export(lake, tmp_path / "refused", T0, T0 + HOUR, include_immature=True)


@pytest.mark.parametrize(
    "options", [{"fmt": "csv"}, {"sagemaker": True}, {"sagemaker": True, "include_immature": True}]
)
def test_clickwise_reads_its_own_csv_sets_as_it_reads_parquet(
    lake: tuple[Pipeline, Root], tmp_path: Path, options: dict[str, Any]
) -> None:
    pipeline, _ = lake
    _export(lake, tmp_path / "parquet", T0, T0 + 3 * HOUR)
    _export(lake, tmp_path / "other", T0, T0 + 3 * HOUR, **options)
    expected = read_training_set(pipeline, str(tmp_path / "parquet"))
    got = read_training_set(pipeline, str(tmp_path / "other"))
    assert got.features == expected.features and got.rows == expected.rows > 0
    assert got.table.to_pylist() == expected.table.to_pylist()
    assert got.rows_read == (expected.rows if options == {"sagemaker": True} else expected.rows_read)


def test_the_channel_folder_alone_is_refused_with_a_hint(lake: tuple[Pipeline, Root], tmp_path: Path) -> None:
    _export(lake, tmp_path, T0, T0 + HOUR, sagemaker=True)
    with pytest.raises(Exception, match="parent of its data/ channel"):
        read_training_set(lake[0], str(tmp_path / "data"))
