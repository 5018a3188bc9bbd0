"""The lake on S3 (a real S3 API server on loopback): ingest, read back, list, idempotency."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from clickwise.events import DeadLetters, Ingestor, Lake
from clickwise.storage import open_root
from clickwise.testing import FixedClock, small_pipeline, write_jsonl

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000
NOW = FixedClock(T0 + 86_400_000)


def test_root_round_trip(s3_bucket: str) -> None:
    root = open_root(f"s3://{s3_bucket}/prefix")
    root.write_bytes("a/b.txt", b"hello")
    assert root.read_bytes("a/b.txt") == b"hello"
    assert root.exists("a/b.txt") and not root.exists("a/c.txt")
    assert root.list_files("a") == ["a/b.txt"]
    root.delete("a/b.txt")
    assert root.list_files("") == []


def test_ingest_to_s3_and_from_an_s3_prefix(tmp_path: Path, s3_bucket: str, s3_server: object) -> None:
    records = [{"view_id": f"v{i}", "user_id": "u", "price": 1.0, "ts": T0 + i * 60_000} for i in range(120)]
    source = write_jsonl(tmp_path / "views.jsonl", [*records, '{"broken": '])
    endpoint = s3_server.endpoint
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").upload_file(
        str(source), s3_bucket, "incoming/views/part-0.jsonl"
    )
    root = open_root(f"s3://{s3_bucket}/state")
    counts = (
        Ingestor(small_pipeline(), root, clock=NOW)
        .ingest_files([f"s3://{s3_bucket}/incoming/"])
        .streams["views"]
    )
    assert (counts.accepted, counts.rejected) == (120, 1)
    lake = Lake(root, small_pipeline())
    assert lake.read_all("views").column("view_id").to_pylist() == [r["view_id"] for r in records]
    assert [f.path.rsplit("/", 2)[0] for f in lake.files("views")][0] == "lake/views/date=2023-11-14"
    assert DeadLetters(root).read("views").column("raw").to_pylist() == ['{"broken": ']
    again = Ingestor(small_pipeline(), open_root(f"s3://{s3_bucket}/state"), clock=NOW).ingest_files(
        [f"s3://{s3_bucket}/incoming/views/part-0.jsonl"]
    )
    assert again.streams["views"].skipped_inputs == 1 and lake.count("views") == 120


def test_tables_on_s3_reopen_with_the_same_answers(s3_bucket: str) -> None:
    import pyarrow as pa

    from clickwise.tables import Tables

    pipeline = small_pipeline()
    root = open_root(f"s3://{s3_bucket}/tables-state")
    views = [
        {"view_id": f"v{i}", "user_id": f"u{i % 3}", "price": 1.5, "ts": T0 + i * 60_000} for i in range(90)
    ]
    Ingestor(pipeline, root, clock=NOW).ingest_table(pa.Table.from_pylist(views), "views", tag="one")
    tables = Tables.open(pipeline, root, clock=NOW)
    tables.catch_up()
    moment = T0 + 45 * 60_000 + 1
    expected = [tables.get_one("user", f"u{i}", moment) for i in range(3)]
    assert expected[0]["views_1h"] == 16
    fresh = Tables.open(pipeline, open_root(f"s3://{s3_bucket}/tables-state"), clock=NOW)  # a new machine
    assert [fresh.get_one("user", f"u{i}", moment) for i in range(3)] == expected
    assert fresh.catch_up().files == 0
