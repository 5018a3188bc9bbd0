"""Same seed and arguments -> byte-identical files; the files hold exactly the streamed batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickwise.synth import GenerateSummary, SynthConfig, generate, iter_event_batches
from clickwise.synth.events import chunk_rng
from clickwise.synth.writer import Format

START_MS = 1_700_000_000_000
USERS, HOURS = 400, 3.0


def _run(out: Path, seed: int, fmt: Format = "parquet", config: SynthConfig | None = None) -> GenerateSummary:
    return generate(out, users=USERS, hours=HOURS, seed=seed, start_ms=START_MS, fmt=fmt, config=config)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("part-*"))
    }


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_same_seed_gives_identical_files(tmp_path: Path, fmt: Format) -> None:
    first = _run(tmp_path / "a", 11, fmt)
    second = _run(tmp_path / "b", 11, fmt)
    assert first.counts == second.counts
    digests = _digests(tmp_path / "a")
    assert len(digests) == 4
    assert digests == _digests(tmp_path / "b")


def test_different_seed_gives_different_events(tmp_path: Path) -> None:
    _run(tmp_path / "a", 11)
    _run(tmp_path / "b", 12)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert all(a[name] != b[name] for name in a)
    ids_a = set(pq.read_table(tmp_path / "a" / "impressions").column("impression_id").to_pylist())
    ids_b = set(pq.read_table(tmp_path / "b" / "impressions").column("impression_id").to_pylist())
    assert not ids_a & ids_b


def test_files_hold_exactly_the_streamed_batches(tmp_path: Path) -> None:
    summary = _run(tmp_path, 5)
    streamed: dict[str, list[pa.Table]] = {}
    for name, table in iter_event_batches(users=USERS, hours=HOURS, seed=5, start_ms=START_MS):
        streamed.setdefault(name, []).append(table)
    for name, tables in streamed.items():
        written = pq.read_table(tmp_path / name)
        assert written.equals(pa.concat_tables(tables)), name
        assert written.num_rows == summary.counts[name]


def test_config_is_part_of_the_output(tmp_path: Path) -> None:
    base = _run(tmp_path / "a", 5)
    more_bots = _run(tmp_path / "b", 5, config=SynthConfig(bot_fraction=0.2))
    assert more_bots.impressions > base.impressions


def test_chunk_stream_is_the_documented_spawn_child() -> None:
    spawned = np.random.SeedSequence(9).spawn(2)[1].spawn(4)[3]
    expected = np.random.Generator(np.random.PCG64(spawned)).random(5)
    assert np.array_equal(chunk_rng(9, 3).random(5), expected)
