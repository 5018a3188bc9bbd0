"""The real TalkingData sample ingests through its pipeline file alone (no code for it)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from clickwise.events import EVENT_MS, Ingestor
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.testing import FixedClock

PIPELINE = Path(__file__).resolve().parents[2] / "examples" / "talkingdata" / "pipeline.yaml"


def test_both_streams_ingest_from_the_one_file(tmp_path: Path, talkingdata_csv: Path) -> None:
    pipeline = load_pipeline(PIPELINE)
    ingestor = Ingestor(pipeline, open_root(tmp_path / "root"), clock=FixedClock(1_800_000_000_000))
    clicks = ingestor.ingest_files([str(talkingdata_csv)], stream="clicks").streams["clicks"]
    downloads = ingestor.ingest_files([str(talkingdata_csv)], stream="downloads").streams["downloads"]
    [(rows, attributed, first_ms)] = duckdb.sql(
        f"select count(*), sum(is_attributed), min(epoch_ms(click_time::timestamp)) "
        f"from read_csv('{talkingdata_csv}', header=true, all_varchar=false)"
    ).fetchall()
    assert (clicks.accepted, clicks.rejected) == (rows, 0)
    assert (downloads.accepted, downloads.filtered, downloads.rejected) == (attributed, rows - attributed, 0)
    stored = ingestor.lake.read_all("clicks", columns=["ip", EVENT_MS])
    assert stored.num_rows == rows and stored.column(EVENT_MS)[0].as_py() == first_ms
    assert stored.column("ip").null_count == 0
