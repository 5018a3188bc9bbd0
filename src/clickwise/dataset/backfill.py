"""Backfill: one training row per exposure in a time range, from the lake and the lookup tables.

Each row has the exposure's id and time, every feature as of the exposure's time (exactly what
``clickwise lookup --as-of`` gives: the same tables read through the same definition), the label
from the outcomes that followed within the horizon, and whether that label is final (mature: the
data's watermark has passed ``t + horizon``). Work goes hour partition by hour partition, so memory
holds one hour of exposures (plus the tables), whatever the range.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clickwise.dataset.writer import DatasetError, DatasetWriter
from clickwise.events.lake import Lake, LakeFile
from clickwise.events.validate import ARRIVAL_MS, EVENT_MS
from clickwise.features import FeatureSet
from clickwise.labels import label_events, outcome_range_ms
from clickwise.spec import Pipeline
from clickwise.storage import Root, open_root
from clickwise.tables.engine import Tables
from clickwise.time import MS_PER_HOUR, format_ms

Progress = Callable[[int, int], None]
WORKERS = 2
"""Hours read and computed at once (the machines this targets have two cores or more)."""


@dataclass
class BackfillReport:
    """What a backfill wrote."""

    out: str
    from_ms: int
    to_ms: int
    rows: int = 0
    positives: int = 0
    mature: int = 0
    partitions: int = 0
    bytes: int = 0
    seconds: float = 0.0
    immature_left_out: int = 0
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["from"] = format_ms(self.from_ms)
        data["to"] = format_ms(self.to_ms)
        data["rows_per_s"] = round(self.rows / self.seconds) if self.seconds else None
        data.pop("files")
        return data


def backfill(
    pipeline: Pipeline,
    root: Root,
    out: str,
    from_ms: int,
    to_ms: int,
    *,
    fmt: str | None = None,
    sagemaker: bool = False,
    include_immature: bool = False,
    overwrite: bool = False,
    tables: Tables | None = None,
    progress: Progress | None = None,
) -> BackfillReport:
    """Write the training set of exposures with ``from_ms <= t < to_ms`` to ``out`` (a folder or
    ``s3://`` URL) as Parquet, CSV, or (``sagemaker``) SageMaker CSV. The tables are first brought
    up to date with the lake. ``overwrite`` replaces what ``out`` holds (never a clickwise root).
    A SageMaker set leaves out rows whose label is not final unless ``include_immature``."""
    if pipeline.label is None:
        raise DatasetError("the pipeline has no label: a training set needs one (exposure, outcome, horizon)")
    if to_ms <= from_ms:
        raise DatasetError(
            f"the range is empty: --to ({format_ms(to_ms)}) is not after --from ({format_ms(from_ms)})"
        )
    started = time.perf_counter()
    if sagemaker and fmt not in (None, "csv"):
        raise DatasetError(f"--sagemaker writes CSV; it cannot be combined with --format {fmt}")
    fmt = fmt or ("csv" if sagemaker else "parquet")
    target = open_root(out)
    features = FeatureSet(pipeline)
    label = pipeline.label
    writer = DatasetWriter(  # checks first
        target, features.infos, label.name, fmt=fmt, sagemaker=sagemaker, include_immature=include_immature
    )
    _prepare(target, overwrite)
    if tables is None:
        tables = Tables.open(pipeline, root, threads=WORKERS)
    tables.catch_up()
    lake = Lake(root, pipeline)
    exposures = _by_hour(lake.files(label.exposure, from_ms, to_ms))
    outcome_files = lake.files(label.outcome, *outcome_range_ms(label, from_ms, to_ms))
    event_id = pipeline.streams[label.exposure].event_id
    columns = exposure_columns(pipeline, features)
    order = lake_order(pipeline, label.exposure)
    outcome_columns = list(dict.fromkeys([EVENT_MS, *label.match.values()]))
    total = sum(_rows(root, f.path) for files in exposures.values() for f in files)
    watermark = tables.watermark_ms
    report = BackfillReport(out=target.url, from_ms=from_ms, to_ms=to_ms)
    hours = sorted(exposures)

    def read(hour_ms: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        files = exposures[hour_ms]
        events = pl.from_arrow(root.read_parquet([f.path for f in files], columns=columns))
        assert isinstance(events, pl.DataFrame)
        if len(files) > 1:  # each lake file is sorted already; several must be merged
            events = events.sort(order, maintain_order=True)
        low, high = outcome_range_ms(label, hour_ms, hour_ms + MS_PER_HOUR)
        return events, _read_range(root, outcome_files, outcome_columns, low, high)

    def work(hour_ms: int) -> tuple[int, pa.Table | None]:
        events, outcomes = read(hour_ms)
        seen = events.height
        events = events.filter((pl.col(EVENT_MS) >= from_ms) & (pl.col(EVENT_MS) < to_ms))
        if events.height == 0:
            return seen, None
        return seen, _rows_of(pipeline, tables, features, events, outcomes, event_id, watermark)

    done = 0
    # Two workers read and compute hours side by side (Arrow, numpy and the compiled loops release
    # the GIL) and one thread writes, in hour order; at most a few hours are in memory at once.
    with ThreadPoolExecutor(WORKERS, "cw-backfill") as workers, ThreadPoolExecutor(1, "cw-write") as out_pool:
        tables.prepare_bulk_reads(features.tables(), workers)  # feed by feed, side by side
        queued: deque[tuple[int, Future[tuple[int, pa.Table | None]]]] = deque()
        upcoming = iter(hours)
        pending_write: Future[str] | None = None
        while True:
            while len(queued) < WORKERS + 1 and (hour := next(upcoming, None)) is not None:
                queued.append((hour, workers.submit(work, hour)))
            if not queued:
                break
            hour_ms, job = queued.popleft()
            seen, table = job.result()
            done += seen
            if table is not None:
                table = writer.keep(table)
            if table is not None and table.num_rows:
                if pending_write is not None:
                    report.files.append(pending_write.result())
                pending_write = out_pool.submit(writer.write, hour_ms, table)
                report.rows += table.num_rows
                report.positives += int(np.count_nonzero(table.column(label.name).to_numpy()))
                report.mature += int(
                    np.count_nonzero(table.column("label_mature").to_numpy(zero_copy_only=False))
                )
                report.partitions += 1
            if progress is not None:
                progress(done, total)
        if pending_write is not None:
            report.files.append(pending_write.result())
    report.bytes = writer.bytes
    report.seconds = time.perf_counter() - started
    report.immature_left_out, report.warnings = writer.immature_left_out, writer.warnings()
    writer.finish(
        {
            "pipeline": pipeline.name,
            "fingerprint": pipeline.fingerprint(),
            "from_ms": from_ms,
            "to_ms": to_ms,
            "rows": report.rows,
            "positives": report.positives,
            "watermark_ms": watermark,
            "horizon_ms": label.horizon,
        }
    )
    return report


def _rows_of(
    pipeline: Pipeline,
    tables: Tables,
    features: FeatureSet,
    events: pl.DataFrame,
    outcomes: pl.DataFrame,
    event_id: str | None,
    watermark: int | None,
) -> pa.Table:
    """The training rows of one partition's exposures."""
    assert pipeline.label is not None
    label = pipeline.label
    values = features.compute(tables, events)
    event_ms = events.get_column(EVENT_MS).to_numpy()
    labels = label_events(label, events, outcomes)
    mature = (
        np.zeros(len(event_ms), dtype=np.bool_)
        if watermark is None
        else event_ms + label.horizon <= watermark
    )
    ids = (
        events.get_column(event_id).cast(pl.String).to_arrow().cast(pa.string())
        if event_id
        else pa.nulls(events.height, pa.string())
    )
    columns: dict[str, pa.Array] = {"event_id": ids, "event_ms": pa.array(event_ms, pa.int64())}
    columns.update(values)
    columns[label.name] = pa.array(labels, pa.int8())
    columns["label_mature"] = pa.array(mature, pa.bool_())
    return pa.table(columns)


def exposure_rows(
    pipeline: Pipeline, tables: Tables, events: pl.DataFrame, outcomes: pl.DataFrame, watermark: int | None
) -> pa.Table:
    """Training rows for exposure events (lake columns), labelled from ``outcomes``: the same rows
    the backfill writes. Used by the streaming row emitter and ``verify``."""
    assert pipeline.label is not None
    event_id = pipeline.streams[pipeline.label.exposure].event_id
    return _rows_of(pipeline, tables, FeatureSet(pipeline), events, outcomes, event_id, watermark)


def exposure_columns(pipeline: Pipeline, features: FeatureSet) -> list[str]:
    """The lake columns a training row reads from its exposure event."""
    assert pipeline.label is not None
    event_id = pipeline.streams[pipeline.label.exposure].event_id
    ids = [event_id] if event_id else []
    return list(dict.fromkeys([EVENT_MS, ARRIVAL_MS, *ids, *features.input_fields(), *pipeline.label.match]))


def lake_order(pipeline: Pipeline, stream: str) -> list[str]:
    """The lake's order of a stream's events: time, then event id, then arrival (the tie-break)."""
    event_id = pipeline.streams[stream].event_id
    return [EVENT_MS, *([event_id] if event_id else []), ARRIVAL_MS]


def _prepare(target: Root, overwrite: bool) -> None:
    existing = target.list_files("")
    if not existing:
        return
    if any(path.startswith(("lake/", "tables/", "deadletters/")) for path in existing):
        raise DatasetError(
            f"{target.url} holds a clickwise root (lake, tables); write the training set elsewhere"
        )
    if not overwrite:
        raise DatasetError(
            f"{target.url} already holds {len(existing)} files; choose an empty folder or pass --overwrite"
        )
    for path in existing:
        target.delete(path)


def _by_hour(files: list[LakeFile]) -> dict[int, list[LakeFile]]:
    hours: dict[int, list[LakeFile]] = {}
    for f in files:
        hours.setdefault(f.hour_ms, []).append(f)
    return hours


def _read_range(root: Root, files: list[LakeFile], columns: list[str], low: int, high: int) -> pl.DataFrame:
    wanted = [f.path for f in files if f.hour_ms + MS_PER_HOUR > low and f.hour_ms < high]
    if not wanted:
        return pl.DataFrame(schema={c: pl.Int64 if c == EVENT_MS else pl.String for c in columns})
    frame = pl.from_arrow(root.read_parquet(wanted, columns=columns))
    assert isinstance(frame, pl.DataFrame)
    return frame.filter((pl.col(EVENT_MS) >= low) & (pl.col(EVENT_MS) < high))


def _rows(root: Root, path: str) -> int:
    return int(pq.ParquetFile(root.path(path), filesystem=root.fs).metadata.num_rows)
