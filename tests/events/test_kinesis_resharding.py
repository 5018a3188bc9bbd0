"""Kinesis resharding without a server: a split and a merge on an in-memory Kinesis that behaves as
the service documents it (a closed shard's iterator ends after its last record; children list
their parents). moto's server keeps writing to a split parent, so the children's reads are only
exercised here: a child is read only after every parent is read to its end, every record is
stored once, and a restart from the stored positions neither loses nor repeats a record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from clickwise.events import kinesis
from clickwise.events.kinesis import KinesisSource, kinesis_streams
from clickwise.events.lake import Lake
from clickwise.spec import Pipeline
from clickwise.storage import Root, open_root
from clickwise.testing import SMALL_PIPELINE, small_pipeline

T0 = 1_700_000_000_000


class FakeKinesis:
    """One Kinesis stream in memory, with the calls KinesisSource makes."""

    def __init__(self) -> None:
        self.shards: dict[str, dict[str, Any]] = {}
        self.sequence = 10**20  # sequence numbers grow across the stream, as in Kinesis
        self.reads: list[str] = []  # the shard of each get_records call, in order

    def add_shard(self, shard_id: str, parents: tuple[str, ...] = ()) -> None:
        self.shards[shard_id] = {"records": [], "parents": parents, "start": self.sequence, "end": None}

    def put(self, shard_id: str, record: dict[str, Any]) -> None:
        shard = self.shards[shard_id]
        assert shard["end"] is None, "a closed shard takes no records"
        self.sequence += 7
        shard["records"].append({"SequenceNumber": str(self.sequence), "Data": orjson.dumps(record)})

    def close(self, shard_id: str) -> None:
        self.sequence += 1
        self.shards[shard_id]["end"] = self.sequence

    def list_shards(self, **query: Any) -> dict[str, Any]:
        listed = []
        for shard_id, shard in self.shards.items():
            numbers = {"StartingSequenceNumber": str(shard["start"])}
            if shard["end"] is not None:
                numbers["EndingSequenceNumber"] = str(shard["end"])
            entry: dict[str, Any] = {"ShardId": shard_id, "SequenceNumberRange": numbers}
            if shard["parents"]:
                entry["ParentShardId"] = shard["parents"][0]
            if len(shard["parents"]) > 1:
                entry["AdjacentParentShardId"] = shard["parents"][1]
            listed.append(entry)
        return {"Shards": listed}

    def get_shard_iterator(self, **query: Any) -> dict[str, Any]:
        shard_id, kind = query["ShardId"], query["ShardIteratorType"]
        records = self.shards[shard_id]["records"]
        if kind == "TRIM_HORIZON":
            index = 0
        elif kind == "LATEST":
            index = len(records)
        else:
            assert kind == "AFTER_SEQUENCE_NUMBER"
            after = int(query["StartingSequenceNumber"])
            index = sum(1 for record in records if int(record["SequenceNumber"]) <= after)
        return {"ShardIterator": f"{shard_id}|{index}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        shard_id, index = ShardIterator.split("|")
        self.reads.append(shard_id)
        shard = self.shards[shard_id]
        records = shard["records"][int(index) : int(index) + Limit]
        position = int(index) + len(records)
        answer: dict[str, Any] = {"Records": records, "MillisBehindLatest": 0}
        if shard["end"] is None or position < len(shard["records"]):
            answer["NextShardIterator"] = f"{shard_id}|{position}"
        return answer  # a closed shard read to its end has no next iterator


def _pipeline() -> Pipeline:
    text = SMALL_PIPELINE.replace(
        "    event_id: view_id\n",
        "    event_id: view_id\n    source: {kind: kinesis, stream_name: views, endpoint: 'http://127.0.0.1:9'}\n",
    )
    assert text != SMALL_PIPELINE
    return small_pipeline(text)


def _view(number: int) -> dict[str, Any]:
    return {"view_id": f"v{number}", "user_id": f"u{number % 3}", "price": 1.0, "ts": T0 + number * 1000}


def _resharded_stream() -> tuple[FakeKinesis, list[str]]:
    """Shard 0 split into 1 and 2, which merge into 3; shard 9 stays open throughout."""
    fake = FakeKinesis()
    fake.add_shard("shardId-0")
    fake.add_shard("shardId-9")
    number = 0
    for shard_id, count in (("shardId-0", 7), ("shardId-9", 4)):
        for _ in range(count):
            fake.put(shard_id, _view(number))
            number += 1
    fake.close("shardId-0")
    fake.add_shard("shardId-1", ("shardId-0",))
    fake.add_shard("shardId-2", ("shardId-0",))
    for shard_id, count in (("shardId-1", 5), ("shardId-2", 6), ("shardId-9", 2)):
        for _ in range(count):
            fake.put(shard_id, _view(number))
            number += 1
    fake.close("shardId-1")
    fake.close("shardId-2")
    fake.add_shard("shardId-3", ("shardId-1", "shardId-2"))
    for _ in range(5):
        fake.put("shardId-3", _view(number))
        number += 1
    return fake, [f"v{n}" for n in range(number)]


def _read_until(source: KinesisSource, root: Root, pipeline: Pipeline, want: int, passes: int) -> None:
    for _ in range(passes):
        source.store(source.fetch(max_records=3))
        if _stored(root, pipeline) and len(_stored(root, pipeline)) >= want:
            return


def _stored(root: Root, pipeline: Pipeline) -> list[str]:
    lake = Lake(root, pipeline)
    if not lake.files("views"):
        return []
    return list(lake.read_all("views", columns=["view_id"]).column("view_id").to_pylist())


def _assert_parents_first(fake: FakeKinesis) -> None:
    for shard_id, shard in fake.shards.items():
        if shard_id not in fake.reads:
            continue
        first_read = fake.reads.index(shard_id)
        for parent in shard["parents"]:
            last_parent_read = len(fake.reads) - 1 - fake.reads[::-1].index(parent)
            assert last_parent_read < first_read, f"{shard_id} was read before its parent {parent} ended"


@pytest.fixture(autouse=True)
def _list_shards_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinesis, "SHARDS_EVERY_S", 0.0)


def test_children_are_read_after_their_parents_and_every_record_once(tmp_path: Path) -> None:
    pipeline = _pipeline()
    root = open_root(str(tmp_path / "root"))
    fake, views = _resharded_stream()
    source = KinesisSource(pipeline, root, kinesis_streams(pipeline), client=fake)
    source.start()
    _read_until(source, root, pipeline, len(views), passes=40)
    stored = _stored(root, pipeline)
    assert sorted(stored) == sorted(views)  # each record once
    _assert_parents_first(fake)
    assert {"shardId-1", "shardId-2", "shardId-3"} <= set(fake.reads)  # the children were read
    positions = source.ledgers["views"].positions
    assert positions["shardId-0"] == positions["shardId-1"] == positions["shardId-2"] == "END"
    assert positions["shardId-3"] == fake.shards["shardId-3"]["records"][-1]["SequenceNumber"]


def test_a_restart_resumes_from_the_stored_positions_across_a_split_made_while_reading(
    tmp_path: Path,
) -> None:
    pipeline = _pipeline()
    root = open_root(str(tmp_path / "root"))
    fake = FakeKinesis()
    fake.add_shard("shardId-0")
    for number in range(8):
        fake.put("shardId-0", _view(number))
    first = KinesisSource(pipeline, root, kinesis_streams(pipeline), client=fake)
    first.start()
    first.store(first.fetch(max_records=3))  # v0-v2 stored; the next read is fetched, never stored
    first.fetch(max_records=3)
    fake.close("shardId-0")  # a split while the consumer is away
    fake.add_shard("shardId-1", ("shardId-0",))
    fake.add_shard("shardId-2", ("shardId-0",))
    for number in range(8, 14):
        fake.put("shardId-1" if number % 2 else "shardId-2", _view(number))
    second = KinesisSource(pipeline, root, kinesis_streams(pipeline), client=fake)  # a restart
    second.start()
    _read_until(second, root, pipeline, 14, passes=30)
    assert sorted(_stored(root, pipeline)) == sorted(f"v{n}" for n in range(14))
    _assert_parents_first(fake)
