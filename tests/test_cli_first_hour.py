"""The first hour of a new user: wrong roots, unknown keys, unreachable brokers, small commands.

Each failure is one line on stderr with a non-zero exit code, never a traceback or a silent zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

import clickwise
from clickwise import cli
from clickwise.cli import app

REPO = Path(__file__).resolve().parents[1]
ADCLICK = str(REPO / "examples" / "adclick" / "pipeline.yaml")
START = "2026-01-05T00:00:00Z"
runner = CliRunner()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding two hours of generated events of 60 users."""
    folder = tmp_path_factory.mktemp("ingested")
    data, root = folder / "in", folder / "root"
    generated = runner.invoke(
        app, ["generate", "--out", str(data), "--users", "60", "--hours", "2", "--seed", "5",
              "--start", START]
    )  # fmt: skip
    assert generated.exit_code == 0, generated.output
    inputs = [str(data / s) for s in ("impressions", "clicks", "predictions")]
    result = runner.invoke(app, ["ingest", *inputs, "-p", ADCLICK, "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return root


READING_COMMANDS = [
    ["lookup", "user", "u1"],
    ["snapshot", "user", "--out", "{tmp}/snap.parquet"],
    ["history", "user", "u1", "--from", START, "--to", "2026-01-05T02:00:00Z"],
    ["dataset", "--out", "{tmp}/training"],
    ["verify"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=lambda c: c[0])
def test_a_root_without_a_lake_is_an_error_and_is_not_created(tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "no-such-root"
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    result = runner.invoke(app, [*args, "-p", ADCLICK, "--root", str(typo)])
    assert result.exit_code == 2, result.output
    assert str(typo) in result.stderr and "holds no events" in result.stderr
    assert "Traceback" not in result.output
    assert not typo.exists()


def test_an_empty_existing_folder_is_no_root_either(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lookup", "user", "u1", "-p", ADCLICK, "--root", str(tmp_path)])
    assert result.exit_code == 2 and "holds no events" in result.stderr


def test_lookup_says_when_a_key_was_never_seen(ingested: Path) -> None:
    unknown = runner.invoke(app, ["lookup", "user", "nobody-at-all", "-p", ADCLICK, "--root", str(ingested),
                                  "--json"])  # fmt: skip
    assert unknown.exit_code == 0, unknown.output
    assert orjson.loads(unknown.stdout)["values"]["impressions_1h"] == 0  # the answer stays the zeros
    assert "'nobody-at-all' has no events in table 'user'" in unknown.stderr
    snapshot = runner.invoke(app, ["snapshot", "user", "--out", str(ingested.parent / "s.parquet"),
                                   "-p", ADCLICK, "--root", str(ingested), "--json"])  # fmt: skip
    assert snapshot.exit_code == 0, snapshot.output
    known = pq.read_table(ingested.parent / "s.parquet").column("user_id")[0].as_py()
    seen = runner.invoke(app, ["lookup", "user", known, "-p", ADCLICK, "--root", str(ingested), "--json"])
    assert seen.exit_code == 0 and "no events" not in seen.stderr


def _clickwise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command in its own process: librdkafka and botocore write to the real stderr."""
    return subprocess.run(
        [sys.executable, "-m", "clickwise.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_an_unreachable_kafka_is_one_line_without_library_logs() -> None:
    result = _clickwise("generate", "--to", "kafka://127.0.0.1:9", "--users", "10", "--hours", "0.1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert "cannot reach Kafka at '127.0.0.1:9'" in lines[0]


def test_kinesis_without_credentials_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLICKWISE_KINESIS"))}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = _clickwise("generate", "--to", "kinesis://x", "--users", "10", "--hours", "0.1", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert "cannot send to Kinesis" in lines[0] and "credentials" in lines[0]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"clickwise {clickwise.__version__}"


def test_validate_json_prints_errors_as_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(ADCLICK).read_text().replace("horizon: 15m", "horizon: soon"))
    result = runner.invoke(app, ["validate", "-p", str(bad), "--json"])
    assert result.exit_code == 2
    answer = orjson.loads(result.stdout)
    assert answer["valid"] is False and answer["file"] == str(bad)
    assert {"path": "label.horizon", "message": "'soon' is not a duration"} in [
        {"path": e["path"], "message": e["message"].split(" (")[0].split(";")[0]} for e in answer["errors"]
    ]
    ok = orjson.loads(runner.invoke(app, ["validate", "-p", ADCLICK, "--json"]).stdout)
    assert ok["valid"] is True


def test_keys_list_and_revoke(tmp_path: Path) -> None:
    from clickwise.serve.auth import KeyStore

    file = tmp_path / "keys.json"
    added = [orjson.loads(runner.invoke(app, ["keys", "add", "--file", str(file), "--name", name,
                                               "--scopes", scopes, "--json"]).stdout)
             for name, scopes in (("reader", "read"), ("writer", "read,write"))]  # fmt: skip
    store = KeyStore.load(file)
    listed = runner.invoke(app, ["keys", "list", "--file", str(file), "--json"])
    assert listed.exit_code == 0, listed.output
    keys = orjson.loads(listed.stdout)["keys"]
    assert [(k["name"], k["scopes"]) for k in keys] == [("reader", ["read"]), ("writer", ["read", "write"])]
    assert all(isinstance(k["created_ms"], int) for k in keys)
    text = runner.invoke(app, ["keys", "list", "--file", str(file)]).stdout + listed.stdout
    assert all(a["key"] not in text for a in added) and "sha256" not in text
    assert store.check(added[0]["key"]) is not None
    revoked = runner.invoke(app, ["keys", "revoke", "reader", "--file", str(file)])
    assert revoked.exit_code == 0, revoked.output
    left = runner.invoke(app, ["keys", "list", "--file", str(file), "--json"])
    assert [k["name"] for k in orjson.loads(left.stdout)["keys"]] == ["writer"]
    store._next_look = 0.0  # (a running service looks again within a second)
    assert store.check(added[0]["key"]) is None and store.check(added[1]["key"]) is not None
    again = runner.invoke(app, ["keys", "revoke", "reader", "--file", str(file)])
    assert again.exit_code == 2 and "no key named 'reader'" in again.stderr


def test_deadletters_shows_rejected_records_with_reasons(tmp_path: Path) -> None:
    data = tmp_path / "impressions.jsonl"
    good = {"impression_id": "i1", "user_id": "u1", "campaign_id": "c1", "domain": "a.com", "ip": "8.8.8.8",
            "user_agent": "Mozilla/5.0", "cost": 0.002, "ts": 1767571200000}  # fmt: skip
    data.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps({**good, "impression_id": "i2", "ts": "soon"}))
    root = str(tmp_path / "root")
    ingested = runner.invoke(app, ["ingest", str(data), "-p", ADCLICK, "--root", root, "--no-tables"])
    assert ingested.exit_code == 0, ingested.output
    assert f"rejected records: 1 in {Path(root).resolve()}/deadletters" in ingested.stdout
    result = runner.invoke(app, ["deadletters", "-p", ADCLICK, "--root", root, "--stream", "impressions",
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)["streams"]
    assert list(shown) == ["impressions"] and shown["impressions"]["total"] == 1
    record = shown["impressions"]["records"][0]
    assert record["field"] == "ts" and "soon" in record["raw"] and record["reason"]
    text = runner.invoke(app, ["deadletters", "-p", ADCLICK, "--root", root])
    assert text.exit_code == 0 and "impressions: 1 rejected" in text.stdout
    assert "clicks: 0 rejected" in text.stdout
    none = runner.invoke(app, ["deadletters", "-p", ADCLICK, "--root", root, "--limit", "0", "--json"])
    assert orjson.loads(none.stdout)["streams"]["impressions"] == {"total": 1, "records": []}


def test_client_error_is_importable_from_the_package() -> None:
    from clickwise import ClientError

    assert issubclass(ClientError, clickwise.ClickwiseError)


def test_lookup_and_history_show_times_in_a_chosen_zone(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "out", Console(width=1000))  # a wide table whatever the terminal
    base = ["-p", ADCLICK, "--root", str(ingested)]
    moment = "2026-01-05T01:30:00Z"
    shown = runner.invoke(app, ["lookup", "user", "u1", *base, "--as-of", moment, "--tz", "Asia/Shanghai"])
    assert shown.exit_code == 0, shown.output
    assert "2026-01-05T09:30:00.000+08:00" in shown.stdout
    utc = runner.invoke(app, ["lookup", "user", "u1", *base, "--as-of", moment])
    assert "2026-01-05T01:30:00.000Z" in utc.stdout
    series = runner.invoke(app, ["history", "user", "u1", *base, "--from", START, "--to", moment,
                                 "--every", "30m", "--tz", "+05:30"])  # fmt: skip
    assert series.exit_code == 0, series.output
    assert (
        "2026-01-05T05:30:00.000+05:30" in series.stdout and "2026-01-05T07:00:00.000+05:30" in series.stdout
    )
    wrong = runner.invoke(app, ["lookup", "user", "u1", *base, "--tz", "Mars/Olympus"])
    assert wrong.exit_code == 2 and "unknown time zone 'Mars/Olympus'" in wrong.stderr


def test_status_shows_times_in_a_chosen_zone(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "out", Console(width=1000))
    base = ["-p", ADCLICK, "--root", str(ingested)]
    shown = runner.invoke(app, ["status", *base, "--tz", "Asia/Shanghai"])
    assert shown.exit_code == 0, shown.output
    watermark = next(line for line in shown.stdout.splitlines() if line.startswith("tables: watermark"))
    assert "+08:00" in watermark
    utc = runner.invoke(app, ["status", *base, "--json"])
    assert orjson.loads(utc.stdout)["tables"]["exact_from_ms"] == dict.fromkeys(
        ["user", "impression_country", "country", "campaign", "global"]
    )
