"""Throughput of the synthetic generator, beside a reference measured in the same run.

The reference draws as many random float64 values with numpy as the generator writes events, and
writes them as one zstd Parquet column with pyarrow: the floor cost of "random numbers to Parquet" on
this machine. The ratio (generator time / reference time) is what to compare across machines.

    python benchmarks/bench_generate.py --users 100000 --hours 24
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clickwise.synth import GenerateSummary, generate

START_MS = 1_700_000_000_000


def _time_generate(out: Path, users: int, hours: float, seed: int, fmt: str) -> tuple[GenerateSummary, float]:
    started = time.perf_counter()
    summary = generate(out, users=users, hours=hours, seed=seed, start_ms=START_MS, fmt=fmt)  # type: ignore[arg-type]
    return summary, time.perf_counter() - started


def _time_reference(out: Path, values: int, repeat: int = 2) -> float:
    """Best of ``repeat``: draw ``values`` float64 with numpy and write them as one Parquet table."""
    best = float("inf")
    for attempt in range(repeat):
        started = time.perf_counter()
        drawn = np.random.Generator(np.random.PCG64(attempt)).random(values)
        pq.write_table(pa.table({"x": drawn}), out / f"reference-{attempt}.parquet", compression="zstd")
        best = min(best, time.perf_counter() - started)
    return best


def _size_mb(paths: dict[str, tuple[Path, ...]]) -> float:
    return sum(p.stat().st_size for parts in paths.values() for p in parts) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="users to simulate (default 100000)")
    parser.add_argument("--hours", type=float, default=24.0, help="hours of event time (default 24)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--fmt", choices=["parquet", "jsonl", "csv"], default="parquet", help="output format")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        summary, seconds = _time_generate(root / "out", args.users, args.hours, args.seed, args.fmt)
        reference = _time_reference(root, summary.events)
        size = _size_mb(dict(summary.paths))
    rate, ref_rate = summary.events / seconds, summary.events / reference
    print(f"generate --users {args.users} --hours {args.hours:g} --fmt {args.fmt} (seed {args.seed})")
    for name, count in summary.counts.items():
        print(f"  {name:<12} {count:>12,}")
    print(f"  events       {summary.events:,} in {seconds:.2f} s = {rate:,.0f} events/s ({size:,.0f} MB)")
    print(f"  without truth: {(summary.events - summary.truth) / seconds:,.0f} events/s")
    print(
        f"reference: numpy draw + pyarrow zstd parquet of {summary.events:,} float64 in {reference:.2f} s "
        f"= {ref_rate:,.0f} values/s"
    )
    print(
        f"ratio: generate takes {seconds / reference:.2f}x the reference time "
        f"({rate / ref_rate:.3f} of its rate)"
    )


if __name__ == "__main__":
    main()
