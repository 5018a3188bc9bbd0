"""Stream joins: fill an event's fields from a lookup table as of the event's own time (inclusive).

A click has no IP, so it takes its impression's country from a table keyed by ``impression_id``.
The join reads the table as of ``t + 1``: events with ``t + 1 - w <= event_ms <= t`` for a window
``w`` (a click logged in the same millisecond as its impression still finds it), never later ones;
``lifetime`` is the table's retention. ``last`` aggregations over an exact window (the common case)
resolve for a whole batch with one as-of join; other aggregations are evaluated event by event.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from clickwise.spec import JoinDef
from clickwise.tables.evaluate import evaluate_feed
from clickwise.tables.feeds import AggPlan, Feed
from clickwise.tables.runs import Run, frame_key_hashes


def join_key_hashes(events: pl.DataFrame, join: JoinDef, table_key: Sequence[str]) -> pl.Series:
    """Key hashes of the join table for each event (null where a key field is null)."""
    key_hash, known = frame_key_hashes(events, [join.key[name] for name in table_key])
    hashes = pl.Series("h", key_hash, dtype=pl.UInt64)
    return hashes.zip_with(pl.Series(known), pl.Series([None], dtype=pl.UInt64))


def resolve(
    events: pl.DataFrame, join: JoinDef, feed: Feed, runs: Sequence[Run], hashes: pl.Series
) -> pl.DataFrame:
    """``events`` with the join's output columns added (null where nothing matches); ``hashes`` are
    the events' :func:`join_key_hashes`."""
    by_name = {agg.name: agg for agg in feed.aggs}
    for output, aggregation in join.take.items():
        agg = by_name[aggregation]
        if agg.op == "last" and agg.hop_ms == 1 and agg.filter is None:
            column = _last_as_of(events, hashes, agg, runs)
        else:
            column = _one_by_one(events, hashes, agg, feed, runs)
        events = events.with_columns(column.alias(output))
    return events


def _last_as_of(events: pl.DataFrame, hashes: pl.Series, agg: AggPlan, runs: Sequence[Run]) -> pl.Series:
    wanted = np.unique(hashes.drop_nulls().to_numpy())
    parts = []
    for run in runs:
        if len(run.distinct) == 0:
            continue
        position = np.minimum(np.searchsorted(run.distinct, wanted), len(run.distinct) - 1)
        hit = run.distinct[position] == wanted
        if not hit.any():
            continue
        lo, hi = run.starts[position[hit]], run.starts[position[hit] + 1]
        owner = np.repeat(wanted[hit], hi - lo)
        lengths = hi - lo
        index = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        valid = run.values[agg.valid_column][index]
        index, owner = index[valid], owner[valid]
        arrival = run.arrival_ms(index)
        parts.append(
            pl.DataFrame(
                {
                    "h": owner,
                    "t": run.event_ms(index),
                    "a": arrival if arrival is not None else np.zeros(len(index), np.int64),
                    "v": pl.Series(_decoded(run, agg.column, index), dtype=_dtype(agg)),
                }
            )
        )
    probe = pl.DataFrame({"h": hashes, "t": events.get_column("_event_ms"), "i": np.arange(events.height)})
    if not parts:
        return pl.Series([None] * events.height, dtype=_dtype(agg))
    candidates = pl.concat(parts).sort(["t", "a", "v"])
    found = (
        probe.sort("t")
        .join_asof(
            candidates,
            on="t",
            by="h",
            strategy="backward",
            tolerance=agg.window_ms - 1,  # t - w < event_ms <= t
            check_sortedness=False,
        )
        .sort("i")
    )
    return found.get_column("v")


def _decoded(run: Run, column: str, index: np.ndarray) -> list[object]:
    data = run.values[column][index]
    labels = run.labels.get(column)
    return (labels[data] if labels is not None else data).tolist()


def _one_by_one(
    events: pl.DataFrame, hashes: pl.Series, agg: AggPlan, feed: Feed, runs: Sequence[Run]
) -> pl.Series:
    single = Feed(feed.table, feed.stream, feed.key_fields, (agg,), feed.needs_order, feed.join_fields)
    values = []
    for key_hash, event_ms in zip(hashes.to_list(), events.get_column("_event_ms").to_list(), strict=True):
        values.append(
            None if key_hash is None else evaluate_feed(single, runs, key_hash, event_ms + 1)[agg.name]
        )
    return pl.Series(values, dtype=_dtype(agg))


def _dtype(agg: AggPlan) -> pl.DataType:
    types: dict[str | None, pl.DataType] = {
        "string": pl.String(),
        "int": pl.Int64(),
        "float": pl.Float64(),
        "bool": pl.Boolean(),
    }
    if agg.op in ("count", "distinct_count", "time_since_last"):
        return pl.Int64()
    if agg.op in ("mean",):
        return pl.Float64()
    return types.get(agg.field_type, pl.Float64())
