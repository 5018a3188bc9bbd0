"""Ingest into the lake: formats, dead letters, dedup, idempotency, partitioning, crash leftovers."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickwise.errors import InputError
from clickwise.events import EVENT_MS, DeadLetters, Ingestor, Lake
from clickwise.storage import open_root
from clickwise.testing import FixedClock, small_pipeline, write_jsonl

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary
NOW = FixedClock(T0 + 30 * 86_400_000)


def _views(n: int, *, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "view_id": f"v{i}",
            "user_id": f"u{i % 7}",
            "price": round(0.01 * (i % 50), 2),
            "ts": T0 + i * 97_000,
        }
        for i in range(start, start + n)
    ]


@pytest.fixture
def ingestor(tmp_path: Path) -> Ingestor:
    return Ingestor(small_pipeline(), open_root(tmp_path / "root"), clock=NOW)


def test_jsonl_lands_in_hour_partitions_sorted_by_time(tmp_path: Path, ingestor: Ingestor) -> None:
    records = _views(200)
    random.Random(1).shuffle(records)
    report = ingestor.ingest_files([str(write_jsonl(tmp_path / "in" / "views.jsonl", records))])
    assert report.streams["views"].accepted == 200
    lake = ingestor.lake
    files = lake.files("views")
    assert [f.path.rsplit("/", 1)[0] for f in files][:3] == [
        "lake/views/date=2023-11-14/hour=22",
        "lake/views/date=2023-11-14/hour=23",
        "lake/views/date=2023-11-15/hour=00",
    ]  # fmt: skip
    for f in files:
        table = pq.read_table(ingestor.lake.root.path(f.path))
        times = table.column(EVENT_MS).to_pylist()
        assert times == sorted(times) and all(f.hour_ms <= t < f.hour_ms + HOUR for t in times)
    stored = lake.read_all("views")
    assert stored.column("view_id").to_pylist() == [f"v{i}" for i in range(200)]
    window = lake.read_all("views", T0 + HOUR, T0 + 2 * HOUR)
    expected = [
        r["view_id"]
        for r in sorted(_views(200), key=lambda r: r["ts"])
        if T0 + HOUR <= r["ts"] < T0 + 2 * HOUR
    ]
    assert window.column("view_id").to_pylist() == expected


def test_corrupted_lines_go_to_dead_letters_and_a_second_ingest_adds_nothing(
    tmp_path: Path, ingestor: Ingestor
) -> None:
    good = _views(900)
    bad: list[str | dict[str, object]] = [
        '{"view_id": "t1", "user_id": "u", "price": 1.0, "ts": 17',  # truncated
        '{"view_id": "t2", "user_id": "u", "price": "lots", "ts": 1700000000000}',  # wrong type
        '{"view_id": "t3", "price": 1.0, "ts": 1700000000000}',  # missing field
        '{"view_id": "t4", "user_id": "u", "price": 1.0, "ts": "yesterday"}',  # bad time
        '{"view_id": "t5", "user_id": "u", "price": 1.0, "ts": -5}',  # impossible time
        orjson.dumps(
            {"view_id": "t6" + "x" * 1_000_000, "user_id": "u", "price": 1.0, "ts": T0}
        ).decode(),  # too long
        '["not", "an", "object"]',
        '{"view_id": "t8", "user_id": {"nested": 1}, "price": 1.0, "ts": 1700000000000}',
        "\x00\x01garbage",
        '{"view_id": "t10", "user_id": "u", "price": true, "ts": 1700000000000}',
    ]
    lines: list[str | dict[str, object]] = [*good]
    for i, line in enumerate(bad * 10):
        lines.insert(7 + i * 9, line)
    path = write_jsonl(tmp_path / "views.jsonl", lines)
    first = ingestor.ingest_files([str(path)]).streams["views"]
    dead = DeadLetters(ingestor.lake.root).read("views")
    assert (first.accepted, first.rejected) == (900, 100)
    assert dead.num_rows == 100
    assert sorted(ingestor.lake.read_all("views").column("view_id").to_pylist()) == sorted(
        r["view_id"] for r in good
    )
    reasons = " | ".join(dead.column("reason").to_pylist())
    for expected in ("invalid JSON", "wrong type for 'price'", "missing required field 'user_id'",
                     "wrong type for 'ts': got 'yesterday'", "impossible time", "too long",
                     "not a JSON object", "wrong type for 'user_id': got a JSON object",
                     "wrong type for 'price': got 'true'"):  # fmt: skip
        assert expected in reasons, expected
    raws = dead.column("raw").to_pylist()
    assert bad[0] in raws and any(len(raw) > 1_000_000 for raw in raws)
    second = (
        Ingestor(small_pipeline(), ingestor.lake.root, clock=NOW).ingest_files([str(path)]).streams["views"]
    )
    assert (second.accepted, second.rejected, second.skipped_inputs) == (0, 0, 1)
    assert (
        ingestor.lake.count("views") == 900 and DeadLetters(ingestor.lake.root).read("views").num_rows == 100
    )


def test_event_ids_are_stored_once_across_files(tmp_path: Path, ingestor: Ingestor) -> None:
    first = write_jsonl(tmp_path / "a" / "views.jsonl", _views(100))
    overlapping = write_jsonl(tmp_path / "b" / "views.jsonl", _views(100, start=50) + _views(10, start=60))
    ingestor.ingest_files([str(first)])
    counts = (
        Ingestor(small_pipeline(), ingestor.lake.root, clock=NOW)
        .ingest_files([str(overlapping)])
        .streams["views"]
    )
    assert (counts.accepted, counts.duplicates) == (50, 60)
    ids = ingestor.lake.read_all("views").column("view_id").to_pylist()
    assert len(ids) == len(set(ids)) == 150


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl.gz"])
def test_other_formats(tmp_path: Path, ingestor: Ingestor, fmt: str) -> None:
    records = _views(50)
    path = tmp_path / f"views.{fmt}"
    table = pa.Table.from_pylist(records)
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "jsonl.gz":
        import gzip

        path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(r) for r in records)))
    else:
        sep = "," if fmt == "csv" else "\t"
        lines = [sep.join(records[0])] + [sep.join(str(v) for v in r.values()) for r in records]
        lines.insert(5, sep.join(["only", "three", "cells"]))
        path.write_text("\n".join(lines) + "\n")
    counts = ingestor.ingest_files([str(path)]).streams["views"]
    assert counts.accepted == 50
    assert counts.rejected == (1 if fmt in ("csv", "tsv") else 0)
    assert ingestor.lake.read_all("views").column("price").to_pylist() == [r["price"] for r in records]


def test_headerless_csv_uses_the_declared_order(tmp_path: Path, ingestor: Ingestor) -> None:
    path = tmp_path / "views.csv"
    path.write_text("".join(f"v{i},u{i},1.5,{T0 + i}\n" for i in range(5)))
    assert ingestor.ingest_files([str(path)]).streams["views"].accepted == 5


def test_a_crashed_ingest_is_redone_without_copies(tmp_path: Path, ingestor: Ingestor) -> None:
    path = write_jsonl(tmp_path / "views.jsonl", _views(300))
    ingestor.ingest_files([str(path)])
    root = ingestor.lake.root
    for entry in root.list_files("lake/_manifest"):
        root.delete(entry)  # as if the process died before recording the input
    for f in ingestor.lake.files("views")[::2]:
        root.delete(f.path)  # ...and before writing some partitions
    counts = Ingestor(small_pipeline(), root, clock=NOW).ingest_files([str(path)]).streams["views"]
    assert counts.accepted == 300 and counts.duplicates == 0
    assert ingestor.lake.count("views") == 300


def test_a_batch_tag_that_begins_another_leaves_that_batch_alone(ingestor: Ingestor) -> None:
    """Redoing batch ``b1`` removes what an interrupted write of ``b1`` left, never ``b10``'s files."""
    ingestor.ingest_table(pa.Table.from_pylist(_views(40)), "views", tag="b10")
    ingestor.ingest_table(pa.Table.from_pylist(_views(40, start=40)), "views", tag="b1")
    assert ingestor.lake.count("views") == 80


