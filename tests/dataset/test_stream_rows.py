"""Streaming training rows and ``verify``: the streaming path equals the backfill, nothing leaks.

On generated adclick data (late, re-delivered and out-of-order events included), replaying the lake
through the streaming path gives exactly the backfill's rows when the pipeline's allowed lateness
covers the data's delays, and the check does fail when it does not. A deliberately leaky feature
read is caught by the leakage probe. The row emitter's corrections and crash leftovers are checked
on hand-made events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from clickwise.dataset import RowEmitter, read_rows, verify
from clickwise.dataset.stream import ROWS, STATE
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.spec import Pipeline, load_pipeline, parse_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.time import FixedClock

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
HOUR = 3_600_000
MINUTE = 60_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    generate(folder, users=1500, hours=4, seed=11, start_ms=START_MS)
    return folder


def _lake(pipeline: Pipeline, data: Path, folder: Path) -> object:
    root = open_root(folder)
    counts = Ingestor(pipeline, root).ingest_files(
        [str(data / s) for s in ("impressions", "clicks", "predictions")]
    )
    assert counts.streams["clicks"].duplicates > 0, "the generated data should re-deliver some clicks"
    return root


def _with_lateness(text: str) -> Pipeline:
    source = example_path("adclick").read_text()
    assert "allowed_lateness: 2h\n" in source
    return parse_pipeline(
        source.replace("allowed_lateness: 2h\n", f"allowed_lateness: {text}\n"), source="test"
    )


def test_streaming_rows_equal_the_backfill_and_nothing_leaks(generated: Path, tmp_path: Path) -> None:
    pipeline = load_pipeline(example_path("adclick"))
    root = _lake(pipeline, generated, tmp_path / "root")
    events = pl.concat(
        pl.read_parquet(
            tmp_path / "root" / "lake" / stream / "**" / "*.parquet", columns=["_event_ms", "_arrival_ms"]
        )
        for stream in ("impressions", "clicks", "predictions")
    )
    lag = (events["_arrival_ms"] - events["_event_ms"]).to_numpy()
    assert (lag > 10 * MINUTE).sum() > 10, "the generated data should have events arriving well out of order"
    report = verify(pipeline, root, START_MS, START_MS + 4 * HOUR, batch_ms=10 * MINUTE, cuts=2)
    assert report.compared > 10_000
    assert report.differing_rows == 0, report.differing
    assert report.only_in_stream == 0
    assert report.leaks == 0 and len(report.leakage) == 2
    assert all(check.rows > 0 for check in report.leakage)
    assert report.ok


def test_verify_reports_rows_that_late_events_changed(generated: Path, tmp_path: Path) -> None:
    """With an allowed lateness shorter than the data's delays, rows go out before some events
    arrive: verify must see the difference (so the check can fail) and name the cause."""
    pipeline = _with_lateness("1m")
    root = _lake(pipeline, generated, tmp_path / "root")
    report = verify(pipeline, root, START_MS, START_MS + 4 * HOUR, batch_ms=10 * MINUTE, cuts=0)
    assert report.differing_rows > 0
    assert report.events_later_than_emission > 0
    assert report.differing["clicked"] == 0, "late clicks must come back as corrections"
    assert not report.ok


def test_the_leakage_probe_catches_a_feature_that_reads_the_future(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = load_pipeline(example_path("adclick"))
    root = _lake(pipeline, generated, tmp_path / "root")
    honest = Tables.evaluate_batch

    def peeking(
        self: Tables, table: str, key_hash: np.ndarray, as_of_ms: np.ndarray, known: object = None
    ) -> object:
        return honest(self, table, key_hash, np.asarray(as_of_ms) + 10 * MINUTE, known)  # type: ignore[arg-type]

    monkeypatch.setattr(Tables, "evaluate_batch", peeking)
    report = verify(pipeline, root, START_MS, START_MS + 4 * HOUR, batch_ms=30 * MINUTE, cuts=1)
    assert report.leaks > 0
    assert not report.ok


TINY = """
version: 1
name: tiny
allowed_lateness: 1m
streams:
  views:
    fields: {view_id: string, user: string, ts: int, arr: int}
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: view_id
  clicks:
    fields: {click_id: string, view_id: string, ts: int, arr: int}
    time: {field: ts, format: epoch_ms}
    arrival_time: {field: arr, format: epoch_ms}
    event_id: click_id
