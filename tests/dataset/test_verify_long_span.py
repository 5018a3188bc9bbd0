"""``verify`` on the reference pipeline over spans longer than every retention it uses in practice.

The adclick pipeline's ``impression_country`` table remembers impressions for 2 days. Over six days
of generated data (3x that retention), streaming and backfill must agree row by row and the leakage
probe must find nothing, for a file ingest with the data's arrival times and for one without them
(every event arrives at the moment of its ingest), which verify must replay by event time rather
than pass trivially in one batch.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clickwise.dataset import verify
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.spec import Pipeline, load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.time import FixedClock

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
HOUR = 3_600_000
DAY = 24 * HOUR
HOURS = 6 * 24
STREAMS = ("impressions", "clicks", "predictions")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    pipeline = load_pipeline(example_path("adclick"))
    assert pipeline.tables["impression_country"].retention == 2 * DAY
    return pipeline


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("six-days")
    generate(folder, users=120, hours=HOURS, seed=13, start_ms=START_MS)
    return folder


def _ingest(pipeline: Pipeline, inputs: list[str], folder: Path) -> object:
    root = open_root(folder)
    counts = Ingestor(pipeline, root, clock=FixedClock(START_MS + HOURS * HOUR + 6 * HOUR)).ingest_files(
        inputs
    )
    assert all(counts.streams[s].rejected == 0 for s in STREAMS)
    return root


@pytest.mark.slow
def test_six_days_verify_with_arrival_times(pipeline: Pipeline, generated: Path, tmp_path: Path) -> None:
    root = _ingest(pipeline, [str(generated / s) for s in STREAMS], tmp_path / "root")
    report = verify(pipeline, root, START_MS, START_MS + HOURS * HOUR, cuts=2)
    assert report.replayed_by == "arrival time"
    assert report.compared > 30_000 and report.batches > 500
    assert report.differing_rows == 0, report.differing
    assert report.only_in_stream == 0
    assert report.leaks == 0 and all(check.rows > 0 for check in report.leakage)
    assert max(check.cut_ms for check in report.leakage) > START_MS + 3 * DAY  # a cut past 1.5 retentions
    assert report.ok


@pytest.mark.slow
def test_without_arrival_times_verify_replays_by_event_time(
    pipeline: Pipeline, generated: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    for stream in STREAMS:
        (plain / stream).mkdir(parents=True)
        for number, path in enumerate(sorted((generated / stream).glob("*.parquet"))):
            table = pq.read_table(path)
            pq.write_table(table.drop_columns(["arrival_ts"]), plain / stream / f"part-{number}.parquet")
    root = _ingest(pipeline, [str(plain / s) for s in STREAMS], tmp_path / "root")
    report = verify(pipeline, root, START_MS, START_MS + HOURS * HOUR, cuts=1)
    assert report.arrival_batches == 1
    assert report.replayed_by == "event time"
    assert report.batches > 500  # not one batch of everything
    assert report.differing_rows == 0 and report.leaks == 0 and report.ok