def test_stream_from_names_and_errors(tmp_path: Path, ingestor: Ingestor) -> None:
    folder = tmp_path / "clicks"
    write_jsonl(folder / "part-0.jsonl", [{"view_id": "v1", "user_id": "u", "when": "2023-11-14T22:00:00Z"}])
    assert ingestor.ingest_files([str(folder)]).streams["clicks"].accepted == 1
    stray = write_jsonl(tmp_path / "other.jsonl", [{"a": 1}])
    with pytest.raises(InputError, match="cannot tell which stream"):
        ingestor.ingest_files([str(stray)])
    with pytest.raises(InputError, match="no such file"):
        ingestor.ingest_files([str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="unknown stream 'nope'"):
        ingestor.ingest_files([str(stray)], stream="nope")


def test_where_keeps_matching_rows_and_counts_the_rest(tmp_path: Path) -> None:
    from clickwise.testing import SMALL_PIPELINE

    text = SMALL_PIPELINE.replace(
        "    event_id: view_id", "    event_id: view_id\n    where: {field: price, op: gt, value: 0.2}"
    )
    ingestor = Ingestor(small_pipeline(text), open_root(tmp_path / "root"), clock=NOW)
    counts = ingestor.ingest_files([str(write_jsonl(tmp_path / "views.jsonl", _views(100)))]).streams["views"]
    expected = sum(1 for r in _views(100) if float(r["price"]) > 0.2)  # type: ignore[arg-type]
    assert (counts.accepted, counts.filtered, counts.rejected) == (expected, 100 - expected, 0)


def test_lake_layout_helpers() -> None:
    from clickwise.events.lake import partition_dir, partition_hour_ms

    assert partition_dir("views", T0) == "lake/views/date=2023-11-14/hour=22"
    assert partition_hour_ms("lake/views/date=2023-11-14/hour=22/part-x.parquet") == T0
    assert partition_hour_ms("lake/views/other.parquet") is None
    assert isinstance(Lake, type)


RTB_PIPELINE = """
version: 1
name: rtb
streams:
  impressions:
    fields:
      bid_id: string
      ts: string
      user_id: string
      price: int
    time: {field: ts, format: "%Y%m%d%H%M%S%f", timezone: Asia/Shanghai}
    event_id: bid_id
    csv: {header: false}
"""
# an RTB log's impressions: headerless TSV, local time (UTC+8) with milliseconds after the seconds
RTB_TSV = (
    "b1\t20170613000004123\tu1\t300\n"
    "b2\t20170613000004124\tu2\t300\n"
    "b3\t20170613152201007\tu1\t280\n"
    "b4\t20170613000004\tu3\t10\n"  # as Python reads it: 00:00:00.4 (one digit of seconds, one of fraction)
)
RTB_EVENT_MS = {
    "b1": 1_497_283_204_123,  # 2017-06-12T16:00:04.123Z
    "b2": 1_497_283_204_124,
    "b3": 1_497_338_521_007,  # 2017-06-13T07:22:01.007Z
    "b4": 1_497_283_200_400,
}


def test_a_headerless_tsv_with_local_milliseconds_keeps_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clickwise.cli import app
    from clickwise.spec import parse_pipeline

    path = tmp_path / "impressions.tsv"
    path.write_text(RTB_TSV)
    ingestor = Ingestor(parse_pipeline(RTB_PIPELINE, source="rtb"), open_root(tmp_path / "root"), clock=NOW)
    assert ingestor.ingest_files([str(path)]).streams["impressions"].accepted == 4
    stored = ingestor.lake.read_all("impressions", columns=["bid_id", EVENT_MS]).to_pylist()
    assert {row["bid_id"]: row[EVENT_MS] for row in stored} == RTB_EVENT_MS
    pipeline_file = tmp_path / "rtb.yaml"
    pipeline_file.write_text(RTB_PIPELINE)
    root = tmp_path / "cli-root"
    result = CliRunner().invoke(
        app, ["ingest", "-p", str(pipeline_file), "--root", str(root), str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["impressions"]["accepted"] == 4
    lake = Lake(open_root(root), ingestor.pipeline)
    stored = lake.read_all("impressions", columns=["bid_id", EVENT_MS]).to_pylist()
    assert {row["bid_id"]: row[EVENT_MS] for row in stored} == RTB_EVENT_MS