tables:
  user:
    key: [user]
    aggregations:
      views_1h: {stream: views, op: count, window: 1h}
features:
  views_1h: {table: user, aggregation: views_1h}
label: {name: clicked, exposure: views, outcome: clicks, match: [view_id], horizon: 10m}
"""


def _ingest(
    pipeline: Pipeline, root: object, stream: str, records: list[dict[str, object]], tag: str
) -> None:
    ingestor = Ingestor(pipeline, root, clock=FixedClock(START_MS + 10 * HOUR))  # type: ignore[arg-type]
    ingestor.ingest_table(pa.Table.from_pylist(records), stream, tag=tag)


def test_a_click_after_its_row_went_out_gives_a_correction(tmp_path: Path) -> None:
    pipeline = parse_pipeline(TINY, source="tiny")
    root = open_root(tmp_path / "root")
    t = START_MS
    views = [
        {"view_id": "v1", "user": "u", "ts": t, "arr": t},
        {"view_id": "v2", "user": "u", "ts": t + MINUTE, "arr": t + MINUTE},
        {"view_id": "v3", "user": "u", "ts": t + 30 * MINUTE, "arr": t + 30 * MINUTE},
    ]
    _ingest(pipeline, root, "views", views, "views-1")
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    emitter = RowEmitter(pipeline, root)
    first = emitter.emit(tables)  # watermark t+29m: v1 and v2 (t + 10m <= watermark) go out, v3 waits
    assert (first.rows, first.corrections) == (2, 0)
    # v1's click (5 minutes after it, inside the horizon) arrives only now; v2's is too late (11 min)
    clicks = [
        {"click_id": "c1", "view_id": "v1", "ts": t + 5 * MINUTE, "arr": t + 40 * MINUTE},
        {"click_id": "c2", "view_id": "v2", "ts": t + 12 * MINUTE, "arr": t + 40 * MINUTE},
        {"click_id": "c3", "view_id": "v3", "ts": t + 39 * MINUTE, "arr": t + 41 * MINUTE},
    ]
    _ingest(pipeline, root, "clicks", clicks, "clicks-1")
    later = [{"view_id": "v4", "user": "u", "ts": t + 55 * MINUTE, "arr": t + 55 * MINUTE}]
    _ingest(pipeline, root, "views", later, "views-2")  # the watermark passes v3's window
    tables.catch_up()
    second = RowEmitter(pipeline, root).emit(tables)  # a new emitter: progress comes from its file
    assert (second.rows, second.corrections) == (1, 1)
    rows = read_rows(root).sort("event_ms")
    assert rows.get_column("event_id").to_list() == ["v1", "v2", "v3"]
    assert rows.get_column("clicked").to_list() == [1, 0, 1]
    assert rows.get_column("correction").to_list() == [True, False, False]
    assert rows.get_column("views_1h").to_list() == [0, 1, 2]
    third = RowEmitter(pipeline, root).emit(tables)
    assert (third.rows, third.corrections) == (0, 0), "nothing is emitted twice"
    assert read_rows(root).height == 3


def test_row_files_of_an_unfinished_pass_are_removed(tmp_path: Path) -> None:
    pipeline = parse_pipeline(TINY, source="tiny")
    root = open_root(tmp_path / "root")
    t = START_MS
    views = [
        {"view_id": "v1", "user": "u", "ts": t, "arr": t},
        {"view_id": "v9", "user": "u", "ts": t + HOUR, "arr": t + HOUR},
    ]
    _ingest(pipeline, root, "views", views, "v")
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    RowEmitter(pipeline, root).emit(tables)
    state = (tmp_path / "root" / STATE).read_bytes()
    leftover = tmp_path / "root" / ROWS / "date=2026-01-05" / "hour=00" / "part-00000002.parquet"
    leftover.write_bytes((next((tmp_path / "root" / ROWS).rglob("part-00000001.parquet"))).read_bytes())
    RowEmitter(pipeline, root)  # opening cleans up what no saved progress names
    assert not leftover.exists()
    assert (tmp_path / "root" / STATE).read_bytes() == state
    assert read_rows(root).height == 1
