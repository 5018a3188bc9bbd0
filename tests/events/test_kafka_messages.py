"""Kafka messages to records, without a broker: parsing, bad messages, positions and marks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from clickwise.events.kafka import SourceError, _newest_event_times, expand_env, message_chunk
from clickwise.events.lake import Lake
from clickwise.events.positions import Ledger, load_ledger, save_ledger
from clickwise.storage import open_root
from clickwise.testing import small_pipeline


@dataclass
class FakeMessage:
    """What KafkaSource reads of a confluent-kafka Message."""

    _value: bytes | None
    _partition: int = 0
    _offset: int = 0
    _key: bytes | None = None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return "views"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


def test_messages_parse_like_json_lines_and_bad_ones_keep_their_position_and_text() -> None:
    values = [
        b'{"view_id": "v1", "user_id": "u", "price": 1.5, "ts": 1700000000000}',
        b'{"view_id": "v2",\n "user_id": "u", "price": 2.0, "ts": 1700000001000}',  # two lines: re-encoded
        b"{broken",
        b"",
        b'{"view_id": "v3", "user_id": "u", "price": 3.0, "ts": 1700000002000}',
    ]
    messages = [FakeMessage(v, _partition=1, _offset=10 + i) for i, v in enumerate(values)]
    chunk, message_of = message_chunk(messages, small_pipeline(), "views")  # type: ignore[arg-type]
    assert message_of.tolist() == [0, 1, 2, 3, 4]
    assert chunk.table.column("view_id").to_pylist() == ["v1", "v2", "v3"]
    rejected = {reject.row: reject for reject in chunk.rejects}
    assert sorted(rejected) == [2, 3]
    assert [chunk.origin(row) for row in sorted(rejected)] == ["kafka:views/1@12", "kafka:views/1@13"]
    assert chunk.raw_text(chunk.source_rows([1])) == [values[1].decode()]  # the text as sent


def test_json_lines_messages_hold_several_records_each_named_by_its_line() -> None:
    values = [
        b'{"view_id": "v1", "user_id": "u", "price": 1.0, "ts": 1700000000000}\n'
        b"{broken\n"
        b"\n"  # (blank lines are skipped)
        b'{"view_id": "v2", "user_id": "u", "price": 2.0, "ts": 1700000001000}\n',
        b'{"view_id": "v3", "user_id": "u", "price": 3.0, "ts": 1700000002000}',
        b"",
        b'{"view_id": "v4", "user_id": "u", "price": 4.0, "ts": 1700000003000}\n{"view_id": 5',
    ]
    messages = [FakeMessage(v, _partition=2, _offset=40 + i) for i, v in enumerate(values)]
    chunk, message_of = message_chunk(messages, small_pipeline(), "views", payload="json_lines")  # type: ignore[arg-type]
    assert chunk.table.column("view_id").to_pylist() == ["v1", "v2", "v3", "v4"]
    assert message_of.tolist() == [0, 0, 0, 1, 2, 3, 3]
    rejected = sorted(chunk.rejects, key=lambda reject: reject.row)
    assert [chunk.origin(reject.row) for reject in rejected] == [
        "kafka:views/2@40#2",
        "kafka:views/2@42",
        "kafka:views/2@43#2",
    ]
    assert [reject.raw for reject in rejected] == ["{broken", '""', '{"view_id": 5']  # each line as sent
    assert chunk.raw_text([1]) == [values[0].split(b"\n")[3].decode()]  # row 1 (v2): its line


def test_json_lines_without_blank_lines_are_parsed_as_sent_and_still_name_bad_lines() -> None:
    good = b'{"view_id": "v1", "user_id": "u", "price": 1.0, "ts": 1700000000000}'
    values = [good + b"\n{broken\n", b"[1]\n" + good.replace(b"v1", b"v2")]  # (trailing newline)
    messages = [FakeMessage(v, _offset=7 + i) for i, v in enumerate(values)]
    chunk, message_of = message_chunk(messages, small_pipeline(), "views", payload="json_lines")  # type: ignore[arg-type]
    assert chunk.table.column("view_id").to_pylist() == ["v1", "v2"]
    assert message_of.tolist() == [0, 0, 1, 1]
    rejected = sorted(chunk.rejects, key=lambda reject: reject.row)
    assert [(chunk.origin(r.row), r.raw) for r in rejected] == [
        ("kafka:views/0@7#2", "{broken"),
        ("kafka:views/0@8#1", "[1]"),
    ]


def test_the_same_records_give_the_same_rows_one_per_message_or_as_lines() -> None:
    pipeline = small_pipeline()
    records = [
        f'{{"view_id": "v{i}", "user_id": "u{i % 3}", "price": {i}.5, "ts": {1700000000000 + i}}}'.encode()
        for i in range(10)
    ]
    single, _ = message_chunk([FakeMessage(r) for r in records], pipeline, "views")  # type: ignore[arg-type]
    batched = [FakeMessage(b"\n".join(records[i : i + 4])) for i in range(0, 10, 4)]
    lines, message_of = message_chunk(batched, pipeline, "views", payload="json_lines")  # type: ignore[arg-type]
    assert lines.table.equals(single.table)
    assert message_of.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


def test_a_key_cannot_be_the_event_id_of_several_records() -> None:
    from pydantic import ValidationError

    from clickwise.spec.streams import KafkaSourceDef

    with pytest.raises(ValidationError, match="one record per message"):
        KafkaSourceDef(kind="kafka", topic="t", key_as_event_id=True, payload="json_lines")


def test_the_key_fills_a_missing_event_id_when_asked() -> None:
    message = FakeMessage(b'{"user_id": "u", "price": 1.0, "ts": 1700000000000}', _key=b"from-key")
    chunk, _ = message_chunk([message], small_pipeline(), "views", key_as_event_id=True)  # type: ignore[list-item]
    assert chunk.table.column("view_id").to_pylist() == ["from-key"]


def test_newest_event_time_per_partition_skips_unreadable_times() -> None:
    pipeline = small_pipeline()
    values = [b'{"view_id": "a", "ts": 5}', b'{"view_id": "b", "ts": 9}', b'{"view_id": "c", "ts": 7}']
    chunk, _ = message_chunk([FakeMessage(v) for v in values], pipeline, "views")  # type: ignore[arg-type]
    partitions = np.array([0, 1, 0])
    assert _newest_event_times(chunk, partitions, ["views:0", "views:1"], pipeline.streams["views"]) == {
        "views:0": 7,
        "views:1": 9,
    }


def test_the_ledger_is_the_newest_manifest_entry_whatever_the_cache_says(tmp_path: object) -> None:
    from clickwise.events import Ingestor

    pipeline = small_pipeline()
    root = open_root(str(tmp_path))
    ingestor = Ingestor(pipeline, root)
    ledger = Ledger("kafka")
    for sequence, offset in enumerate((3, 8), start=1):
        record = f'{{"view_id": "v{sequence}", "user_id": "u", "price": 1.0, "ts": 1700000000000}}'.encode()
        chunk, _ = message_chunk([FakeMessage(record, _offset=offset - 1)], pipeline, "views")  # type: ignore[list-item]
        marks = {"views:0": 1700000000000 + sequence}
        ledger.store(
            ingestor, "views", chunk, {"views:0": offset}, source="kafka", maybe_leftovers=False, marks=marks
        )
        if sequence == 1:
            save_ledger(root, "views", ledger)  # the cache lags one batch behind
    loaded = load_ledger(Lake(root, pipeline), "views", "kafka")
    assert (loaded.sequence, loaded.positions, loaded.marks) == (
        2,
        {"views:0": 8},
        {"views:0": 1700000000002},
    )


def test_bootstrap_servers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_FOR_TEST", "127.0.0.1:9092")
    assert expand_env("${BROKER_FOR_TEST},127.0.0.1:9093") == "127.0.0.1:9092,127.0.0.1:9093"
    monkeypatch.delenv("BROKER_FOR_TEST")
    with pytest.raises(SourceError, match="BROKER_FOR_TEST"):
        expand_env("${BROKER_FOR_TEST}")
