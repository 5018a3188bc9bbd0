"""The README's shell and Python blocks run against a small demo root, so the README cannot drift.

Every ``bash`` and ``python`` block is a test case. Those that need a running server or broker, the
real sample, or that are the quick start's own two commands are skipped by the list below, each with
its reason (``pytest -ra`` shows them); an entry that no longer matches a block fails, so the list
cannot go stale either.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)
DEMO = ["--users", "500", "--hours", "24", "--end", "2026-01-06T00:00:00Z"]
"""The demo the README's examples name (its user and times come from this run)."""

SKIPPED = {
    "scripts/demo": "the quick start itself (a fresh clone's install and the full demo)",
    "clickwise keys add": "starts the HTTP service",
    "now=$(date +%s%3N)": "needs the HTTP service running (curl)",
    "import clickwise\n\nwith clickwise.Client": "needs the HTTP service running",
    "export CLICKWISE_KAFKA": "needs a Kafka broker",
    "clickwise ingest -p examples/talkingdata": "reads the real sample from ../shared, not the demo",
}
"""First line(s) of a skipped block -> why it is not run here."""

CHECKS = {
    "from clickwise import load_pipeline, open_root": (
        'row = tables.get_one("user", "udb832a4201c5cc93", as_of_ms=1767614400000)\n'
        "assert row[\"impressions_24h\"] > 0, row  # the README's user and time lie in the demo's data\n"
    ),
}
"""First line of a Python block -> statements run after it (on its variables) to check its answers."""


def _blocks() -> list[tuple[int, str, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def _skip_reason(code: str) -> str | None:
    return next((reason for start, reason in SKIPPED.items() if code.startswith(start)), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a clone's root after ``clickwise demo``: ``examples/`` and ``clickwise-demo/``."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(REPO / "examples")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "clickwise"), "demo", *DEMO, "--json"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


def test_every_skip_names_a_block() -> None:
    starts = [code for _, _, code in _blocks()]
    for start in SKIPPED:
        assert any(code.startswith(start) for code in starts), f"no README block starts with {start!r}"


def test_some_blocks_run() -> None:
    runnable = [code for _, _, code in _blocks() if _skip_reason(code) is None]
    assert len(runnable) >= 3
    for start in CHECKS:
        assert any(code.startswith(start) for code in runnable), f"no runnable block starts with {start!r}"


@pytest.mark.parametrize(
    ("line", "language", "code"), _blocks(), ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_readme_block(workdir: Path, line: int, language: str, code: str) -> None:
    reason = _skip_reason(code)
    if reason is not None:
        pytest.skip(f"README.md:{line}: {reason}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    check = next((extra for start, extra in CHECKS.items() if code.startswith(start)), "")
    shell = ["bash", "-euo", "pipefail", "-c", code]
    command = shell if language == "bash" else [sys.executable, "-c", code + check]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"README.md:{line} failed:\n{code}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr
