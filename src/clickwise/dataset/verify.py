"""Show that training and serving agree, and that no feature sees the future.

**Skew.** The lake is replayed, in arrival order and in micro-batches, through the streaming path
(tables updated batch by batch, training rows emitted as the watermark closes each label window)
into a scratch root; the backfill computes the same exposures' rows from the final tables. Every
feature and the label are compared row by row (exact equality, nulls equal only to nulls). An
event that arrives later than ``horizon + allowed lateness`` after its event time can reach the
tables after a row that needed it was emitted; such events are counted, since they are the only
legitimate cause of a difference. When the arrival times say little (a file ingest without them
gives every event the moment of its ingest, so one batch would hold everything and the check would
pass trivially), the replay goes in event-time micro-batches instead, and the report says so.

**Leakage.** For cut moments ``C`` (each the time of an exposure), the tables are rebuilt twice in
scratch roots: once without any event at or after ``C``, once with those events' fields shuffled
among themselves (other keys, other values). The features of every exposure at or before ``C``
must not change.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from clickwise.dataset.backfill import backfill, exposure_rows
from clickwise.dataset.stream import RowEmitter, read_rows
from clickwise.dataset.writer import DatasetError
from clickwise.events.lake import Lake
from clickwise.events.validate import ARRIVAL_MS, EVENT_MS
from clickwise.features import FeatureSet
from clickwise.spec import Pipeline
from clickwise.storage import Root, open_root
from clickwise.tables.engine import Tables
from clickwise.time import MS_PER_HOUR, MS_PER_MINUTE

Progress = Callable[[int, int, str], None]
LEAKAGE_WINDOW_MS = MS_PER_HOUR
"""The probe checks the exposures of the hour up to each cut."""
ARRIVAL_SPREAD = 0.1
"""The replay goes by event time when arrival times fill fewer micro-batches than this share of
those event times fill."""


@dataclass
class LeakageCheck:
    """One cut of the leakage probe."""

    cut_ms: int
    rows: int
    differ_when_removed: int
    differ_when_changed: int


@dataclass
class VerifyReport:
    from_ms: int
    to_ms: int
    stream_rows: int = 0
    backfill_rows: int = 0
    compared: int = 0
    only_in_backfill: int = 0
    only_in_stream: int = 0
    differing_rows: int = 0
    differing: dict[str, int] = field(default_factory=dict)
    events_later_than_emission: int = 0
    leakage: list[LeakageCheck] = field(default_factory=list)
    leaks: int = 0
    batches: int = 0
    replayed_by: str = "arrival time"
    arrival_batches: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.differing_rows == 0 and self.leaks == 0 and self.compared > 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def verify(
    pipeline: Pipeline,
    root: Root,
    from_ms: int,
    to_ms: int,
    *,
    batch_ms: int = 15 * MS_PER_MINUTE,
    cuts: int = 2,
    progress: Progress | None = None,
) -> VerifyReport:
    """Replay ``root``'s lake through the streaming path and compare its rows for exposures in
    ``[from_ms, to_ms)`` with the backfill's; then run the leakage probe at ``cuts`` moments."""
    if pipeline.label is None:
        raise DatasetError("the pipeline has no label: there are no training rows to verify")
    exposure = pipeline.label.exposure
    if pipeline.streams[exposure].event_id is None:
        raise DatasetError(
            f"verify matches rows by event id; give the exposure stream {exposure!r} an event_id field"
        )
    started = time.perf_counter()
    step = progress or (lambda done, total, phase: None)
    report = VerifyReport(from_ms, to_ms)
    scratch = Path(tempfile.mkdtemp(prefix="clickwise-verify-"))
    try:
        tables = Tables.open(pipeline, root)
        tables.catch_up()
        events = _lake_events(pipeline, root)
        by, report.arrival_batches = _replay_order(events, batch_ms)
        report.replayed_by = "arrival time" if by == ARRIVAL_MS else "event time"
        events = {name: _by_batch(frame, by, batch_ms) for name, frame in events.items()}
        report.batches = _replay(pipeline, events, open_root(scratch / "replay"), batch_ms, by, step)
        streamed = read_rows(open_root(scratch / "replay"))
        if streamed.height:
            streamed = streamed.filter((pl.col("event_ms") >= from_ms) & (pl.col("event_ms") < to_ms))
        step(0, 1, "backfilling")
        backfill(pipeline, root, str(scratch / "backfill"), from_ms, to_ms, tables=tables)
        filled = (
            pl.read_parquet(scratch / "backfill" / "**" / "*.parquet")
            if _has_rows(scratch / "backfill")
            else None
        )
        _compare(pipeline, report, streamed, filled)
        lag = pipeline.label.horizon + pipeline.allowed_lateness
        report.events_later_than_emission = sum(
            int((frame.get_column(ARRIVAL_MS) - frame.get_column(EVENT_MS) > lag).sum())
            for frame in events.values()
        )
        if filled is not None and cuts > 0:
            _probe(pipeline, tables, events, filled, scratch, cuts, report, step)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _lake_events(pipeline: Pipeline, root: Root) -> dict[str, pl.DataFrame]:
    lake = Lake(root, pipeline)
    events = {}
    for stream in pipeline.streams:
        files = [f.path for f in lake.files(stream)]
        if files:
            frame = pl.from_arrow(root.read_parquet(files))
            assert isinstance(frame, pl.DataFrame)
            events[stream] = frame
    return events


def _write(lake: Lake, stream: str, frame: pl.DataFrame, tag: str) -> None:
    paths = lake.write(stream, frame.to_arrow(), tag)
    lake.record_input(stream, tag, {"source": "verify", "files": paths})


def _replay_order(events: dict[str, pl.DataFrame], batch_ms: int) -> tuple[str, int]:
    """The column whose micro-batches the replay follows, and how many batches arrival times fill:
    arrival time, unless it fills far fewer batches than event time does."""

    def batches(column: str) -> int:
        if not events:
            return 0
        return pl.concat([(f.get_column(column) // batch_ms).unique() for f in events.values()]).n_unique()

    arrivals = batches(ARRIVAL_MS)
    return (EVENT_MS if arrivals < ARRIVAL_SPREAD * batches(EVENT_MS) else ARRIVAL_MS), arrivals


def _by_batch(frame: pl.DataFrame, by: str, batch_ms: int) -> pl.DataFrame:
    """The events in micro-batch order (their order within a batch kept), so that each batch is one
    slice: the replay then costs one pass over the events, not one per batch."""
    return frame.sort(pl.col(by) // batch_ms, maintain_order=True)


def _replay(
    pipeline: Pipeline,
    events: dict[str, pl.DataFrame],
    root: Root,
    batch_ms: int,
    by: str,
    step: Progress,
) -> int:
    """Feed the events to a scratch root in micro-batches of ``by`` (arrival or event time), one at
    a time, updating the tables and emitting rows after each (what ``clickwise run`` does). The
    events keep their own arrival times."""
    lake = Lake(root, pipeline)
    tables = Tables.open(pipeline, root)
    emitter = RowEmitter(pipeline, root)
    buckets = {name: (frame.get_column(by) // batch_ms).to_numpy() for name, frame in events.items()}
    moments = sorted(set().union(*(set(np.unique(b).tolist()) for b in buckets.values())))
    order = sorted(events, key=lambda s: bool(pipeline.streams[s].joins))  # a join's source first
    for number, moment in enumerate(moments):
        for stream in order:
            # (events are in batch order: see _by_batch)
            low, high = np.searchsorted(buckets[stream], [moment, moment + 1])
            batch = events[stream].slice(int(low), int(high - low))
            if batch.height:
                _write(lake, stream, batch, f"replay-{number:06d}")
        tables.catch_up()
        emitter.emit(tables)
        step(number + 1, len(moments), "replaying through the streaming path")
    return len(moments)


def _has_rows(folder: Path) -> bool:
    return any(folder.rglob("*.parquet"))


def _compare(
    pipeline: Pipeline, report: VerifyReport, streamed: pl.DataFrame, filled: pl.DataFrame | None
) -> None:
    assert pipeline.label is not None
    names = [*FeatureSet(pipeline).names, pipeline.label.name]
    report.stream_rows = streamed.height
    report.backfill_rows = 0 if filled is None else filled.height
    report.differing = dict.fromkeys(names, 0)
    if filled is None or streamed.height == 0:
        report.only_in_backfill = report.backfill_rows
        report.only_in_stream = report.stream_rows
        return
    keys = ["event_id", "event_ms"]
    left = filled.select(*keys, *names)
    right = streamed.select(*keys, *[pl.col(n).alias(f"{n}__s") for n in names])
    joined = left.join(right, on=keys, how="inner")
    report.compared = joined.height
    report.only_in_backfill = left.join(right, on=keys, how="anti").height
    report.only_in_stream = right.join(left, on=keys, how="anti").height
    if joined.height == 0:
        return
    differs = [_differs(pl.col(n), pl.col(f"{n}__s")).alias(n) for n in names]
    flags = joined.select(differs)
    report.differing = {n: int(flags.get_column(n).sum()) for n in names}
    report.differing_rows = int(flags.select(pl.any_horizontal(pl.all())).to_series().sum())


def _differs(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Not exactly equal (a null equals only a null)."""
    return (a.is_null() != b.is_null()) | (a.is_not_null() & b.is_not_null() & (a != b))


def _probe(
    pipeline: Pipeline,
    tables: Tables,
    events: dict[str, pl.DataFrame],
    filled: pl.DataFrame,
    scratch: Path,
    cuts: int,
    report: VerifyReport,
    step: Progress,
) -> None:
    """Rebuild the tables without (then with shuffled) events at or after each cut; the features of
    exposures at or before the cut must not move."""
    assert pipeline.label is not None
    exposure = pipeline.label.exposure
    times = np.sort(filled.get_column("event_ms").to_numpy())
    picks = [int(times[int(len(times) * (i + 1) / (cuts + 1))]) for i in range(cuts)]
    names = FeatureSet(pipeline).names
    for number, cut in enumerate(picks):
        step(number, len(picks), "leakage probe")
        rows = events[exposure].filter(
            (pl.col(EVENT_MS) <= cut) & (pl.col(EVENT_MS) > cut - LEAKAGE_WINDOW_MS)
        )
        if rows.height == 0:
            continue
        check = LeakageCheck(cut, rows.height, 0, 0)
        expected = _features(exposure_rows(pipeline, tables, rows, rows.head(0), None), names)
        for variant in ("removed", "changed"):
            folder = scratch / f"probe-{number}-{variant}"
            changed = {
                stream: _before(frame, cut)
                if variant == "removed"
                else _shuffled_after(frame, cut, seed=number)
                for stream, frame in events.items()
            }
            probe_root = open_root(folder)
            lake = Lake(probe_root, pipeline)
            for stream in sorted(changed, key=lambda s: bool(pipeline.streams[s].joins)):
                if changed[stream].height:
                    _write(lake, stream, changed[stream], "probe")
            probe_tables = Tables.open(pipeline, probe_root)
            probe_tables.catch_up()
            got = _features(exposure_rows(pipeline, probe_tables, rows, rows.head(0), None), names)
            differing = int(
                pl.DataFrame({n: _differs_series(expected[n], got[n]) for n in names})
                .select(pl.any_horizontal(pl.all()))
                .to_series()
                .sum()
            )
            if variant == "removed":
                check.differ_when_removed = differing
            else:
                check.differ_when_changed = differing
            shutil.rmtree(folder, ignore_errors=True)
        report.leakage.append(check)
        report.leaks += check.differ_when_removed + check.differ_when_changed


def _features(rows: pa.Table, names: list[str]) -> dict[str, pl.Series]:
    frame = pl.from_arrow(rows.select(names))
    assert isinstance(frame, pl.DataFrame)
    return {name: frame.get_column(name) for name in names}


def _differs_series(a: pl.Series, b: pl.Series) -> pl.Series:
    return pl.DataFrame({"a": a, "b": b}).select(_differs(pl.col("a"), pl.col("b"))).to_series()


def _before(frame: pl.DataFrame, cut: int) -> pl.DataFrame:
    return frame.filter(pl.col(EVENT_MS) < cut)


def _shuffled_after(frame: pl.DataFrame, cut: int, *, seed: int) -> pl.DataFrame:
    """Events at or after the cut with every field but the times shuffled among them (independently
    per field): other keys, other values, the same times."""
    early = frame.filter(pl.col(EVENT_MS) < cut)
    late = frame.filter(pl.col(EVENT_MS) >= cut)
    if late.height < 2:
        return frame
    rng = np.random.default_rng(seed)
    shuffled = late.with_columns(
        [
            pl.col(name).gather(rng.permutation(late.height))
            for name in late.columns
            if name not in (EVENT_MS, ARRIVAL_MS)
        ]
    )
    return pl.concat([early, shuffled], how="vertical_relaxed")
