"""verify on the reference pipeline over days: skew and leakage at 0, and what the check costs.

    python benchmarks/bench_verify.py --users 100000 --hours 144 --workdir /tmp/bv   # issue 18's size
    python benchmarks/bench_verify.py --users 5000 --hours 144                       # a few minutes

Steps (each timed, in one run):
1. generate the adclick streams (late and re-delivered events included) and ingest them into a lake
   with their arrival times (skipped when ``--workdir`` has them);
2. the backfill of every impression on its own (the reference: the part of verify that any training
   set costs anyway);
3. ``clickwise.dataset.verify`` over the same range: the lake replayed through the streaming path in
   15-minute micro-batches of arrival time, compared row by row with the backfill, then the leakage
   probe at ``--cuts`` moments (tables rebuilt without, then with shuffled, events after each cut).

Prints rows compared, rows that differ (per feature), leaks, the replay's batches, and the time of
verify against the backfill's (a ratio measured in the same run). The acceptance of issue 18 is
0 differing rows and 0 leaks over 6 days (3x the 2-day retention of ``impression_country``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from clickwise.dataset import backfill, verify
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.time import MS_PER_HOUR, FixedClock, format_ms

STREAMS = ("impressions", "clicks", "predictions")
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="Generated users (default 100000).")
    parser.add_argument("--hours", type=int, default=144, help="Generated hours (default 144: 6 days).")
    parser.add_argument("--seed", type=int, default=13, help="Generator seed (default 13).")
    parser.add_argument("--cuts", type=int, default=2, help="Leakage probe cuts (default 2).")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep data here (default: a temp dir).")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cw-bench-verify-"))
    pipeline = load_pipeline(example_path("adclick"))
    end_ms = START_MS + args.hours * MS_PER_HOUR
    print(f"clickwise verify benchmark: {args.users:,} users x {args.hours} h, workdir {workdir}")
    try:
        data, root_dir = workdir / "input", workdir / "root"
        if not data.exists():
            started = time.perf_counter()
            summary = generate(data, users=args.users, hours=args.hours, seed=args.seed, start_ms=START_MS)
            print(f"generated in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            clock = FixedClock(summary.max_arrival_ms + MS_PER_HOUR)
            Ingestor(pipeline, open_root(root_dir), clock=clock).ingest_files(
                [str(data / s) for s in STREAMS]
            )
            print(f"lake ingest in {time.perf_counter() - started:.1f} s")
        root = open_root(root_dir)
        out = workdir / "backfill"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        made = backfill(pipeline, root, str(out), START_MS, end_ms)
        backfill_s = time.perf_counter() - started
        print(f"backfill (reference): {made.rows:,} rows in {backfill_s:.1f} s")
        started = time.perf_counter()
        report = verify(pipeline, root, START_MS, end_ms, cuts=args.cuts)
        verify_s = time.perf_counter() - started
        print(
            f"verify: {report.compared:,} rows compared, {report.differing_rows:,} differ, "
            f"{report.only_in_stream:,} only in the stream, "
            f"{report.only_in_backfill:,} only in the backfill (label window still open); "
            f"replay in {report.batches:,} batches by {report.replayed_by}; {verify_s:.1f} s"
        )
        for name, count in report.differing.items():
            if count:
                print(f"  {name}: {count:,} rows differ")
        for check in report.leakage:
            print(
                f"  leakage probe at {format_ms(check.cut_ms)}: {check.rows:,} exposures; differ when later "
                f"events are removed {check.differ_when_removed}, changed {check.differ_when_changed}"
            )
        print(f"ratio verify/backfill {verify_s / backfill_s:.1f}x; {'ok' if report.ok else 'FAILED'}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
