"""Helpers for testing code that uses clickwise: a small pipeline, a fixed clock, record writers.

>>> pipeline = small_pipeline()
>>> sorted(pipeline.streams)
['clicks', 'views']
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from clickwise.spec import Pipeline, parse_pipeline
from clickwise.time import FixedClock

SMALL_PIPELINE = """
version: 1
name: small
streams:
  views:
    fields:
      view_id: {type: string, max_length: 32}
      user_id: string
      price: {type: float, min: 0}
      ts: int
    time: {field: ts, format: epoch_ms}
    event_id: view_id
  clicks:
    fields:
      view_id: string
      user_id: string
      when: string
    time: {field: when, format: iso}
tables:
  user:
    key: [user_id]
    aggregations:
      views_1h: {stream: views, op: count, window: 1h}
      clicks_1h: {stream: clicks, op: count, window: 1h}
features:
  user_views_1h: {table: user, aggregation: views_1h}
label: {exposure: views, outcome: clicks, match: [view_id], horizon: 15m}
"""


def small_pipeline(text: str = SMALL_PIPELINE) -> Pipeline:
    """A two-stream pipeline (``views`` with an event id, ``clicks`` with ISO times), no enrichment."""
    return parse_pipeline(text, source="small_pipeline")


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any] | str]) -> Path:
    """Write records as JSON lines; a ``str`` record is written verbatim (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for record in records:
            out.write(record.encode() if isinstance(record, str) else orjson.dumps(record))
            out.write(b"\n")
    return path


__all__ = ["SMALL_PIPELINE", "FixedClock", "small_pipeline", "write_jsonl"]


def register_module(name: str, path: Path) -> None:
    """Make the file ``path`` importable as ``name`` (once). Test folders run without packages
    (pytest's ``--import-mode=importlib``), so their helper files are registered under names no
    other folder's helper can take."""
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
