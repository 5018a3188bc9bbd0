"""Kinesis to tables, exactly once, against a real Kinesis API (moto's server) on loopback; a shard
is split half-way (parents must be read before children)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from integration_sources import (
    STREAMS,
    assert_same_tables,
    consume_until_complete,
    lake_counts,
    restart_until_complete,
)

from clickwise.engine import describe_status
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.tables import Tables

pytestmark = pytest.mark.integration
START_MS_CLI = 1_767_571_200_000  # generate's default start, 2026-01-05T00:00:00Z


def _put(client: Any, name: str, lines: list[bytes], per_record: int = 1) -> None:
    if per_record > 1:  # (payload: json_lines)
        lines = [b"\n".join(lines[i : i + per_record]) for i in range(0, len(lines), per_record)]
    for first in range(0, len(lines), 500):
        records = [
            {"Data": line, "PartitionKey": str(hash(line) % 97)} for line in lines[first : first + 500]
        ]
        answer = client.put_records(StreamName=name, Records=records)
        assert answer.get("FailedRecordCount", 0) == 0


def _split_first_shard(client: Any, name: str) -> None:
    shard = client.list_shards(StreamName=name)["Shards"][0]
    low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    client.split_shard(
        StreamName=name, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )


def _setup(
    tmp_path: Path, generated: Path, endpoint: str, max_records: int, payload: str = "json"
) -> tuple[Path, Any, str]:
    prefix = f"cw{uuid.uuid4().hex[:8]}-"
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    for stream in STREAMS:
        client.create_stream(StreamName=prefix + stream, ShardCount=2)
    path = tmp_path / "pipeline.yaml"
    sources = "\n".join(
        f"  {s}:\n    source: {{kind: kinesis, stream_name: {prefix}{s}, endpoint: '{endpoint}', "
        f"max_records: {max_records}, payload: {payload}}}"
        for s in STREAMS
    )
    path.write_text(f"extends: {example_path('adclick')}\nstreams:\n{sources}\n")
    return path, client, prefix


def _send_all(client: Any, prefix: str, generated: Path, *, split_after: float, per_record: int = 1) -> None:
    for stream in STREAMS:
        lines = (generated / stream / "part-00000.jsonl").read_bytes().splitlines()
        cut = int(len(lines) * split_after)
        _put(client, prefix + stream, lines[:cut], per_record)
        if stream == "impressions":
            _split_first_shard(client, prefix + stream)
        _put(client, prefix + stream, lines[cut:], per_record)


@pytest.mark.parametrize("per_record", [1, 6])
def test_kinesis_to_tables_equals_files_across_a_shard_split(
    tmp_path: Path, generated: Path, reference: Tables, s3_bucket: str, s3_server: Any, per_record: int
) -> None:
    payload = "json_lines" if per_record > 1 else "json"
    path, client, prefix = _setup(tmp_path, generated, s3_server.endpoint, 2_000, payload)
    _send_all(client, prefix, generated, split_after=0.5, per_record=per_record)
    pipeline = load_pipeline(path)
    root = open_root(str(tmp_path / "root"))
    want = lake_counts(reference.root.url, reference.pipeline)
    consume_until_complete(pipeline, root, want, timeout_s=120)
    assert lake_counts(root.url, pipeline) == want
    assert_same_tables(root.url, pipeline, reference)
    sources = {s["stream"]: s for s in describe_status(pipeline, root)["sources"]}
    assert sources["impressions"]["positions"]["shardId-000000000000"] == "END"  # the split parent


def test_sigkill_while_reading_kinesis_loses_and_repeats_nothing(
    tmp_path: Path, generated: Path, reference: Tables, s3_bucket: str, s3_server: Any
) -> None:
    path, client, prefix = _setup(tmp_path, generated, s3_server.endpoint, 200)
    _send_all(client, prefix, generated, split_after=0.3)
    pipeline = load_pipeline(path)
    root_url = str(tmp_path / "root")
    command = [sys.executable, "-m", "clickwise.cli", "run", "-p", str(path), "--root", root_url,
               "--interval", "200ms", "--no-rows"]  # fmt: skip
    for delay in (2.5, 3.5):
        with open(tmp_path / "run.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    want = lake_counts(reference.root.url, reference.pipeline)
    restart_until_complete(command, root_url, pipeline, want, timeout_s=180)
    assert lake_counts(root_url, pipeline) == want
    assert_same_tables(root_url, pipeline, reference)


@pytest.mark.parametrize("per_message", [1, 4])
def test_generate_to_kinesis_sends_the_records_the_files_hold(
    tmp_path: Path, s3_bucket: str, s3_server: Any, monkeypatch: pytest.MonkeyPatch, per_message: int
) -> None:
    from typer.testing import CliRunner

    from clickwise.cli import app
    from clickwise.synth import generate

    monkeypatch.setenv("CLICKWISE_KINESIS_ENDPOINT", s3_server.endpoint)
    prefix = f"gen{uuid.uuid4().hex[:8]}-"
    plan = ["--users", "200", "--hours", "1", "--seed", "4", "--per-message", str(per_message)]
    result = CliRunner().invoke(app, ["generate", "--to", f"kinesis://{prefix}", *plan, "--json"])
    assert result.exit_code == 0, result.output
    files = generate(tmp_path / "files", users=200, hours=1, seed=4, start_ms=START_MS_CLI, fmt="jsonl")
    client = boto3.client("kinesis", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    batched = 0  # records holding more than one line
    for stream in STREAMS:
        data = []
        for shard in client.list_shards(StreamName=prefix + stream)["Shards"]:
            iterator = client.get_shard_iterator(
                StreamName=prefix + stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            records = client.get_records(ShardIterator=iterator)["Records"]
            assert all(r["Data"].count(b"\n") < per_message for r in records)
            batched += sum(b"\n" in r["Data"] for r in records)
            data += [orjson.loads(line) for r in records for line in r["Data"].split(b"\n")]
        lines = [orjson.loads(line) for line in files.paths[stream][0].read_bytes().splitlines()]
        key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
        assert sorted(data, key=key) == sorted(lines, key=key)
        assert lines or stream == "clicks"  # (a small run may have no click)
    assert (batched > 0) == (per_message > 1)


def test_the_service_consumes_kinesis(
    tmp_path: Path, generated: Path, s3_bucket: str, s3_server: Any
) -> None:
    from starlette.testclient import TestClient

    from clickwise.serve import Service, Settings, build_asgi

    path, client, prefix = _setup(tmp_path, generated, s3_server.endpoint, 500)
    service = Service(load_pipeline(path), open_root(str(tmp_path / "root")))
    service.start_sources()
    try:
        now = int(time.time() * 1000)
        line = orjson.dumps({"user_id": "u-kinesis", "score": 0.75, "ts": now - 1000})
        _put(client, prefix + "predictions", [line])
        web = TestClient(build_asgi(service, Settings(keys=None)))
        deadline = time.monotonic() + 20
        score = None
        while score is None and time.monotonic() < deadline:
            score = web.get("/v1/tables/user/u-kinesis").json()["values"]["segment_score_last"]
            time.sleep(0.05)
        assert score == 0.75
        metrics = web.get("/metrics").text
        assert 'clickwise_source_events_total{stream="predictions"} 1.0' in metrics
        assert 'clickwise_source_behind_ms{stream="predictions"}' in metrics
    finally:
        service.close()
