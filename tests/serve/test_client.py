"""The Python client and the replay against the real service, run as `clickwise serve` in its own
process on a free loopback port and stopped with SIGTERM by process id: round trips, errors,
retries, a replay that sends everything, and a SIGTERM mid-replay that loses no accepted event."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest

from clickwise.dataset import backfill
from clickwise.events import Ingestor, Lake
from clickwise.examples import example_path
from clickwise.model import train
from clickwise.serve import Client, ClientError, ReplayReport, add_key, replay
from clickwise.spec import Pipeline, load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables

pytestmark = pytest.mark.integration

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
HOUR = 3_600_000
STREAMS = ("impressions", "clicks", "predictions")
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a prepared root and the service as a process ---------------------------------------------------


@dataclass
class Prepared:
    folder: Path
    pipeline_file: Path
    pipeline: Pipeline
    keys_file: Path
    keys: dict[str, str]


def prepare(folder: Path) -> Prepared:
    """A root with 4 hours of 400 users' traffic in its tables, a quick model, and keys."""
    text = example_path("adclick").read_text()
    quick = "params: {num_leaves: 15, learning_rate: 0.1, n_estimators: 30, num_threads: 1}"
    start = text.index("params:", text.index("model:"))
    pipeline_file = folder / "pipeline.yaml"
    pipeline_file.write_text(text[:start] + quick + text[text.index("\n", start) :])
    pipeline = load_pipeline(pipeline_file)
    generate(folder / "in", users=400, hours=4, seed=5, start_ms=START_MS)
    root = open_root(folder / "root")
    Ingestor(pipeline, root).ingest_files([str(folder / "in" / s) for s in STREAMS])
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    backfill(pipeline, root, str(folder / "training"), START_MS, START_MS + 4 * HOUR, tables=tables)
    train(pipeline, str(folder / "training"), str(folder / "models"))
    keys_file = folder / "keys.json"
    scopes = {"rw": ["read", "write"], "r": ["read"], "admin": ["admin"]}
    keys = {name: add_key(keys_file, wanted, name=name)[0] for name, wanted in scopes.items()}
    return Prepared(folder, pipeline_file, pipeline, keys_file, keys)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        """SIGTERM by process id; the exit code."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(prepared: Prepared, root: Path, *extra: str) -> Server:
    port = free_port()
    log = prepared.folder / f"serve-{port}.log"
    command = [sys.executable, "-m", "clickwise.cli", "serve", "-p", str(prepared.pipeline_file),
               "--root", str(root), "--port", str(port), "--api-keys", str(prepared.keys_file),
               *extra]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clickwise serve exited with {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"clickwise serve not ready in 60 s:\n{server.output()}")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare(tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module")
def server(prepared: Prepared) -> Iterator[Server]:
    running = start_server(prepared, prepared.folder / "root", "--models", str(prepared.folder / "models"))
    try:
        yield running
    finally:
        running.stop()


def _impression(number: int, user: str, ts: int) -> dict[str, Any]:
    return {"impression_id": f"cl-{user}-{number}", "user_id": user, "campaign_id": "c1",
            "domain": f"d{number}.com", "ip": "8.8.8.8", "user_agent": CHROME, "cost": 0.002,
            "ts": ts}  # fmt: skip


# --- the client ---------------------------------------------------------------------------------------


def test_round_trips(server: Server, prepared: Prepared) -> None:
    user = f"client-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    with Client(server.url, prepared.keys["rw"]) as client:
        assert client.health() == {"status": "ok"}
        sent = client.send_events("impressions", [_impression(i, user, now - 5000 + i) for i in range(4)])
        assert (sent["accepted"], sent["rejected"], sent["duplicates"]) == (4, 0, 0)
        assert client.lookup("user", user)["values"]["impressions_total"] == 4  # read your writes
        assert client.lookup("user", user, as_of=now - 5000)["values"]["impressions_total"] == 0
        again = client.send_events("impressions", _impression(0, user, now - 5000))
        assert (again["accepted"], again["duplicates"]) == (0, 1)
        many = client.lookup_many("user", [user, "nobody"], as_of=now)
        assert [row["values"]["impressions_total"] for row in many["rows"]] == [4, 0]
        assert client.lookup("global", None)["values"]["impressions_24h"] >= 4
        for odd in (f"{user} spaced?&", f"{user}/slashed"):  # a '/' goes through the batch route
            client.send_events("impressions", _impression(20, odd, now - 10))
            assert client.lookup("user", odd)["values"]["impressions_total"] == 1

        one = client.decide(_impression(9, user, now), explain=True)
        assert one["decision"] in ("serve", "skip", "block") and one["model_version"] == "v0001"
        assert one["features"]["user_impressions_total"] == 4
        answers = client.decide([_impression(10, user, now), _impression(11, "someone", now)])
        assert [a["id"] for a in answers] == [f"cl-{user}-10", "cl-someone-11"]
        assert client.models() == {"models": str(prepared.folder / "models"), "versions": ["v0001"],
                                   "active": "v0001"}  # fmt: skip
    with Client(server.url, prepared.keys["admin"]) as admin:
        assert admin.activate("v0001") == {"active": "v0001"}


def test_an_error_answer_carries_code_and_field(server: Server, prepared: Prepared) -> None:
    with Client(server.url, prepared.keys["rw"]) as client:
        with pytest.raises(ClientError) as unknown:
            client.lookup("nope", "x")
        error = unknown.value
        assert (error.status, error.code, error.field) == (404, "unknown_table", "table")
        with pytest.raises(ClientError) as bad_time:
            client.lookup("user", "x", as_of="soon")
        assert (bad_time.value.status, bad_time.value.field) == (400, "as_of")
        with pytest.raises(ClientError, match="opportunity 0"):
            client.decide({"user_id": "u", "ts": 10**15})
    with Client(server.url, prepared.keys["r"]) as reader, pytest.raises(ClientError) as refused:
        reader.send_events("impressions", _impression(1, "x", START_MS))
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
    with Client(server.url, "cw_not-a-key") as stranger, pytest.raises(ClientError) as unknown_key:
        stranger.models()
    assert unknown_key.value.code == "unauthorized"


def test_a_closed_port_is_retried_with_backoff_then_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, retries=3, backoff_s=0.1) as client, pytest.raises(ClientError) as failed:
        client.decide({"user_id": "u"})  # never sent: safe to retry even a decision
    elapsed = time.monotonic() - started
    assert failed.value.status is None and failed.value.code == "unreachable"
    assert "gave up after 4 attempts" in failed.value.message and url in failed.value.message
    assert 0.7 <= elapsed < 10  # 0.1 + 0.2 + 0.4 s of backoff


def test_after_a_timeout_only_repeatable_calls_are_retried() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Client(url, retries=2, timeout_s=0.2, backoff_s=0.01) as client:
            with pytest.raises(ClientError) as decision:
                client.decide({"user_id": "u"})
            assert decision.value.code == "timeout" and "after 1 attempt " in decision.value.message
            with pytest.raises(ClientError) as events:
                client.send_events("impressions", [{"impression_id": "a"}])
            assert "after 3 attempts" in events.value.message
            with pytest.raises(ClientError) as once:
                client.send_events("predictions", [{"user_id": "a"}], resend=False)
            assert "after 1 attempt " in once.value.message


def _hours_ago(hours: int) -> int:
    """A recent whole hour: recorded events must be within the user table's 90-day retention of
    the newest event the service has seen (the tests above send events of now)."""
    return (int(time.time() * 1000) // HOUR - hours) * HOUR


# --- replay ------------------------------------------------------------------------------------------


def _lake_ids(prepared: Prepared, root: Path) -> pl.DataFrame:
    table = Lake(open_root(root), prepared.pipeline).read_all(
        "impressions", columns=["impression_id", "user_id"]
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_replay_command_sends_everything_and_lookups_reflect_it(server: Server, prepared: Prepared) -> None:
    recorded = prepared.folder / "recorded"
    generate(recorded, users=600, hours=1, seed=21, start_ms=_hours_ago(3), fmt="jsonl")
    command = [sys.executable, "-m", "clickwise.cli", "replay", "-p", str(prepared.pipeline_file),
               "--url", server.url, "--rate", "3000", "--batch", "200", "--json",
               *(str(recorded / s) for s in STREAMS)]  # fmt: skip
    env = {**os.environ, "CLICKWISE_API_KEY": prepared.keys["rw"]}
    done = subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = orjson.loads(done.stdout)
    clicks = pl.read_ndjson(recorded / "clicks" / "part-00000.jsonl").get_column("click_id")
    repeated = clicks.len() - clicks.n_unique()  # the generator redelivers a few clicks
    assert report["total"] > 1000 and report["sent"] == report["total"]
    assert (report["accepted"], report["duplicates"]) == (report["total"] - repeated, repeated)
    assert (report["rejected"], report["unsent"], report["stopped"]) == (0, 0, None)
    assert report["order"] == "arrival" and report["latency_ms"]["p99"] > 0
    assert report["rate"] < 3000 * 1.2  # paced
    impressions = pl.read_ndjson(recorded / "impressions" / "part-00000.jsonl")
    user, count = impressions.group_by("user_id").len().sort("len", descending=True).row(0)
    with Client(server.url, prepared.keys["r"]) as client:
        assert client.lookup("user", user)["values"]["impressions_total"] == count


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stop_during_a_replay_loses_no_accepted_event(prepared: Prepared, tmp_path: Path, how: str) -> None:
    """SIGTERM checkpoints the tables on the way out; SIGKILL leaves the last seconds of events in
    the lake only (table state is checkpointed every few seconds): either way the restarted
    service counts every accepted event once."""
    recorded = tmp_path / "recorded"
    generate(recorded, users=4000, hours=1, seed=33, start_ms=_hours_ago(3))
    root = tmp_path / "root"
    server = start_server(prepared, root)
    answered: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    reports: list[ReplayReport] = []

    def run() -> None:
        inputs = [str(recorded / s) for s in STREAMS]
        report = replay(prepared.pipeline, server.url, inputs, rate=2000, batch=100,
                        api_key=prepared.keys["rw"], on_answer=lambda *a: answered.append(a))  # fmt: skip
        reports.append(report)

    sender = threading.Thread(target=run)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while sum(stream == "impressions" for stream, _, _ in answered) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        if how == "SIGTERM":
            assert server.stop() == 0, server.output()
        else:
            server.process.kill()  # by process id
            server.process.wait()
    finally:
        sender.join(timeout=60)
    report = reports[0]
    assert report.stopped is not None and "gave up after 4 attempts" in report.stopped
    assert 0 < report.accepted < report.total and report.unsent > 0
    accepted = {
        record["impression_id"]
        for stream, records, answer in answered
        if stream == "impressions"
        for index, record in enumerate(records)
        if index not in {error["index"] for error in answer["errors"]}
    }
    assert len(accepted) >= 150

    again = start_server(prepared, root)
    try:
        lake = _lake_ids(prepared, root)
        assert accepted <= set(lake.get_column("impression_id").to_list())
        counts = lake.group_by("user_id").len().sort(["len", "user_id"], descending=True).head(20)
        with Client(again.url, prepared.keys["r"]) as client:
            for user, count in counts.iter_rows():
                assert client.lookup("user", user)["values"]["impressions_total"] == count
    finally:
        assert again.stop() == 0


def test_sigterm_stops_the_service_with_its_decision_log(server: Server, prepared: Prepared) -> None:
    with Client(server.url, prepared.keys["r"]) as client:
        answer = client.decide(_impression(1, "last-words", int(time.time() * 1000)))
    assert server.stop() == 0, server.output()
    log = pl.read_parquet(prepared.folder / "root" / "decisions" / "**" / "*.parquet")
    assert answer["id"] in log.get_column("event_id").to_list()
