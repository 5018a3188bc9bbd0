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
from typer.testing import CliRunner

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
