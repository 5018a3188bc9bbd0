"""Training and prediction cost of ``clickwise.model`` against bare LightGBM in the same run.

Writes a synthetic training set (``--rows`` rows over two days, six features of every kind), then:

- ``train()`` end to end (read, split, encode, model + baseline, report, publish) against one bare
  ``lightgbm.train`` on the already-encoded fit rows with the same parameters and rounds;
- ``Predictor.predict_one`` on a dict against ``Booster.predict`` on a ready 1-row numpy array;
- ``Predictor.predict`` on an Arrow table of validation rows against ``Booster.predict`` on its matrix.

    python benchmarks/bench_train.py --rows 200000

Each line prints our figure, the reference and the ratio (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clickwise.model import Predictor, train
from clickwise.model.dataset import read_training_set
from clickwise.spec import parse_pipeline

PIPELINE = """
version: 1
name: bench
streams:
  impressions:
    fields: {impression_id: string, user_id: string, browser: string, is_bot_agent: bool, cost: float,
             ts: int}
    time: {field: ts, format: epoch_ms}
    event_id: impression_id
  clicks:
    fields: {impression_id: string, ts: int}
    time: {field: ts, format: epoch_ms}
tables:
  user:
    key: [user_id]
    aggregations:
      impressions_1h: {stream: impressions, op: count, window: 1h}
      affinity: {stream: impressions, op: mean, field: cost, window: 24h}
features:
  user_impressions_1h: {table: user, aggregation: impressions_1h}
  user_affinity: {table: user, aggregation: affinity}
  browser: {event: browser}
  is_bot_agent: {event: is_bot_agent}
  cost: {event: cost}
  hour_of_day: {time_part: hour_of_day}
label: {exposure: impressions, outcome: clicks, match: [impression_id], horizon: 15m}
model:
  validation_fraction: 0.25
  params: {n_estimators: 200, learning_rate: 0.05, num_leaves: 63, min_child_samples: 50}
"""
HOUR_MS = 3_600_000


def write_data(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    event_ms = np.sort(1_700_006_400_000 + rng.integers(0, 48 * HOUR_MS, rows))
    affinity = rng.normal(size=rows)
    browser = np.array(["Chrome", "Safari", "Firefox", "Edge"])[rng.integers(0, 4, rows)]
    bot = rng.random(rows) < 0.04
    label = (rng.random(rows) < 1 / (1 + np.exp(3.5 - 1.5 * affinity))) & ~bot
    table = pa.table(
        {
            "event_id": [f"imp-{i}" for i in range(rows)],
            "event_ms": event_ms,
            "user_impressions_1h": rng.poisson(3.0, rows),
            "user_affinity": affinity,
            "browser": browser,
            "is_bot_agent": bot,
            "cost": rng.lognormal(np.log(0.002), 0.3, rows),
            "hour_of_day": ((event_ms // HOUR_MS) % 24).astype(np.int32),
            "clicked": label.astype(np.int8),
            "label_mature": np.ones(rows, dtype=bool),
        }
    )
    hours = event_ms // HOUR_MS
    for hour in np.unique(hours):
        part = folder / f"date=x/hour={int(hour) % 24:02d}-{int(hour)}"
        part.mkdir(parents=True)
        pq.write_table(table.filter(pa.array(hours == hour)), part / "part-00000.parquet")


def per_call(function: Callable[[], object], calls: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def line(name: str, ours: float, reference: float, unit: str, scale: float) -> None:
    print(
        f"{name:<34} {ours * scale:10.1f} {unit}   reference {reference * scale:10.1f} {unit}   "
        f"ratio {ours / reference:6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=2_000, help="Single-row predictions to time.")
    args = parser.parse_args()
    pipeline = parse_pipeline(PIPELINE, source="bench")
    with tempfile.TemporaryDirectory(prefix="cw-bench-train-") as work:
        data, models = Path(work) / "data", Path(work) / "models"
        write_data(data, args.rows)

        started = time.perf_counter()
        result = train(pipeline, str(data), str(models))
        ours = time.perf_counter() - started
        predictor = Predictor.load(result.model_dir)
        data_set = read_training_set(pipeline, str(data))
        split = result.card["split"]
        fit = data_set.table.slice(0, split["fit"]["rows"])
        matrix = predictor.encoding.matrix(fit)
        params = {**result.card["params"]}
        rounds = int(params.pop("num_boost_round"))
        started = time.perf_counter()
        lgb.train(
            params,
            lgb.Dataset(matrix, label=fit.column("clicked").to_numpy(), categorical_feature=[2, 3]),
            num_boost_round=rounds,
        )
        reference = time.perf_counter() - started
        line(f"train ({args.rows} rows, {rounds} trees)", ours, reference, "s  ", 1.0)

        valid = data_set.table.filter(pa.array(data_set.event_ms() >= split["cut_ms"]))
        row = valid.slice(0, 1).to_pylist()[0]
        one = predictor.matrix([row])
        booster = predictor.booster
        line(
            "predict_one (dict)",
            per_call(lambda: predictor.predict_one(row), args.calls),
            per_call(lambda: booster.predict(one), args.calls),
            "us ",
            1e6,
        )
        valid_matrix = predictor.matrix(valid)
        line(
            f"predict ({valid.num_rows} rows, Arrow)",
            per_call(lambda: predictor.predict(valid), 5),
            per_call(lambda: booster.predict(valid_matrix), 5),
            "ms ",
            1e3,
        )
        model = result.metrics["model"]
        print(f"validation AUC {model['auc']:.4f} (baseline {result.metrics['baseline']['auc']:.4f})")


if __name__ == "__main__":
    main()
