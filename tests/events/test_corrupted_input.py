"""Acceptance: generated impressions as JSON lines with 10% corrupted lines, through adclick."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from clickwise.events import DeadLetters, Ingestor
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.testing import FixedClock

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def _corrupt(line: bytes, how: int, rng: random.Random) -> bytes:
    record = orjson.loads(line)
    if how == 0:
        return line[: rng.randrange(1, len(line) - 1)]  # truncated JSON
    if how == 1:
        record["cost"] = "free"  # wrong type
    elif how == 2:
        del record["user_id"]  # missing field
    elif how == 3:
        record["ts"] = "2026-01-05 25:61"  # unreadable time
    elif how == 4:
        record["ts"] = 42  # impossible time
    elif how == 5:
        record["user_agent"] = "Mozilla/5.0 " + "A" * 1_000_000  # over max_length
    else:
        record["cost"] = -3.5  # below minimum
    return orjson.dumps(record)


def test_every_good_line_once_every_bad_line_in_dead_letters(tmp_path: Path) -> None:
    generate(tmp_path / "gen", users=300, hours=2, seed=3, start_ms=START_MS, fmt="jsonl")
    source = next((tmp_path / "gen" / "impressions").iterdir())
    lines = source.read_bytes().splitlines()
    rng = random.Random(5)
    bad_rows = set(rng.sample(range(len(lines)), len(lines) // 10))
    mixed = [_corrupt(line, i % 7, rng) if i in bad_rows else line for i, line in enumerate(lines)]
    path = tmp_path / "impressions.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")

    pipeline = load_pipeline(example_path("adclick"))
    root = open_root(tmp_path / "root")
    clock = FixedClock(START_MS + 86_400_000)
    counts = Ingestor(pipeline, root, clock=clock).ingest_files([str(path)]).streams["impressions"]
    good_ids = [orjson.loads(line)["impression_id"] for i, line in enumerate(lines) if i not in bad_rows]
    assert (counts.accepted, counts.rejected, counts.duplicates) == (len(good_ids), len(bad_rows), 0)

    stored = [
        pq.read_table(root.path(p), columns=["impression_id"]).column(0).to_pylist()
        for p in root.list_files("lake/impressions", suffix=".parquet")
    ]
    assert sorted(sum(stored, [])) == sorted(good_ids)
    dead = DeadLetters(root).read("impressions")
    assert sorted(dead.column("row").to_pylist()) == sorted(bad_rows)
    assert sorted(dead.column("raw").to_pylist()) == sorted(mixed[i].decode() for i in bad_rows)
    assert all(dead.column("reason").to_pylist())

    again = Ingestor(pipeline, root, clock=clock).ingest_files([str(path)]).streams["impressions"]
    assert (again.accepted, again.rejected, again.skipped_inputs) == (0, 0, 1)
    assert DeadLetters(root).read("impressions").num_rows == len(bad_rows)
