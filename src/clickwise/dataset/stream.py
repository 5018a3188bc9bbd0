"""Streaming training rows: emitted as the watermark passes each exposure's ``t + horizon``.

After each update of the tables, :meth:`RowEmitter.emit` writes the rows of exposures whose label
window has closed (``t + horizon <= watermark``): features as they are at ``t`` in the tables at
that moment (what a decision at ``t`` saw, unless events arrive later than the allowed lateness),
and the label from the outcomes stored so far; a negative is emitted at expiry, not never. An
outcome that arrives after its exposure's row was emitted with label 0 gives a **correction row**:
the same exposure with label 1 and ``correction`` true (readers keep the last row per exposure).
An exposure that itself arrives after its window closed is emitted at once.

Rows go to ``<root>/rows/`` in the backfill's layout (``date=/hour=/part-<pass>.parquet`` by the
exposure's hour, plus ``_dataset.json``) with one more column, ``correction``. The emitter's
progress (``rows/_emitter.json``) is replaced only after a pass's files are written, and files of a
pass it does not name are deleted on open, so a crash never emits a row twice or loses one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from clickwise.dataset.backfill import exposure_columns, exposure_rows, lake_order
from clickwise.dataset.writer import META_FILE, DatasetError
from clickwise.events.compaction import translate
from clickwise.events.lake import Lake, partition_hour_ms
from clickwise.events.validate import EVENT_MS
from clickwise.features import FeatureSet
from clickwise.labels import label_events
from clickwise.spec import Pipeline
from clickwise.storage import Root
from clickwise.tables.engine import Tables
from clickwise.time import MS_PER_HOUR, format_ms

ROWS = "rows"
STATE = f"{ROWS}/_emitter.json"
CORRECTION = "correction"


@dataclass
class EmitterState:
    """Which lake files the emitter has handled and up to which exposure time rows are out."""

    sequence: int = 0
    mark_ms: int | None = None  # exposures with t < mark_ms in handled files are emitted
    exposures: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    rows: int = 0
    corrections: int = 0

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__, option=orjson.OPT_INDENT_2)


@dataclass
class EmitReport:
    """One pass of the emitter."""

    rows: int = 0
    positives: int = 0
    corrections: int = 0
    mark_ms: int | None = None
    files: list[str] = field(default_factory=list)


class RowEmitter:
    """Emits the training rows of a pipeline's exposures as their label windows close."""

    def __init__(self, pipeline: Pipeline, root: Root) -> None:
        if pipeline.label is None:
            raise DatasetError("the pipeline has no label: there are no training rows to emit")
        self.pipeline = pipeline
        self.label = pipeline.label
        self.root = root
        self.features = FeatureSet(pipeline)
        self.state = self._load()
        self._remove_unnamed()

    def _load(self) -> EmitterState:
        return _saved_state(self.root) or EmitterState()

    def _remove_unnamed(self) -> None:
        """Row files of a pass that never finished (its number is past the saved state's)."""
        for path in self.root.list_files(ROWS, suffix=".parquet"):
            number = path.rsplit("part-", 1)[-1].removesuffix(".parquet")
            if number.isdigit() and int(number) > self.state.sequence:
                self.root.delete(path)

    def emit(self, tables: Tables, *, event_floor_ms: int | None = None) -> EmitReport:
        """Write the rows (and corrections) that the tables' current watermark makes final.

        ``event_floor_ms`` (from broker sources: events older than it may still be unread) holds
        the watermark at ``event_floor_ms - allowed_lateness``, so rows do not depend on how far
        each partition happened to be read.
        """
        report = EmitReport(mark_ms=self.state.mark_ms)
        watermark = tables.watermark_ms
        if watermark is not None and event_floor_ms is not None:
            watermark = min(watermark, event_floor_ms - self.pipeline.allowed_lateness)
        if watermark is None:
            return report
        state = self.state
        old_mark = state.mark_ms
        new_mark = watermark - self.label.horizon + 1  # t + horizon <= watermark
        if old_mark is not None:
            new_mark = max(new_mark, old_mark)
        lake = Lake(self.root, self.pipeline)
        applied = self._follow_compactions(lake, tables.applied_files())
        handled = set(state.exposures)
        exposure_files = [f for f in lake.files(self.label.exposure) if f.path in applied]
        fresh = [f.path for f in exposure_files if f.path not in handled]
        due = [
            f.path
            for f in exposure_files
            if f.path in handled
            and old_mark is not None
            and f.hour_ms < new_mark
            and f.hour_ms + MS_PER_HOUR > old_mark
        ]
        seen_outcomes = set(state.outcomes)
        outcome_files = [f for f in lake.files(self.label.outcome) if f.path in applied]
        new_outcomes = [f.path for f in outcome_files if f.path not in seen_outcomes]

        events = self._read(fresh, due, old_mark, new_mark)
        parts: list[pa.Table] = []
        if events.height:
            outcomes = self._outcomes([f.path for f in outcome_files], events)
            rows = exposure_rows(self.pipeline, tables, events, outcomes, watermark)
            parts.append(rows.append_column(CORRECTION, pa.array(np.zeros(rows.num_rows, dtype=np.bool_))))
        corrections = self._corrections(
            tables, lake, handled, old_mark, outcome_files, new_outcomes, watermark
        )
        if corrections is not None and corrections.num_rows:
            parts.append(corrections)
            report.corrections = corrections.num_rows
        state.sequence += 1
        if parts:
            table = pa.concat_tables(parts)
            report.rows = table.num_rows - report.corrections
            report.positives = int(np.count_nonzero(table.column(self.label.name).to_numpy()))
            report.files = self._write(table, state.sequence)
        state.mark_ms = new_mark
        state.exposures.extend(fresh)
        state.outcomes.extend(new_outcomes)
        state.rows += report.rows
        state.corrections += report.corrections
        self._describe()
        self.root.write_bytes(STATE, state.to_bytes())
        report.mark_ms = new_mark
        return report

    def _follow_compactions(self, lake: Lake, applied: set[str]) -> set[str]:
        """Name merged lake files instead of the files they replaced (see
        :mod:`clickwise.events.compaction`; the state on disk follows when this pass saves it),
        in the state and in ``applied``, the tables' list (which a merge since their last update
        has not renamed yet); returns ``applied`` so renamed."""
        state = self.state
        merged = lake.replacements(self.label.exposure)
        state.exposures = translate(state.exposures, merged) if merged else state.exposures
        if self.label.outcome != self.label.exposure:
            merged = [*merged, *lake.replacements(self.label.outcome)]
        state.outcomes = translate(state.outcomes, merged) if merged else state.outcomes
        return set(translate(list(applied), merged)) if merged else applied

    def _columns(self) -> list[str]:
        return exposure_columns(self.pipeline, self.features)

    def _read(self, fresh: list[str], due: list[str], old_mark: int | None, new_mark: int) -> pl.DataFrame:
        """Exposures to emit now: those of new files before the mark, those of handled files between
        the old mark and the new one."""
        frames = []
        columns = self._columns()
        if fresh:
            frame = _frame(self.root.read_parquet(fresh, columns=columns))
            frames.append(frame.filter(pl.col(EVENT_MS) < new_mark))
        if due and old_mark is not None:
            frame = _frame(self.root.read_parquet(due, columns=columns))
            frames.append(frame.filter((pl.col(EVENT_MS) >= old_mark) & (pl.col(EVENT_MS) < new_mark)))
        if not frames:
            return pl.DataFrame()
        order = lake_order(self.pipeline, self.label.exposure)
        return pl.concat(frames, how="vertical_relaxed").sort(order, maintain_order=True)

    def _outcomes(self, paths: list[str], exposures: pl.DataFrame) -> pl.DataFrame:
        """The outcomes stored so far that can label ``exposures``."""
        columns = list(dict.fromkeys([EVENT_MS, *self.label.match.values()]))
        if not paths or exposures.height == 0:
            return pl.DataFrame(schema={c: pl.Int64 if c == EVENT_MS else pl.String for c in columns})
        times = exposures.get_column(EVENT_MS)
        low = int(times.min()) - self.label.tolerance  # type: ignore[arg-type]
        high = int(times.max()) + self.label.horizon  # type: ignore[arg-type]
        wanted = [p for p in paths if _overlaps(p, low, high)]
        if not wanted:
            return pl.DataFrame(schema={c: pl.Int64 if c == EVENT_MS else pl.String for c in columns})
        frame = _frame(self.root.read_parquet(wanted, columns=columns))
        return frame.filter((pl.col(EVENT_MS) >= low) & (pl.col(EVENT_MS) < high))

    def _corrections(
        self,
        tables: Tables,
        lake: Lake,
        handled: set[str],
        old_mark: int | None,
        outcome_files: list[Any],
        new_outcomes: list[str],
        watermark: int,
    ) -> pa.Table | None:
        """Rows emitted earlier with label 0 whose label a newly stored outcome turns to 1."""
        if not new_outcomes or old_mark is None or not handled:
            return None
        label = self.label
        columns = list(dict.fromkeys([EVENT_MS, *label.match.values()]))
        fresh = _frame(self.root.read_parquet(new_outcomes, columns=columns))
        if fresh.height == 0:
            return None
        times = fresh.get_column(EVENT_MS)
        low = int(times.min()) - label.horizon + 1  # type: ignore[arg-type]
        high = min(int(times.max()) + label.tolerance + 1, old_mark)  # type: ignore[arg-type]
        if high <= low:
            return None
        paths = [f.path for f in lake.files(label.exposure, low, high) if f.path in handled]
        if not paths:
            return None
        exposures = _frame(self.root.read_parquet(paths, columns=self._columns()))
        exposures = exposures.filter((pl.col(EVENT_MS) >= low) & (pl.col(EVENT_MS) < high))
        if exposures.height == 0:
            return None
        known = [f.path for f in outcome_files if f.path not in set(new_outcomes)]
        before = label_events(label, exposures, self._outcomes(known, exposures))
        now = label_events(
            label, exposures, pl.concat([self._outcomes(known, exposures), fresh], how="vertical_relaxed")
        )
        flipped = exposures.filter(pl.Series((before == 0) & (now == 1)))
        if flipped.height == 0:
            return None
        outcomes = pl.concat([self._outcomes(known, flipped), fresh], how="vertical_relaxed")
        rows = exposure_rows(self.pipeline, tables, flipped, outcomes, watermark)
        return rows.append_column(CORRECTION, pa.array(np.ones(rows.num_rows, dtype=np.bool_)))

    def _write(self, table: pa.Table, sequence: int) -> list[str]:
        hours = table.column("event_ms").to_numpy() // MS_PER_HOUR
        files = []
        for hour in np.unique(hours).tolist():
            stamp = format_ms(hour * MS_PER_HOUR)
            path = f"{ROWS}/date={stamp[:10]}/hour={stamp[11:13]}/part-{sequence:08d}.parquet"
            self.root.write_parquet(path, table.filter(pa.array(hours == hour)))
            files.append(path)
        return files

    def _describe(self) -> None:
        description = {
            "pipeline": self.pipeline.name,
            "fingerprint": self.pipeline.fingerprint(),
            "label": self.label.name,
            "horizon_ms": self.label.horizon,
            "format": "parquet",
            "stream": True,
            "columns": [
                "event_id",
                "event_ms",
                *self.features.names,
                self.label.name,
                "label_mature",
                CORRECTION,
            ],
            "features": [info.to_json() for info in self.features.infos],
            "rows": self.state.rows,
            "corrections": self.state.corrections,
            "mark_ms": self.state.mark_ms,
        }
        self.root.write_bytes(f"{ROWS}/{META_FILE}", orjson.dumps(description, option=orjson.OPT_INDENT_2))


