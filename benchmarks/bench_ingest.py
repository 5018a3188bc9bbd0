"""Lake-stage ingest speed: read, validate, de-duplicate, enrich and write the lake.

Generates the adclick streams once (parquet and JSON lines), then ingests each format into a fresh
root through the adclick pipeline and prints events/s beside a reference measured in the same run:
a plain ``pyarrow`` read of the same files (the floor for "read"), as a ratio.

    python benchmarks/bench_ingest.py --users 100000 --hours 24

Targets (issue 2): parquet >= 500,000 events/s, JSON lines >= 200,000 events/s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.json as pajson
import pyarrow.parquet as pq

from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.time import MS_PER_DAY, SystemClock

STREAMS = ("impressions", "clicks", "predictions")


def _files(folder: Path, fmt: str) -> list[Path]:
    return sorted(p for s in STREAMS for p in (folder / s).iterdir() if p.is_file() and p.name.endswith(fmt))


def _plain_read_s(files: list[Path], fmt: str) -> float:
    started = time.perf_counter()
    for path in files:
        if fmt == "parquet":
            pq.read_table(path)
        else:
            pajson.read_json(path)
    return time.perf_counter() - started


def _bytes(files: list[Path]) -> int:
    return sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--formats", default="parquet,jsonl")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep data here (default: a temp dir).")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cw-bench-ingest-"))
    pipeline = load_pipeline(example_path("adclick"))
    end_ms = (SystemClock().now_ms() // MS_PER_DAY) * MS_PER_DAY
    start_ms = end_ms - int(args.hours * 3_600_000)
    print(f"clickwise ingest benchmark: {args.users:,} users x {args.hours:g} h, workdir {workdir}")
    try:
        for fmt in args.formats.split(","):
            data = workdir / f"input-{fmt}"
            if not data.exists():
                generate(data, users=args.users, hours=args.hours, seed=11, start_ms=start_ms, fmt=fmt)  # type: ignore[arg-type]
            files = _files(data, fmt)
            reference_s = _plain_read_s(files, fmt)
            root_dir = workdir / f"root-{fmt}"
            shutil.rmtree(root_dir, ignore_errors=True)
            ingestor = Ingestor(pipeline, open_root(root_dir))
            started = time.perf_counter()
            report = ingestor.ingest_files([str(data / s) for s in STREAMS])
            elapsed = time.perf_counter() - started
            events = sum(c.accepted + c.rejected + c.duplicates for c in report.streams.values())
            rate = events / elapsed
            print(
                f"{fmt:8s} {events:>11,} events  {_bytes(files) / 1e6:8.1f} MB in  "
                f"ingest {elapsed:6.2f} s = {rate:>10,.0f} events/s   "
                f"plain pyarrow read {reference_s:5.2f} s = {events / reference_s:>11,.0f} events/s   "
                f"ratio ingest/read time {elapsed / reference_s:5.1f}x"
            )
            for name, counts in report.streams.items():
                print(f"         {name:12s} {counts.as_dict()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
