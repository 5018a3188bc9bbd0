"""The first run of a new user: ``scripts/demo`` on a fresh clone, install included, quiet and busy.

Clones the repository into a scratch folder and times ``scripts/demo`` there (pip's and uv's caches
are used as a user's would be), first on the machine as it is, then again on a new clone while one
CPU-bound process per core keeps every core busy (the burners stop after ``--burn-limit`` seconds at
the latest and are killed by their process ids when the demo ends). Prints both times, the ratio and
the demo's own stage lines. Targets: at most 60 s quiet, at most twice that busy.

    python benchmarks/bench_demo.py                      # both runs
    python benchmarks/bench_demo.py --only busy --keep   # one run, keep the clone
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUIET_TARGET_S = 60.0
BUSY_RATIO_TARGET = 2.0
BURNER = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"


def run_demo(source: Path, folder: Path, demo_args: list[str]) -> tuple[float, list[str]]:
    """Clone ``source`` into ``folder`` and time ``scripts/demo`` there; returns seconds and output lines."""
    if folder.exists():
        shutil.rmtree(folder)
    subprocess.run(["git", "clone", "--quiet", str(source), str(folder)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    started = time.perf_counter()
    done = subprocess.run(
        ["scripts/demo", *demo_args], cwd=folder, env=env, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - started
    lines = (done.stderr + done.stdout).splitlines()
    if done.returncode != 0:
        sys.exit("scripts/demo failed:\n" + "\n".join(lines[-30:]))
    return seconds, lines


def start_burners(count: int, limit_s: float) -> list[subprocess.Popen[bytes]]:
    code = BURNER.format(limit=limit_s)
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def stop(burners: list[subprocess.Popen[bytes]]) -> None:
    for proc in burners:
        proc.kill()
    for proc in burners:
        proc.wait()


def stage_lines(lines: list[str]) -> list[str]:
    wanted = ("installing", "demo: ", "model ", "tables: ", "training set: ")
    return [line for line in lines if line.startswith(wanted)]


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that the burners are stopped on the way out


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_term)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=REPO, help="Repository to clone (default: this one).")
    parser.add_argument("--workdir", type=Path, help="Where the clones go (default: a temporary folder).")
    parser.add_argument("--only", choices=("quiet", "busy"), help="Run one of the two.")
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 1, help="Busy processes (cores).")
    parser.add_argument("--burn-limit", type=float, default=900.0, help="Burners stop by then at the latest.")
    parser.add_argument("--keep", action="store_true", help="Keep the clones.")
    parser.add_argument("demo_args", nargs="*", help="Passed to scripts/demo (after --).")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, float] = {}
    try:
        if args.only in (None, "quiet"):
            load = os.getloadavg()[0]
            seconds, lines = run_demo(args.source, workdir / "quiet", args.demo_args)
            results["quiet"] = seconds
            print(f"quiet: {seconds:.1f} s (1-minute load average {load:.2f} before the run)")
            print("\n".join(f"  {line}" for line in stage_lines(lines)))
        if args.only in (None, "busy"):
            burners = start_burners(args.burners, args.burn_limit)
            try:
                time.sleep(1.0)
                seconds, lines = run_demo(args.source, workdir / "busy", args.demo_args)
            finally:
                stop(burners)
            results["busy"] = seconds
            print(f"busy: {seconds:.1f} s beside {args.burners} CPU-bound processes")
            print("\n".join(f"  {line}" for line in stage_lines(lines)))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if "quiet" in results:
        verdict = "ok" if results["quiet"] <= QUIET_TARGET_S else "over"
        print(f"quiet {results['quiet']:.1f} s against a target of {QUIET_TARGET_S:.0f} s: {verdict}")
    if len(results) == 2:
        ratio = results["busy"] / results["quiet"]
        verdict = "ok" if ratio <= BUSY_RATIO_TARGET else "over"
        print(f"busy/quiet = {ratio:.2f} against a target of {BUSY_RATIO_TARGET:.1f}: {verdict}")


if __name__ == "__main__":
    main()