def _saved_state(root: Root) -> EmitterState | None:
    if not root.exists(STATE):
        return None
    return EmitterState(**orjson.loads(root.read_bytes(STATE)))


def handled_files(root: Root) -> set[str] | None:
    """The lake files that the row emitter's saved state names (None when no emitter has run at
    ``root``): merging only files it names keeps its list translatable."""
    state = _saved_state(root)
    return None if state is None else set(state.exposures) | set(state.outcomes)


def read_rows(root: Root, prefix: str = ROWS) -> pl.DataFrame:
    """Every emitted row with corrections applied: a correction replaces the row of its exposure
    (matched by event id and time, or, for streams without an id, by time and feature values)."""
    paths = sorted(root.list_files(prefix, suffix=".parquet"), key=lambda p: p.rsplit("part-", 1)[-1])
    if not paths:
        return pl.DataFrame()
    frame = _frame(root.read_parquet(paths))
    if CORRECTION not in frame.columns:
        return frame
    fixes = frame.filter(pl.col(CORRECTION))
    rows = frame.filter(~pl.col(CORRECTION))
    if fixes.height == 0:
        return rows
    first = frame.columns.index("event_ms") + 1
    features = [c for c in frame.columns[first:] if c not in ("label_mature", CORRECTION)][:-1]
    with_id, without_id = (
        rows.filter(pl.col("event_id").is_not_null()),
        rows.filter(pl.col("event_id").is_null()),
    )
    fixes = fixes.unique(maintain_order=True)
    kept = with_id.join(
        fixes.filter(pl.col("event_id").is_not_null()), on=["event_id", "event_ms"], how="anti"
    )
    kept_without = without_id.join(
        fixes.filter(pl.col("event_id").is_null()), on=["event_ms", *features], how="anti", nulls_equal=True
    )
    return pl.concat([kept, kept_without, fixes], how="vertical_relaxed").sort(
        "event_ms", maintain_order=True
    )


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _overlaps(path: str, low: int, high: int) -> bool:
    hour = partition_hour_ms(path)
    return hour is None or (hour + MS_PER_HOUR > low and hour < high)
