"""The demo's data lies before the clock's now, and it ends with commands that work on that data."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clickwise import progress as plain_progress
from clickwise.cli import app
from clickwise.demo import TAIL_MS, demo_end_ms, run_demo
from clickwise.time import FixedClock, SystemClock, parse_instant_ms

runner = CliRunner()


@pytest.mark.parametrize("now", ["2026-01-05T00:00:00Z", "2026-01-05T00:30:00Z", "2026-01-05T23:59:59Z"])
def test_the_default_end_leaves_room_for_every_click_and_arrival(now: str) -> None:
    now_ms = parse_instant_ms(now)
    end_ms = demo_end_ms(FixedClock(now_ms))
    assert end_ms % 3_600_000 == 0
    assert now_ms - 3_600_000 < end_ms + TAIL_MS <= now_ms
    assert TAIL_MS == 14 * 3_600_000  # clicks up to 12 h after an impression, arrivals up to 2 h late


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], int]:
    workdir = tmp_path_factory.mktemp("demo") / "clickwise-demo"
    result = run_demo(workdir, users=300, hours=6)
    return result, SystemClock().now_ms()


def test_no_event_or_arrival_lies_after_now(demo: tuple[dict[str, object], int]) -> None:
    result, now_ms = demo
    latest = result["latest_ms"]
    assert isinstance(latest, dict)
    assert latest["event"] <= now_ms and latest["arrival"] <= now_ms


def test_the_printed_next_commands_read_the_demo_data(demo: tuple[dict[str, object], int]) -> None:
    result, _ = demo
    commands = result["next"]
    assert isinstance(commands, list) and commands == [line.strip() for line in result["summary"][-5:]]
    lookup = shlex.split(commands[0])
    assert lookup[:2] == ["clickwise", "lookup"] and "--root" in lookup
    answer = runner.invoke(app, [*lookup[1:], "--json"])
    assert answer.exit_code == 0, answer.output
    assert '"impressions_24h": 0' not in answer.stdout and '"impressions_24h"' in answer.stdout
    history = runner.invoke(app, [*shlex.split(commands[1])[1:], "--json"])
    assert history.exit_code == 0, history.output
    status = runner.invoke(app, shlex.split(commands[2])[1:])
    assert status.exit_code == 0, status.output
    serve = shlex.split(commands[4])
    assert serve[:2] == ["clickwise", "serve"] and Path(serve[serve.index("--models") + 1]).is_dir()
    assert commands[3].startswith("clickwise keys add") and "--api-keys keys.json" in commands[4]


def test_progress_goes_to_a_pipe_as_plain_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain_progress, "QUIET_S", 0.0)  # a small demo with warm caches is quick
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--users", "200", "--hours", "4"])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("demo: ")]
    assert any("training the model" in line for line in progress), result.stderr
    assert all(line.endswith(" s)") for line in progress)
    assert "clickwise lookup" in result.stdout
