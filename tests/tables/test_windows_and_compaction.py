"""Catch-up in many small windows, with compaction and retention, still equals the oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tables_oracle import Oracle, same_value

from clickwise.events import DeadLetters, Ingestor
from clickwise.examples import example_path
from clickwise.spec import load_pipeline, parse_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables, engine
from clickwise.tables.engine import MAX_RUNS
from clickwise.tables.runs import merge_runs
from clickwise.time import FixedClock

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
HOUR = 3_600_000
NOW = FixedClock(START_MS + 3 * 86_400_000)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gen")
    generate(folder, users=150, hours=10, seed=21, start_ms=START_MS)
    return folder


def _ingest(pipeline_text: str | None, generated: Path, root_dir: Path) -> tuple[object, object]:
    pipeline = parse_pipeline(pipeline_text) if pipeline_text else load_pipeline(example_path("adclick"))
    root = open_root(root_dir)
    Ingestor(pipeline, root, clock=NOW).ingest_files(
        [str(generated / s) for s in ("impressions", "clicks", "predictions")]
    )
    return pipeline, root


@pytest.mark.parametrize("build_rows", [None, 1])
def test_small_windows_compact_and_equal_one_window_and_the_oracle(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build_rows: int | None
) -> None:
    """Many windows gathered into one run per feed, or (``build_rows``) into a run each: more runs
    than MAX_RUNS, so size-tiered compaction merges them as they come."""
    if build_rows is not None:
        monkeypatch.setattr(engine, "BUILD_ROWS", build_rows)
    pipeline, root = _ingest(None, generated, tmp_path / "small")
    small = Tables.open(pipeline, root, clock=NOW)  # type: ignore[arg-type]
    merges = []
    monkeypatch.setattr(engine, "merge_runs", lambda runs: merges.append(len(runs)) or merge_runs(runs))
    small.catch_up(window_rows=500)
    if build_rows is not None:  # merges during the catch-up, not only the final one per feed
        assert len(merges) > len(small.run_counts())
    _, root_big = _ingest(None, generated, tmp_path / "big")
    big = Tables.open(pipeline, root_big, clock=NOW)  # type: ignore[arg-type]
    big.catch_up()
    assert max(small.run_counts().values()) == 1  # a multi-window catch-up ends compacted
    oracle = Oracle.from_lake(pipeline, root)
    for hour in (1, 4, 7, 10):
        moment = START_MS + hour * HOUR + 17
        for table in ("user", "country", "campaign", "global"):
            got_small = small.snapshot(table, moment).to_pylist()
            assert got_small == big.snapshot(table, moment).to_pylist()
            expected = oracle.snapshot(table, moment)
            assert len(got_small) == len(expected)
            key_fields = pipeline.tables[table].key  # type: ignore[attr-defined]
            for row in got_small:
                key = row[key_fields[0]] if key_fields else None
                for name, value in expected[key].items():
                    assert same_value(value, row[name]), (table, key, name, moment, value, row[name])
    reopened = Tables.open(pipeline, root, clock=NOW)  # type: ignore[arg-type]
    moment = START_MS + 5 * HOUR
    assert reopened.snapshot("user", moment).to_pylist() == small.snapshot("user", moment).to_pylist()


def _hourly_impressions(generated: Path) -> Iterator[tuple[int, pa.Table]]:
    """The generated impressions, one hour at a time (as a live loop sees them)."""
    impressions = pq.read_table(next((generated / "impressions").iterdir()))
    for hour in range(10):
        start = START_MS + hour * HOUR
        within = pc.and_(pc.greater_equal(impressions["ts"], start), pc.less(impressions["ts"], start + HOUR))
        yield hour, impressions.filter(within)


def test_streaming_updates_compact_without_changing_answers(generated: Path, tmp_path: Path) -> None:
    pipeline = load_pipeline(example_path("adclick"))
    root = open_root(tmp_path / "stream")
    ingestor = Ingestor(pipeline, root, clock=NOW)
    tables = Tables.open(pipeline, root, clock=NOW)
    most_runs = 0
    for hour, batch in _hourly_impressions(generated):  # one small batch per pass
        ingestor.ingest_table(batch, "impressions", tag=f"hour-{hour}")
        tables.catch_up()
        most_runs = max(most_runs, tables.run_counts()["user.impressions"])
    assert 1 < most_runs <= MAX_RUNS  # runs piled up, and compaction kept them bounded
    oracle = Oracle.from_lake(pipeline, root)
    for moment in (START_MS + 3 * HOUR + 5, START_MS + 9 * HOUR + 5):
        expected = oracle.snapshot("campaign", moment)
        got = tables.snapshot("campaign", moment).to_pylist()
        assert len(got) == len(expected)
        for row in got:
            assert all(same_value(v, row[k]) for k, v in expected[row["campaign_id"]].items())
    reopened = Tables.open(pipeline, root, clock=NOW)
    assert (
        reopened.snapshot("user", START_MS + 8 * HOUR).to_pylist()
        == tables.snapshot("user", START_MS + 8 * HOUR).to_pylist()
    )


def test_background_checkpoints_leave_whole_states_and_updates_go_on(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Updates applied while a checkpoint is being written are not in it: a reopen (as after a
    crash) sees the snapshot's state, catches up the rest from the lake and equals an engine that
    applied everything; superseded run files are deleted once a write is adopted."""
    import threading

    import clickwise.tables.engine as engine

    next_hour_applied = threading.Event()
    save = engine.save_checkpoint

    def save_late(*args: object) -> None:  # each background checkpoint lands after the next update
        next_hour_applied.wait(timeout=30)
        save(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "save_checkpoint", save_late)
    pipeline = load_pipeline(example_path("adclick"))
    root = open_root(tmp_path / "background")
    ingestor = Ingestor(pipeline, root, clock=NOW)
    tables = Tables.open(pipeline, root, clock=NOW)
    written = 0
    for hour, batch in _hourly_impressions(generated):
        ingestor.ingest_table(batch, "impressions", tag=f"hour-{hour}")
        tables.catch_up(persist=False)
        next_hour_applied.set()
        if hour in (2, 5, 8):
            if tables._background is not None:  # the last one, released by this hour, finishing
                tables._background.thread.join()
            next_hour_applied.clear()
            assert tables.checkpoint_in_background()
            written += 1
            assert not tables.checkpoint_in_background()  # nothing changed since
    snapshot_applied = None
    writing = tables._background
    if writing is not None:  # the last one may still be writing: wait as a crash would not
        writing.thread.join()
        snapshot_applied = set(writing.plan.checkpoint.applied)
    on_disk = Tables.open(pipeline, root, clock=NOW)  # what a restart finds: the last whole checkpoint
    assert snapshot_applied is None or on_disk.applied_files() == snapshot_applied
    assert on_disk.applied_files() < tables.applied_files()  # the last hour came after it
    on_disk.catch_up()
    moment = START_MS + 11 * HOUR
    for table in ("user", "campaign", "global"):
        assert on_disk.snapshot(table, moment).to_pylist() == tables.snapshot(table, moment).to_pylist()
    assert tables.checkpoint()  # waits for the background write, adopts it, then writes the rest
    named = {path for paths in tables._checkpoint.runs.values() for path in paths}
    assert set(root.list_files("tables/runs")) == named  # nothing superseded is left behind
    assert Tables.open(pipeline, root, clock=NOW).applied_files() == tables.applied_files()
    assert written == 3


