"""Folders, file names, schemas and types per format; argument checking; progress."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickwise.errors import ClickwiseError
from clickwise.synth import GenerateSummary, SynthConfig, generate
from clickwise.synth.errors import SynthConfigError, SynthOutputError
from clickwise.synth.writer import FORMATS

START_MS = 1_700_000_000_000
STR, INT, FLT = pa.string(), pa.int64(), pa.float64()
EXPECTED = {
    "impressions": [
        ("impression_id", STR), ("user_id", STR), ("campaign_id", STR), ("domain", STR), ("ip", STR),
        ("user_agent", STR), ("cost", FLT), ("ts", INT), ("arrival_ts", INT),
    ],
    "clicks": [("click_id", STR), ("impression_id", STR), ("user_id", STR), ("campaign_id", STR), ("ts", INT),
               ("arrival_ts", INT)],
    "predictions": [("user_id", STR), ("segment_id", STR), ("score", FLT), ("ts", INT), ("arrival_ts", INT)],
    "truth": [("impression_id", STR), ("p_click", FLT), ("is_bot", pa.bool_())],
}  # fmt: skip
PY_TYPES = {STR: str, INT: int, FLT: float, pa.bool_(): bool}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GenerateSummary]:
    root = tmp_path_factory.mktemp("formats")
    return {
        fmt: generate(root / fmt, users=300, hours=2, seed=3, start_ms=START_MS, fmt=fmt) for fmt in FORMATS
    }


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_one_folder_per_stream_with_part_files(runs: dict[str, GenerateSummary], fmt: str) -> None:
    summary = runs[fmt]
    for stream in EXPECTED:
        folder = summary.out_dir / stream
        assert sorted(p.name for p in folder.iterdir()) == [f"part-00000.{fmt}"]
        assert summary.paths[stream] == (folder / f"part-00000.{fmt}",)
        assert summary.counts[stream] > 0


def test_parquet_schema(runs: dict[str, GenerateSummary]) -> None:
    for stream, fields in EXPECTED.items():
        schema = pq.read_schema(runs["parquet"].paths[stream][0])
        assert [(f.name, f.type) for f in schema] == fields
        meta = pq.ParquetFile(runs["parquet"].paths[stream][0]).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"


def test_jsonl_fields_and_types(runs: dict[str, GenerateSummary]) -> None:
    for stream, fields in EXPECTED.items():
        lines = runs["jsonl"].paths[stream][0].read_text().splitlines()
        assert len(lines) == runs["jsonl"].counts[stream]
        row = json.loads(lines[0])
        assert list(row) == [name for name, _ in fields]
        assert [type(row[name]) for name, _ in fields] == [PY_TYPES[t] for _, t in fields]


def test_csv_header_and_values(runs: dict[str, GenerateSummary]) -> None:
    for stream, fields in EXPECTED.items():
        with runs["csv"].paths[stream][0].open(newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == [name for name, _ in fields]
        assert len(rows) - 1 == runs["csv"].counts[stream]
        for (_, kind), value in zip(fields, rows[1], strict=True):
            PY_TYPES[kind](value)


def test_all_formats_hold_the_same_rows(runs: dict[str, GenerateSummary]) -> None:
    parquet = pq.read_table(runs["parquet"].paths["impressions"][0]).to_pylist()
    lines = runs["jsonl"].paths["impressions"][0].read_text().splitlines()
    assert [json.loads(line) for line in lines] == parquet


def test_summary_time_range(runs: dict[str, GenerateSummary]) -> None:
    summary = runs["parquet"]
    assert (summary.start_ms, summary.end_ms) == (START_MS, START_MS + 2 * 3_600_000)
    imps = pq.read_table(summary.paths["impressions"][0])
    ts = imps.column("ts").to_pylist()
    assert START_MS <= min(ts) and max(ts) < summary.end_ms
    clicks = pq.read_table(summary.paths["clicks"][0])
    assert summary.max_ts_ms == max(max(ts), max(clicks.column("ts").to_pylist()), summary.max_ts_ms)
    assert summary.max_arrival_ms >= summary.max_ts_ms
    assert summary.events == sum(summary.counts.values())


def test_progress_reaches_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate(
        tmp_path, users=50, hours=1, seed=1, start_ms=START_MS, progress=lambda d, t: calls.append((d, t))
    )
    totals = {total for _, total in calls}
    assert len(totals) == 1
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] == 0 and done[-1] == totals.pop()


def test_rows_per_file_rolls_parts(tmp_path: Path) -> None:
    summary = generate(
        tmp_path, users=300, hours=2, seed=3, start_ms=START_MS, config=SynthConfig(rows_per_file=500)
    )
    parts = summary.paths["impressions"]
    assert [p.name for p in parts[:2]] == ["part-00000.parquet", "part-00001.parquet"]
    assert sum(pq.read_metadata(p).num_rows for p in parts) == summary.impressions
    arrivals = pa.concat_tables(pq.read_table(p) for p in parts).column("arrival_ts").to_pylist()
    assert arrivals == sorted(arrivals)


def test_empty_stream_still_has_a_file_with_schema(tmp_path: Path) -> None:
    interval = 48 * 3_600_000
    after_tick = START_MS - START_MS % interval + interval + 3_600_000  # the next run is 47 hours away
    config = SynthConfig(prediction_interval_ms=interval)
    summary = generate(tmp_path, users=5, hours=1, seed=1, start_ms=after_tick, config=config)
    assert summary.predictions == 0
    schema = pq.read_schema(summary.paths["predictions"][0])
    assert [(f.name, f.type) for f in schema] == EXPECTED["predictions"]


def test_refuses_a_folder_of_an_earlier_run(tmp_path: Path) -> None:
    generate(tmp_path, users=20, hours=0.5, seed=1, start_ms=START_MS)
    with pytest.raises(SynthOutputError, match="earlier run"):
        generate(tmp_path, users=20, hours=0.5, seed=1, start_ms=START_MS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0}, "users"),
        ({"hours": -1.0}, "hours"),
        ({"hours": float("nan")}, "hours"),
        ({"seed": -3}, "seed"),
        ({"start_ms": 1.5}, "start_ms"),
        ({"fmt": "xml"}, "fmt"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"users": 10, "hours": 1.0, "seed": 1, "start_ms": START_MS, **kwargs}
    with pytest.raises(SynthConfigError, match=message) as info:
        generate(tmp_path, **args)  # type: ignore[arg-type]
    assert isinstance(info.value, ClickwiseError)
    assert not (tmp_path / "impressions").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("late_fraction", 1.5), ("campaigns", 0), ("campaigns", 2.5), ("base_ctr", 0.7), ("chunk_ms", 10),
     ("activity_propensity_corr", -1.0), ("bot_fraction", True)],
)  # fmt: skip
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(SynthConfigError, match=f"SynthConfig.{field}"):
        SynthConfig(**{field: value})  # type: ignore[arg-type]
