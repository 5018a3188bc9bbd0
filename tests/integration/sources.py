"""Helpers of the source tests (importable as ``integration_sources``): the same generated traffic,
ingested from files the ordinary way, is the reference every source must reproduce exactly."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

import pyarrow as pa

from clickwise.events import Lake
from clickwise.spec import Pipeline
from clickwise.storage import Root, open_root
from clickwise.tables import Tables

START_MS = 1_767_571_200_000  # 2026-01-05
USERS, HOURS, SEED = 1_500, 2.0, 11
STREAMS = ("impressions", "clicks", "predictions")


def assert_same_tables(root_url: str, pipeline: Pipeline, reference: Tables) -> None:
    tables = Tables.open(pipeline, open_root(root_url))
    moment = reference.now_ms()
    for name in pipeline.tables:
        if name == "impression_country":
            continue  # keyed by impression: as large as the lake, compared through the click tables
        got = _sorted(tables.snapshot(name, moment))
        want = _sorted(reference.snapshot(name, moment))
        assert got.num_rows == want.num_rows > 0, name
        assert got.equals(want), name


def _sorted(table: pa.Table) -> pa.Table:
    keys = [c for c in table.column_names if c.endswith("_id") or c == "country"]
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


def lake_counts(root_url: str, pipeline: Pipeline) -> dict[str, int]:
    lake = Lake(open_root(root_url), pipeline)
    return {s: lake.count(s) for s in STREAMS}


def consume_until_complete(pipeline: Pipeline, root: Root, want: dict[str, int], timeout_s: float) -> None:
    """Run the streaming loop's passes until the lake holds ``want`` (or the time is up)."""
    from clickwise.engine import run_loop

    deadline = time.monotonic() + timeout_s
    while lake_counts(root.url, pipeline) != want and time.monotonic() < deadline:
        list(run_loop(pipeline, root, once=True, rows=False))


def restart_until_complete(
    command: Sequence[str], root_url: str, pipeline: Pipeline, want: dict[str, int], timeout_s: float
) -> None:
    """Run ``command --once`` until the lake holds ``want``, at least once: a restart is what
    applies the lake to the tables (a killed run may not have checkpointed them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        subprocess.run([*command, "--once"], check=True, capture_output=True, timeout=timeout_s)
        if lake_counts(root_url, pipeline) == want or time.monotonic() >= deadline:
            return