RETENTION = """
version: 1
name: short_memory
streams:
  views:
    fields: {view_id: string, user_id: string, ts: int}
    time: {field: ts, format: epoch_ms}
    event_id: view_id
allowed_lateness: 1m
tables:
  user:
    key: [user_id]
    retention: 2h
    aggregations:
      views_total: {stream: views, op: count, window: lifetime}
"""


def test_events_older_than_retention_go_to_dead_letters(tmp_path: Path) -> None:
    pipeline = parse_pipeline(RETENTION)
    root = open_root(tmp_path / "root")
    ingestor = Ingestor(pipeline, root, clock=NOW)
    fresh = [{"view_id": f"a{i}", "user_id": "u", "ts": START_MS + 5 * HOUR + i} for i in range(3)]
    ingestor.ingest_table(__import__("pyarrow").Table.from_pylist(fresh), "views", tag="fresh")
    tables = Tables.open(pipeline, root, clock=NOW)
    tables.catch_up()
    stale = [{"view_id": f"b{i}", "user_id": "u", "ts": START_MS + i} for i in range(2)]  # 5 h late
    ingestor.ingest_table(__import__("pyarrow").Table.from_pylist(stale), "views", tag="stale")
    report = tables.catch_up()
    assert report.expired == 2 and tables.counters()["expired_events"] == 2
    assert tables.get_one("user", "u", START_MS + 6 * HOUR)["views_total"] == 3
    reasons = DeadLetters(root).read("views").column("reason").to_pylist()
    assert reasons == ["older than the 2h retention of table 'user'"] * 2
