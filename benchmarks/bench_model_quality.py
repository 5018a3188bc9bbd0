"""Model quality on generated data: how much of the gap to the Bayes-optimal predictor history closes.

    python benchmarks/bench_model_quality.py --users 100000 --hours 48 --workdir /tmp/bq

Steps: generate the adclick streams (with the true click probability of every impression), ingest,
build the tables, backfill the training set, train the adclick model with ``--truth``. On the same
validation rows it prints three AUCs: a model without table features (the baseline: what one event
shows), the full model, and the Bayes-optimal predictor (the true probabilities), the share of the
gap the full model closes, ``(full - baseline) / (bayes - baseline)`` (target: 70% or more), and the
calibration error (target: 0.01 or less). Then the money replay with bot clicks worth nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from clickwise.dataset import backfill
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.model import evaluate, train
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.time import MS_PER_DAY, SystemClock

STREAMS = ("impressions", "clicks", "predictions")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep data here (default: a temp dir).")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cw-bench-quality-"))
    pipeline = load_pipeline(example_path("adclick"))
    end_ms = (SystemClock().now_ms() // MS_PER_DAY) * MS_PER_DAY
    start_ms = end_ms - int(args.hours * 3_600_000)
    data, root_dir = workdir / "input", workdir / "root"
    print(f"model quality: {args.users:,} users x {args.hours:g} h, workdir {workdir}")
    try:
        steps: dict[str, float] = {}
        started = time.perf_counter()
        if not data.exists():
            generate(data, users=args.users, hours=args.hours, seed=args.seed, start_ms=start_ms)
        steps["generate"] = time.perf_counter() - started
        root = open_root(root_dir)
        started = time.perf_counter()
        if not (root_dir / "lake").exists():
            Ingestor(pipeline, root).ingest_files([str(data / s) for s in STREAMS])
        steps["ingest"] = time.perf_counter() - started
        started = time.perf_counter()
        tables = Tables.open(pipeline, root)
        tables.catch_up()
        steps["tables"] = time.perf_counter() - started
        started = time.perf_counter()
        training = workdir / "training"
        shutil.rmtree(training, ignore_errors=True)
        filled = backfill(pipeline, root, str(training), start_ms, end_ms, tables=tables)
        steps["backfill"] = time.perf_counter() - started
        started = time.perf_counter()
        models = workdir / "models"
        result = train(pipeline, str(training), str(models), truth=str(data / "truth"))
        steps["train"] = time.perf_counter() - started
        money = evaluate(pipeline, str(training), result.model_dir, truth=str(data / "truth"))
        metrics = result.metrics
        truth = metrics["truth"]
        print(
            f"training set: {filled.rows:,} rows, {filled.positives:,} positive; validation rows "
            f"{truth['validation_rows']:,} ({truth['matched_rows']:,} in the truth)"
        )
        print(
            f"AUC on the same validation rows: without table features {truth['baseline']['auc']:.4f}, "
            f"full model {truth['model']['auc']:.4f}, Bayes-optimal {truth['bayes']['auc']:.4f}"
        )
        print(
            f"log loss: baseline {truth['baseline']['log_loss']:.5f}, full {truth['model']['log_loss']:.5f}, "
            f"Bayes-optimal {truth['bayes']['log_loss']:.5f}"
        )
        closed = truth["gap_closed"]
        print(
            f"gap closed {closed:.1%} (target >= 70%); calibration error "
            f"{metrics['model']['calibration_error']:.4f} (target <= 0.01); "
            f"third stream's score alone: AUC {(metrics.get('segment_score_last') or {}).get('auc')}"
        )
        print(
            f"money (validation period, bot clicks worth nothing): serve-all net {money.serve_all.net:,.2f}, "
            f"policy net {money.policy.net:,.2f}, saved {money.money_saved:,.2f}"
        )
        print("seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in steps.items()))
        print(f"report: {result.model_dir}/report.html")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
