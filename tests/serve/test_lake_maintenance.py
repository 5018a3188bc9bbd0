"""The service merges the small lake files its HTTP batches write while it keeps ingesting:
every event is counted once, in memory and after a restart."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clickwise.events import Lake
from clickwise.examples import example_path
from clickwise.serve import Service, service
from clickwise.spec import load_pipeline
from clickwise.storage import open_root

USERS, BATCHES, PER_BATCH = 4, 30, 3


def _impression(user: str, number: int, ts: int) -> dict[str, object]:
    return {
        "impression_id": f"{user}-{number}",
        "user_id": user,
        "campaign_id": "c1",
        "domain": "news.example.com",
        "ip": "10.0.0.1",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
        "cost": 0.001,
        "ts": ts,
    }


def test_small_files_are_merged_while_ingesting_and_nothing_counts_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "COMPACT_LAKE_S", 0.3)
    monkeypatch.setattr(service, "LIVE_CHECKPOINT_S", 0.0)  # (files are merged once checkpointed)
    pipeline = load_pipeline(example_path("adclick"))
    root = open_root(str(tmp_path))
    running = Service(pipeline, root)
    running.start_maintenance()
    now = int(time.time() * 1000)

    def send(worker: int) -> int:
        user, accepted = f"user-{worker}", 0
        for batch in range(BATCHES):
            numbers = range(batch * PER_BATCH, (batch + 1) * PER_BATCH)
            records = [_impression(user, number, now - 60_000 + batch) for number in numbers]
            accepted += running.ingest("impressions", records).accepted
            time.sleep(0.02)
        return accepted

    with ThreadPoolExecutor(USERS) as pool:
        assert list(pool.map(send, range(USERS))) == [BATCHES * PER_BATCH] * USERS
    deadline, extra = time.monotonic() + 20, 0
    while running.lake_compaction.get("merged", 0) == 0 and time.monotonic() < deadline:
        extra += running.ingest("impressions", [_impression("user-0", 10_000 + extra, now)]).accepted
        time.sleep(0.2)  # (each ingest may start a checkpoint: merged files must be checkpointed)
    assert running.lake_compaction.get("merged", 0) > 0
    lake = Lake(root, pipeline)
    assert len(lake.completed_files("impressions")) < USERS * BATCHES // 2
    want = {f"user-{w}": BATCHES * PER_BATCH + (extra if w == 0 else 0) for w in range(USERS)}
    for user, count in want.items():
        assert running.lookup("user", user, None)["values"]["impressions_total"] == count
    running.close()
    assert lake.count("impressions") == sum(want.values())
    assert running.tables.applied_files() == set(lake.completed_files("impressions"))  # (renamed)
    restarted = Service(pipeline, root)  # its checkpoint may name files merged since
    for user, count in want.items():
        assert restarted.lookup("user", user, None)["values"]["impressions_total"] == count
    restarted.close()
