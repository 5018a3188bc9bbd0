"""Exactly-once under kill -9: SIGKILL ingest and table updates at random moments, restart, compare.

Generates a small adclick data set once (12 JSON-lines inputs, a bad record in each), runs the
work uninterrupted in a subprocess (timed: the reference), then runs N trials: the same work in a
fresh root, SIGKILLed by pid one to three times after delays drawn uniformly over the measured run
(restarts are killed too), then run to the end and compared with the reference: lake rows and
manifests, dead letters, every table at four moments, counters (see ``clickwise.testing_crash``).

    python benchmarks/bench_crash.py --trials 50
    python benchmarks/bench_crash.py --trials 300 --crash-at-every-op   # before each storage step
    python benchmarks/bench_crash.py --trials 50 --reorder              # restarts shuffle the inputs

Prints ``trials, lost events, double-counted events, mismatching tables`` (all must be 0) and the
time per trial; exits 1 on any mismatch, keeping the failed trials' folders (with the states each
kill left) for replay.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from clickwise.testing_crash import CrashConfig, CrashHarness, TrialResult


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="Seed of the kill delays (trial i uses seed+i).")
    parser.add_argument("--users", type=int, default=CrashConfig.users)
    parser.add_argument("--hours", type=float, default=CrashConfig.hours)
    parser.add_argument("--window-rows", type=int, default=CrashConfig.window_rows)
    parser.add_argument(
        "--crash-at-every-op",
        action="store_true",
        help="Instead of timed kills, crash right before storage operation i of trial i (spread evenly "
        "over the run when there are fewer trials than operations).",
    )
    parser.add_argument(
        "--reorder", action="store_true", help="Every restart ingests the inputs in another (seeded) order."
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="Keep everything here (default: a temp dir)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Describe every trial.")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cw-bench-crash-"))
    config = CrashConfig(users=args.users, hours=args.hours, window_rows=args.window_rows)
    harness = CrashHarness(workdir, config)
    started = time.perf_counter()
    harness.prepare()
    assert harness.reference is not None
    events = sum(sum(rows.values()) for rows in harness.reference.lake.values())
    print(
        f"clickwise crash benchmark: {config.users} users x {config.hours:g} h, {events:,} events in "
        f"{len(harness.dataset.inputs) if harness.dataset else 0} inputs; an uninterrupted run works "
        f"{harness.duration_s:.2f} s and makes {harness.storage_ops} storage writes/deletes "
        f"(prepared in {time.perf_counter() - started:.1f} s); workdir {workdir}"
    )

    results: list[TrialResult] = []
    kills = Counter[str]()
    for number in range(args.trials):
        seed = args.seed + number
        if args.crash_at_every_op:
            op = number * (harness.storage_ops + 1) // args.trials
            result = harness.trial(seed, crash_at=[str(op)], reorder=args.reorder, keep=False)
        else:
            result = harness.trial(seed, reorder=args.reorder, keep=False)
        results.append(result)
        kills["killed"] += sum(run.killed for run in result.runs)
        kills["finished before the kill"] += sum(not run.killed for run in result.runs[:-1])
        if args.verbose or not result.ok:
            print(("" if result.ok else "MISMATCH ") + result.describe(), flush=True)
        elif (number + 1) % 10 == 0:
            print(f"  {number + 1} trials ...", flush=True)

    lost = sum(r.comparison.lost_events for r in results)
    doubled = sum(r.comparison.doubled_events for r in results)
    tables = sum(len(r.comparison.mismatching_tables) for r in results)
    failed = [r for r in results if not r.ok]
    per_trial = sum(r.seconds for r in results) / max(len(results), 1)
    delays = [run.delay_s / harness.duration_s for r in results for run in r.runs if run.delay_s is not None]
    late = sum(any(n.startswith("late_events") for n in r.comparison.notes) for r in results)
    print(
        f"kills: {kills['killed']} ({kills['finished before the kill']} runs finished before their kill); "
        + (
            f"kill delays {min(delays):.1%}..{max(delays):.1%} of the run"
            if delays
            else "crashes before storage operations"
        )
    )
    print(f"late_events differed from the reference in {late} of {len(results)} trials (not compared)")
    print(f"trials {len(results)}, lost events {lost}, double-counted events {doubled}, ", end="")
    print(f"mismatching tables {tables}")
    print(f"time per trial {per_trial:.2f} s")
    if failed:
        print(
            f"{len(failed)} trials failed; their folders are kept: {', '.join(str(r.folder) for r in failed)}"
        )
        return 1
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
