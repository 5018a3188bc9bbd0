"""Lookup tables: update rate, read latency, memory and disk, with same-run references.

    python benchmarks/bench_tables.py --users 1000000 --hours 8      # about 25M events
    python benchmarks/bench_tables.py --users 100000 --hours 24 --workdir /tmp/bt

Steps (each timed):
1. generate the adclick streams and ingest them into the lake (not part of the table figure);
2. apply every lake event to the adclick tables (``Tables.catch_up``, durable: checkpoints on
   disk) -> events/s, beside the plain floor: numpy sorting the same events by (user, time);
3. in a fresh process: open the state (startup time), ``get_one`` now for random users (p50/p99),
   as-of reads at random times in the last 7 days (p99) and, when the data reaches further back,
   before them, resident memory, state bytes against lake bytes.

Targets (issue 3): >= 1,000,000 events/s; get_one p99 <= 50 us; as-of p99 <= 1 ms (last 7 days),
<= 100 ms (older); RSS <= 2 GB at 1M users; state on disk <= lake bytes.
(Runs keep every event of a table's retention, so older times are read like recent ones; try
``--users 20000 --hours 240`` for data reaching 10 days back.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clickwise.events import Ingestor, Lake
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.tables.engine import CHECKPOINT_INTERVAL_S
from clickwise.tables.hashing import hash_texts
from clickwise.time import MS_PER_DAY, SystemClock

STREAMS = ("impressions", "clicks", "predictions")

READER = r"""
import json, sys, time
import numpy as np
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.tables import Tables
root, users_file = sys.argv[1], sys.argv[2]
low, high, samples, first = (int(x) for x in sys.argv[3:7])
pipeline = load_pipeline(example_path("adclick"))
started = time.perf_counter()
tables = Tables.open(pipeline, open_root(root))
startup = time.perf_counter() - started
users = open(users_file).read().split()
rng = np.random.default_rng(5)
picks = [users[i] for i in rng.integers(0, len(users), samples)]
for user in picks[:200]:
    tables.get_one("user", user)
now = []
for user in picks:
    t = time.perf_counter_ns(); tables.get_one("user", user); now.append(time.perf_counter_ns() - t)
moments = rng.integers(low, high, samples)
past = []
for user, moment in zip(picks, moments.tolist()):
    t = time.perf_counter_ns(); tables.get_one("user", user, moment); past.append(time.perf_counter_ns() - t)
older = []  # (times before the last 7 days, when the data reaches that far back)
if first < low:
    for user, moment in zip(picks, rng.integers(first, low, samples).tolist()):
        t = time.perf_counter_ns(); tables.get_one("user", user, moment)
        older.append(time.perf_counter_ns() - t)
country = []
for moment in moments[:2000].tolist():
    t = time.perf_counter_ns()
    tables.get_one("country", "US", moment)
    country.append(time.perf_counter_ns() - t)
status = open("/proc/self/status").read()  # VmHWM: this process's peak (ru_maxrss keeps the parent's)
rss = int(status.split("VmHWM:")[1].split()[0]) * 1024
steady = int(status.split("VmRSS:")[1].split()[0]) * 1024
q = lambda xs, p: float(np.percentile(np.array(xs) / 1000, p))
print(json.dumps({"startup_s": startup, "now_p50_us": q(now, 50), "now_p99_us": q(now, 99),
                  "asof_p50_us": q(past, 50), "asof_p99_us": q(past, 99),
                  "country_asof_p99_us": q(country, 99),
                  "older_p99_us": q(older, 99) if older else None,
                  "rss_bytes": rss, "steady_rss_bytes": steady, "runs": tables.run_counts()}))
