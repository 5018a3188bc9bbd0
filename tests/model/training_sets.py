"""Training-set folders as the backfill writes them, made from synthetic columns.

``write_training_set`` lays out ``<out>/date=YYYY-MM-DD/hour=HH/part-00000.parquet`` and
``<out>/_dataset.json`` with the column order of the contract: ``event_id``, ``event_ms``, the
features in pipeline order, the label, ``label_mature``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from clickwise.model.dataset import pipeline_kind
from clickwise.spec import Pipeline, parse_pipeline

HOUR_MS = 3_600_000
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % (24 * HOUR_MS)

TINY_PIPELINE = """
version: 1
name: tiny
streams:
  impressions:
    fields:
      impression_id: string
      user_id: string
      browser: string
      is_bot_agent: bool
      cost: float
      ts: int
    time: {field: ts, format: epoch_ms}
    event_id: impression_id
  clicks:
    fields:
      impression_id: string
      ts: int
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
  params: {n_estimators: 80, learning_rate: 0.1, num_leaves: 15, min_child_samples: 20, num_threads: 1}
decision:
  cost: cost
  value_per_click: 0.4
  block:
    - {feature: is_bot_agent, op: eq, value: true}
    - {feature: user_impressions_1h, op: gt, value: 12}
"""

TYPES = {"int": "int", "float": "float", "string": "string", "bool": "bool"}


def tiny_pipeline(text: str = TINY_PIPELINE) -> Pipeline:
    return parse_pipeline(text, source="tiny")


def tiny_columns(rows: int = 6000, *, hours: int = 48, immature: int = 40, seed: int = 1) -> dict[str, Any]:
    """Columns of ``tiny``: ``user_affinity`` drives the label strongly, ``browser`` a little, bots
    never click; the last ``immature`` rows have immature labels."""
    rng = np.random.default_rng(seed)
    event_ms = np.sort(START_MS + rng.integers(0, hours * HOUR_MS, rows))
    affinity = rng.normal(0.0, 1.0, rows)
    affinity[rng.random(rows) < 0.05] = np.nan
    browsers = np.array(["Chrome", "Safari", "Firefox", "Edge"])
    browser = browsers[rng.integers(0, 4, rows)].astype(object)
    browser[rng.random(rows) < 0.03] = None
    bot = rng.random(rows) < 0.04
    impressions_1h = rng.poisson(3.0, rows)
    cost = np.round(rng.lognormal(np.log(0.002), 0.3, rows), 6)
    logit = -3.4 + 1.6 * np.nan_to_num(affinity) + 0.3 * (browser == "Safari")
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))) & ~bot
    mature = np.ones(rows, dtype=bool)
    mature[rows - immature :] = False
    return {
        "event_id": [f"imp-{i:06d}" for i in range(rows)],
        "event_ms": event_ms,
        "user_impressions_1h": impressions_1h.astype(np.int64),
        "user_affinity": affinity,
        "browser": browser.tolist(),
        "is_bot_agent": bot,
        "cost": cost,
        "hour_of_day": ((event_ms // HOUR_MS) % 24).astype(np.int32),
        "clicked": label.astype(np.int8),
        "label_mature": mature,
    }


def write_training_set(
    out: Path,
    pipeline: Pipeline,
    columns: Mapping[str, Any],
    *,
    manifest: bool = True,
    fingerprint: str | None = None,
) -> Path:
    """Write ``columns`` as a training set of ``pipeline`` (one file per event hour)."""
    assert pipeline.label is not None
    names = ["event_id", "event_ms", *pipeline.features, pipeline.label.name, "label_mature"]
    table = pa.table({name: _array(name, columns[name]) for name in names})
    event_ms = table.column("event_ms").to_numpy()
    hour = event_ms // HOUR_MS
    for value in np.unique(hour):
        rows = np.flatnonzero(hour == value)
        moment = np.datetime64(int(value) * HOUR_MS, "ms").astype(object)
        folder = out / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(rows), folder / "part-00000.parquet")
    if manifest:
        description = {
            "pipeline": pipeline.name,
            "fingerprint": fingerprint or pipeline.fingerprint(),
            "label": pipeline.label.name,
            "features": [
                {
                    "name": name,
                    "kind": pipeline_kind(pipeline, name),
                    "type": _type(table.schema.field(name).type),
                }
                for name in pipeline.features
            ],
            "from_ms": int(event_ms.min()),
            "to_ms": int(event_ms.max()) + 1,
            "rows": table.num_rows,
        }
        (out / "_dataset.json").write_bytes(orjson.dumps(description))
    return out


def _array(name: str, values: Any) -> pa.Array:
    if name == "event_id":
        return pa.array(values, pa.string())
    if name == "event_ms":
        return pa.array(values, pa.int64())
    if name == "label_mature":
        return pa.array(values, pa.bool_())
    return pa.array(values, from_pandas=True)


def _type(arrow: pa.DataType) -> str:
    if pa.types.is_boolean(arrow):
        return "bool"
    if pa.types.is_integer(arrow):
        return "int"
    if pa.types.is_floating(arrow):
        return "float"
    return "string"
