"""Kafka to tables, exactly once, against a real broker (Tansu) on loopback.

The same generated traffic is written to files and produced to topics (4 partitions each). The
files ingested the ordinary way are the reference: the lake and every table read from Kafka must
equal it, also when the consumer is killed with SIGKILL at random moments and restarted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from clickwise.dataset.stream import RowEmitter, read_rows
from clickwise.engine import describe_status, run_loop
from clickwise.events import DeadLetters, Lake
from clickwise.events.kafka import make_producer, send_generated
from clickwise.examples import example_path
from clickwise.spec import Pipeline, load_pipeline
from clickwise.storage import open_root
from clickwise.tables import Tables

pytest.importorskip("confluent_kafka")
from integration_sources import (
    HOURS,
    SEED,
    START_MS,
    STREAMS,
    USERS,
    assert_same_tables,
    consume_until_complete,
    lake_counts,
    restart_until_complete,
)

from clickwise.testing_kafka import TansuBroker  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as running:
        yield running


@pytest.fixture(scope="module")
def produced(broker: TansuBroker) -> dict[str, int]:
    return send_generated(broker.bootstrap, users=USERS, hours=HOURS, seed=SEED, start_ms=START_MS).counts


def _one_topic_pipeline(folder: Path, stream: str, topic: str, bootstrap: str, extra: str = "") -> Pipeline:
    """The adclick pipeline with one stream read from ``topic``."""
    path = folder / "pipeline.yaml"
    path.write_text(
        f"extends: {example_path('adclick')}\nstreams:\n  {stream}:\n"
        f"    source: {{kind: kafka, topic: {topic}, bootstrap: '{bootstrap}'{extra}}}\n"
    )
    return load_pipeline(path)


def _pipeline(folder: Path, bootstrap: str, max_messages: int) -> Path:
    """The example Kafka pipeline with small polls (many batches: many moments to crash in)."""
    path = folder / "pipeline.yaml"
    sources = "\n".join(f"  {s}:\n    source: {{max_messages: {max_messages}}}" for s in STREAMS)
    path.write_text(f"extends: {example_path('adclick-kafka')}\nstreams:\n{sources}\n")
    os.environ["CLICKWISE_KAFKA"] = bootstrap
    return path


def test_kafka_to_tables_equals_files(
    tmp_path: Path, broker: TansuBroker, produced: dict[str, int], reference: Tables
) -> None:
    pipeline = load_pipeline(_pipeline(tmp_path, broker.bootstrap, 2_000))
    root = open_root(str(tmp_path / "root"))
    passes = list(run_loop(pipeline, root, once=True, rows=False))
    assert sum(sum(p["consumed"].values()) for p in passes) > 0
    want = lake_counts(reference.root.url, reference.pipeline)
    consume_until_complete(pipeline, root, want, timeout_s=60)
    assert lake_counts(root.url, pipeline) == want
    assert sum(produced.values()) >= sum(want.values())  # the generator repeats a few clicks
    assert_same_tables(root.url, pipeline, reference)
    sources = {s["stream"]: s for s in describe_status(pipeline, root)["sources"]}
    for stream in STREAMS:  # offsets start at 0: the next offsets add up to the messages read
        assert sum(sources[stream]["positions"].values()) == produced[stream]
        assert sources[stream]["lag"] is not None


def test_json_lines_messages_give_the_same_tables_as_one_record_per_message(
    tmp_path: Path, reference: Tables
) -> None:
    with TansuBroker() as own:  # (its topics carry 7 records to a message)
        sent = send_generated(
            own.bootstrap, users=USERS, hours=HOURS, seed=SEED, start_ms=START_MS, per_message=7
        ).counts
        path = _pipeline(tmp_path, own.bootstrap, 300)
        lines = path.read_text().replace("{max_messages: 300}", "{max_messages: 300, payload: json_lines}")
        path.write_text(lines)
        pipeline = load_pipeline(path)
        root = open_root(str(tmp_path / "root"))
        want = lake_counts(reference.root.url, reference.pipeline)
        consume_until_complete(pipeline, root, want, timeout_s=60)
        sources = {s["stream"]: s for s in describe_status(pipeline, root)["sources"]}
    messages = sum(sum(sources[s]["positions"].values()) for s in STREAMS)  # (offsets start at 0)
    assert messages * 5 < sum(sent.values())  # several records to a message
    assert lake_counts(root.url, pipeline) == want
    assert sum(sent.values()) >= sum(want.values())
    assert_same_tables(root.url, pipeline, reference)
    assert all(DeadLetters(root).read(s).num_rows == 0 for s in STREAMS)


def test_bad_messages_go_to_dead_letters_with_their_position(tmp_path: Path, broker: TansuBroker) -> None:
    topic = f"predictions_bad_{random.randrange(10**9)}"
    producer = make_producer(broker.bootstrap)
    good = b'{"user_id": "u1", "score": 0.5, "ts": 1767571200000}'
    for value in (good, b"{not json", b'{"user_id": "u2", "score": 7.0, "ts": 1767571200000}', b"", good):
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0
    del producer
    pipeline = _one_topic_pipeline(tmp_path, "predictions", topic, broker.bootstrap)
    root = open_root(str(tmp_path / "root"))
    deadline = time.monotonic() + 30
    while Lake(root, pipeline).count("predictions") < 2 and time.monotonic() < deadline:
        list(run_loop(pipeline, root, once=True, rows=False))
    assert Lake(root, pipeline).count("predictions") == 2  # the same good record twice: no event id
    dead = DeadLetters(root).read("predictions").sort_by("row")
    assert dead.column("source").to_pylist() == [f"kafka:{topic}/0@{n}" for n in (1, 2, 3)]
    assert dead.column("raw").to_pylist()[0] == "{not json"
    assert "score" in (dead.column("field").to_pylist()[1] or dead.column("reason").to_pylist()[1])


def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, broker: TansuBroker, produced: dict[str, int], reference: Tables
) -> None:
    pipeline_file = _pipeline(tmp_path, broker.bootstrap, 100)  # small polls: uneven reading
    pipeline = load_pipeline(pipeline_file)
    root_url = str(tmp_path / "root")
    command = [sys.executable, "-m", "clickwise.cli", "run", "-p", str(pipeline_file), "--root", root_url,
               "--interval", "200ms"]  # fmt: skip
    rng = random.Random(5)
    kills = 0
    for _ in range(3):
        with open(tmp_path / "run.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        time.sleep(rng.uniform(2.5, 4.5))  # startup (~2 s), then somewhere in the consuming
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
    assert kills >= 2
    want = lake_counts(reference.root.url, reference.pipeline)
    restart_until_complete(command, root_url, pipeline, want, timeout_s=120)
    assert lake_counts(root_url, pipeline) == want
    assert_same_tables(root_url, pipeline, reference)
    # the training rows the killed runs emitted (corrections applied) are those of one pass over the
    # reference, where every label window the final watermark closed is emitted at once
    RowEmitter(reference.pipeline, reference.root).emit(reference)
    got, expected = read_rows(open_root(root_url)), read_rows(reference.root)
    assert got.height == expected.height > 0
    assert got.sort("event_id").equals(expected.sort("event_id"))


def test_the_service_consumes_kafka_and_answers_lookups_and_metrics(
    tmp_path: Path, broker: TansuBroker
) -> None:
    from starlette.testclient import TestClient

    from clickwise.serve import Service, Settings, build_asgi

    topic = f"impressions_live_{random.randrange(10**9)}"
    pipeline = _one_topic_pipeline(tmp_path, "impressions", topic, broker.bootstrap)
    service = Service(pipeline, open_root(str(tmp_path / "root")))
    service.start_sources()
    try:
        producer = make_producer(broker.bootstrap)
        now = int(time.time() * 1000)
        for i in range(3):
            record = {"impression_id": f"live-{i}", "user_id": "u-live", "campaign_id": "c1",
                      "domain": "d.com", "ip": "8.8.8.8", "user_agent": "Mozilla/5.0", "cost": 0.5,
                      "ts": now - 1000 + i}  # fmt: skip
            producer.produce(topic, value=orjson.dumps(record), partition=0)
        assert producer.flush(30) == 0
        del producer
        client = TestClient(build_asgi(service, Settings(keys=None)))
        deadline = time.monotonic() + 20
        seen = 0
        while time.monotonic() < deadline:
            seen = client.get("/v1/tables/user/u-live").json()["values"]["impressions_total"]
            if seen == 3:
                break
            time.sleep(0.05)
        assert seen == 3
        metrics = client.get("/metrics").text
        assert (
            f'clickwise_source_position{{partition="0",stream="impressions",topic="{topic}"}} 3.0' in metrics
        )
        assert 'clickwise_source_events_total{stream="impressions"} 3.0' in metrics
    finally:
        service.close()
    assert Lake(service.root, service.pipeline).count("impressions") == 3


def test_a_fresh_machine_with_only_an_s3_root_resumes_where_the_last_stopped(
    tmp_path: Path, broker: TansuBroker, s3_bucket: str
) -> None:
    topic = f"predictions_s3_{random.randrange(10**9)}"
    pipeline = _one_topic_pipeline(tmp_path, "predictions", topic, broker.bootstrap, ", max_messages: 7")
    producer = make_producer(broker.bootstrap)

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            record = {"user_id": f"u{i % 5}", "score": i / 100, "ts": START_MS + i * 1000}
            producer.produce(topic, value=orjson.dumps(record), partition=i % 2)
        assert producer.flush(30) == 0

    def drain(expected: int) -> Tables:
        root = open_root(f"s3://{s3_bucket}/state")  # a new process would see only this
        deadline = time.monotonic() + 30
        while Lake(root, pipeline).count("predictions") < expected and time.monotonic() < deadline:
            list(run_loop(pipeline, root, once=True, rows=False))
        assert Lake(root, pipeline).count("predictions") == expected
        return Tables.open(pipeline, open_root(f"s3://{s3_bucket}/state"))

    send(0, 30)
    first = drain(30)
    assert first.get_one("user", "u1", START_MS + 10**9)["segment_score_last"] == 0.26
    send(30, 20)
    second = drain(50)  # resumed from the positions stored on S3: nothing read twice
    assert second.get_one("user", "u1", START_MS + 10**9)["segment_score_last"] == 0.46


def test_a_source_restarted_after_a_failure_reads_again_what_it_had_not_stored(
    tmp_path: Path, broker: TansuBroker
) -> None:
    from clickwise.events.kafka import KafkaSource, kafka_groups

    topic = f"predictions_restart_{random.randrange(10**9)}"
    producer = make_producer(broker.bootstrap)
    for i in range(10):
        record = {"user_id": f"u{i}", "score": 0.1, "ts": START_MS + i}
        producer.produce(topic, value=orjson.dumps(record), partition=0)
    assert producer.flush(30) == 0
    del producer
    pipeline = _one_topic_pipeline(tmp_path, "predictions", topic, broker.bootstrap)
    root = open_root(str(tmp_path / "root"))
    (streams,) = kafka_groups(pipeline).values()
    source = KafkaSource(pipeline, root, streams)
    source.start()
    deadline = time.monotonic() + 20
    fetched: list[object] = []
    while not fetched and time.monotonic() < deadline:
        fetched = source.fetch(timeout_s=0.5)  # fetched, then "the store failed": never stored
    assert fetched
    source.close()
    source.start()  # what the service does after a failure
    stored = 0
    while stored < 10 and time.monotonic() < deadline:
        stored += source.poll(timeout_s=0.5).messages
    source.close()
    assert Lake(root, pipeline).count("predictions") == 10