"""


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _floor_s(root_dir: Path) -> tuple[float, int]:
    """Plain numpy: sort every stored event by (user, time) -- the least any keyed update must do."""
    hashes, times = [], []
    for stream in STREAMS:
        for path in sorted((root_dir / "lake" / stream).rglob("*.parquet")):
            table = pq.read_table(path, columns=["user_id", "_event_ms"])
            hashes.append(hash_texts(table.column("user_id")))
            times.append(table.column("_event_ms").to_numpy())
    key, event_ms = np.concatenate(hashes), np.concatenate(times)
    started = time.perf_counter()
    order = np.lexsort((event_ms, key))
    key[order], event_ms[order]  # noqa: B018 - gathering is part of sorting the events
    return time.perf_counter() - started, len(key)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep data here (default: a temp dir).")
    parser.add_argument("--reads-only", action="store_true", help="Reuse the workdir's table state.")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cw-bench-tables-"))
    pipeline = load_pipeline(example_path("adclick"))
    end_ms = (SystemClock().now_ms() // MS_PER_DAY) * MS_PER_DAY
    start_ms = end_ms - int(args.hours * 3_600_000)
    data, root_dir = workdir / "input", workdir / "root"
    print(f"clickwise tables benchmark: {args.users:,} users x {args.hours:g} h, workdir {workdir}")
    try:
        if not data.exists():
            started = time.perf_counter()
            generate(data, users=args.users, hours=args.hours, seed=13, start_ms=start_ms)
            print(f"generated in {time.perf_counter() - started:.1f} s")
        if not (root_dir / "lake").exists():
            started = time.perf_counter()
            Ingestor(pipeline, open_root(root_dir)).ingest_files([str(data / s) for s in STREAMS])
            print(f"lake ingest in {time.perf_counter() - started:.1f} s")
        root = open_root(root_dir)
        if not args.reads_only:
            shutil.rmtree(root_dir / "tables", ignore_errors=True)
            started, cpu_started = time.perf_counter(), time.process_time()
            report = Tables.open(pipeline, root).catch_up()
            update_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            events = sum(report.events.values())
            floor_s, floor_events = _floor_s(root_dir)
            print(
                f"tables update: {events:,} events in {update_s:.1f} s = {events / update_s:,.0f} events/s"
                f" (durable: checkpoints every {CHECKPOINT_INTERVAL_S:g} s and at the end, incl. final "
                f"compaction; CPU {cpu_s:.1f} s over all threads = {events / cpu_s:,.0f} events per CPU-s); "
                f"numpy floor (sort {floor_events:,} events by user, time) {floor_s:.2f} s; "
                f"ratio update/floor {update_s / floor_s:.1f}x"
            )
            lake_bytes, state_bytes = _bytes(root_dir / "lake"), _bytes(root_dir / "tables")
            print(
                f"state on disk {state_bytes / 1e6:.0f} MB, lake {lake_bytes / 1e6:.0f} MB: "
                f"ratio {state_bytes / lake_bytes:.2f}"
            )
        users_file = workdir / "users.txt"
        users = Lake(root, pipeline).read_all("predictions", columns=["user_id"]).column("user_id").unique()
        users_file.write_text("\n".join(users.to_pylist()))
        low = max(start_ms, end_ms - 7 * MS_PER_DAY)
        result = subprocess.run(
            [sys.executable, "-c", READER, str(root_dir), str(users_file), str(low), str(end_ms),
             str(args.samples), str(start_ms)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
        reads = json.loads(result.stdout)
        older = reads["older_p99_us"]  # (None: the data does not reach back 7 days)
        print(
            f"fresh process: startup {reads['startup_s']:.2f} s; "
            f"get_one now p50 {reads['now_p50_us']:.0f} us p99 {reads['now_p99_us']:.0f} us; "
            f"as-of (random times in the last 7 days) p50 {reads['asof_p50_us']:.0f} us "
            f"p99 {reads['asof_p99_us']:.0f} us; country as-of p99 {reads['country_asof_p99_us']:.0f} us; "
            + ("" if older is None else f"as-of (random times before the last 7 days) p99 {older:.0f} us; ")
            + f"peak RSS {reads['rss_bytes'] / 2**30:.2f} GiB, "
            f"at the end {reads['steady_rss_bytes'] / 2**30:.2f} GiB, "
            f"over {len(users):,} users"
        )
        print(f"runs per feed: {reads['runs']}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
