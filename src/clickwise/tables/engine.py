"""The lookup tables of a pipeline: applied from the lake, durable, readable as of any moment.

>>> from clickwise.testing import small_pipeline
>>> import tempfile, clickwise.storage as storage
>>> tables = Tables.open(small_pipeline(), storage.open_root(tempfile.mkdtemp()))
>>> tables.get_one("user", "nobody", as_of_ms=1_700_000_000_000)
{'views_1h': 0, 'clicks_1h': 0}
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from clickwise.errors import ClickwiseError
from clickwise.events.compaction import translate
from clickwise.events.deadletters import DeadLetterBatch, DeadLetters
from clickwise.events.lake import Lake, Replacement, file_event_range, partition_hour_ms
from clickwise.memory import release_free_memory, reused_memory
from clickwise.spec import Pipeline
from clickwise.storage import Root
from clickwise.tables.batch import Column, Pairs, evaluate_feed_batch, finish_ratios_batch, prepare_bulk
from clickwise.tables.evaluate import evaluate_feed, finish_ratios, prepare_run
from clickwise.tables.feeds import Feed, RatioPlan, table_feeds, table_ratios
from clickwise.tables.hashing import hash_text, hash_texts
from clickwise.tables.joins import join_key_hashes, resolve
from clickwise.tables.retention import (
    NOTHING_SEEN,
    ArrivalWatermarks,
    drop_cutoff_ms,
    exact_from_ms,
    feed_retention_ms,
)
from clickwise.tables.runs import (
    KEY_SEPARATOR,
    Run,
    RunBuilder,
    drop_before,
    key_text,
    merge_runs,
    read_key_texts,
)
from clickwise.tables.sorting import count_late, time_order
from clickwise.tables.state import (
    EXPIRED_PREFIX,
    Checkpoint,
    StateError,
    load_checkpoint,
    remove_unreferenced,
    save_checkpoint,
)
from clickwise.time import Clock, SystemClock, format_duration_ms, format_ms

MAX_RUNS = 6
"""Runs per feed before compaction merges them (size-tiered: small runs merge first)."""
TIER_RATIO = 2
WINDOW_ROWS = 4_000_000
"""Lake events applied at once during a catch-up (bounds the events in memory; a window is whole
hours)."""
BUILD_ROWS = 30_000_000
"""Lake events whose feed rows a catch-up gathers before grouping them into runs (bounds the
memory they take: the adclick tables hold about 120 bytes per event, and a 27M-event catch-up
peaks at 5.0-5.4 GiB, memory kept for reuse included). One catch-up below this builds one run per
feed: each event is sorted by key once, and nothing is left to merge."""
CHECKPOINT_INTERVAL_S = 30.0
"""During a long catch-up, a checkpoint after the first window that ends this long after the last
one (and one at the end): a crash loses at most this much work, never an event (the lake is the
log). Kafka Streams commits every 30 s by default too."""
LIVE_CHECKPOINT_S = 10.0
"""Live loops (``clickwise run``, ``clickwise serve``) apply events in memory and start a background
checkpoint at most this often (and write one when they stop)."""
SEEN_MS = "_seen_ms"
"""A column of events being applied: the highest event time that arrived before each (retention)."""
DROPPED_BEFORE = "dropped_before_ms."
"""Counter prefix: per table, the time before which its state was dropped (reads before its
horizon are refused)."""


class TableReadError(ClickwiseError):
    """A table, key or time that cannot be read."""


@dataclass
class UpdateReport:
    """What one :meth:`Tables.catch_up` applied."""

    files: int = 0
    events: dict[str, int] = field(default_factory=dict)
    late: int = 0
    expired: int = 0
    pending: int = 0
    watermark_ms: int | None = None


Progress = Callable[[int, int], None]


class Tables:
    """Every lookup table of one pipeline at one root."""

    def __init__(self, pipeline: Pipeline, root: Root, checkpoint: Checkpoint, clock: Clock) -> None:
        self.pipeline = pipeline
        self.root = root
        self.clock = clock
        self._checkpoint = checkpoint
        self._feeds: dict[str, list[Feed]] = {name: table_feeds(pipeline, name) for name in pipeline.tables}
        self._ratios: dict[str, list[RatioPlan]] = {
            name: table_ratios(table) for name, table in pipeline.tables.items()
        }
        self._runs: dict[str, list[Run]] = {}  # the updater's working state
        self._building: dict[str, RunBuilder] = {}  # applied events not grouped into runs yet
        self._building_events = 0
        self._loaded: dict[str, list[Run]] = {}  # runs as named by the checkpoint, in its order
        self._pending: dict[str, pl.DataFrame] = {}
        self._merged: dict[str, tuple[tuple[int, ...], Run]] = {}  # bulk reads: one run per feed
        self._dirty = False  # applied in memory, not checkpointed yet
        self._background: _Writing | None = None  # a checkpoint being written on its own thread
        # What reads see: the state as of the last finished update, published in one step, so a
        # read never sees half of an update and an update never waits for reads to finish.
        self.lock = threading.RLock()
        self._view: dict[str, tuple[Run, ...]] = {}
        self._view_high: int | None = None  # the highest event time in the published state
        self._view_counters: dict[str, int] = {}
        self._view_horizons = False  # some table dropped state: reads check its horizon
        self._marks: ArrivalWatermarks | None = None  # of the catch-up being applied
        self._footers: dict[str, tuple[int, int, int]] = {}

    # --- opening and persistence --------------------------------------------------------------

    @classmethod
    def open(
        cls,
        pipeline: Pipeline,
        root: Root,
        *,
        clock: Clock | None = None,
        rebuild: bool = False,
        threads: int = 1,
    ) -> Tables:
        """Load the state at ``root`` (empty when there is none).

        ``rebuild`` discards the state; the next :meth:`catch_up` replays the whole lake.
        ``threads`` state files are decoded at once: faster, at a higher peak of memory (a
        service keeps the default of one; a backfill, which has the memory, uses more).
        """
        checkpoint = load_checkpoint(root, pipeline, rebuild=rebuild)
        if rebuild:
            save_checkpoint(root, checkpoint)
        remove_unreferenced(root, checkpoint)
        tables = cls(pipeline, root, checkpoint, clock or SystemClock())
        feeds = {feed.name: feed for table_feeds in tables._feeds.values() for feed in table_feeds}
        sizes = root.sizes(path for paths in checkpoint.runs.values() for path in paths)
        # the largest files first, while little else is resident: a lower peak
        by_size = sorted(checkpoint.runs.items(), key=lambda item: -sum(sizes[path] for path in item[1]))

        def load(item: tuple[str, list[str]]) -> list[Run]:
            feed_name, paths = item
            runs = [_load_run(root, path, feeds[feed_name].summed_columns) for path in paths]
            release_free_memory()  # each file's decoding buffers, before the next file's
            return runs

        if threads > 1 and len(by_size) > 1:  # decoding and the numpy work release the GIL
            with ThreadPoolExecutor(threads, thread_name_prefix="cw-load") as pool:
                # the first compiled call of a process sets numba up (about 0.3 s): meanwhile
                pool.submit(hash_texts, pa.array([""]))
                loaded = dict(zip((name for name, _ in by_size), pool.map(load, by_size), strict=True))
        else:
            loaded = {name: load((name, paths)) for name, paths in by_size}
        for feed_name in checkpoint.runs:
            tables._runs[feed_name] = loaded[feed_name]
            tables._loaded[feed_name] = list(loaded[feed_name])
        for stream, path in checkpoint.pending.items():
            tables._pending[stream] = pl.from_arrow(root.read_parquet([path]))  # type: ignore[assignment]
        tables._publish()
        release_free_memory()  # decoding the run files left hundreds of MB free in the allocators
        return tables

    def _publish(self) -> None:
        """Make the working state the one reads see (under :attr:`lock`: a reader holding it sees
        one state from start to end)."""
        view = {name: tuple(runs) for name, runs in self._runs.items()}
        known = {id(run) for runs in self._view.values() for run in runs}
        for feeds in self._feeds.values():
            for feed in feeds:
                for run in view.get(feed.name, ()):
                    if id(run) not in known:
                        prepare_run(feed, run)
        counters = dict(self._checkpoint.counters)
        with self.lock:
            self._view, self._view_high = view, counters.get("max_event_ms")
            self._view_counters = counters
            self._view_horizons = any(name.startswith(DROPPED_BEFORE) for name in counters)

    @property
    def watermark_ms(self) -> int | None:
        """Highest event time applied minus the pipeline's allowed lateness."""
        high = self._checkpoint.counters.get("max_event_ms")
        return None if high is None else high - self.pipeline.allowed_lateness

    def applied_files(self) -> set[str]:
        """The lake files whose events the tables hold."""
        return set(self._checkpoint.applied)

    def run_counts(self) -> dict[str, int]:
        """How many runs each feed has (reads visit each)."""
        return {name: len(runs) for name, runs in self._view.items()}

    def pending_count(self) -> int:
        """Joined events still waiting for their join to resolve."""
        return sum(frame.height for frame in self._pending.values())

    def counters(self) -> dict[str, int]:
        """Late, expired and pending counts and the highest event time, as of the last update."""
        return dict(self._view_counters)

    # --- updating -----------------------------------------------------------------------------

    def catch_up(
        self,
        progress: Progress | None = None,
        *,
        window_rows: int = WINDOW_ROWS,
        files: dict[str, list[str]] | None = None,
        persist: bool = True,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> UpdateReport:
        """Apply every lake event not applied yet, in event-time windows of whole hours of about
        ``window_rows`` events (progress counts events). A checkpoint follows the last window and
        each window that ends ``checkpoint_interval_s`` or more after the previous checkpoint
        (0: after every window).

        ``files`` (per stream, files of finished ingests) limits the pass to those files: a caller
        that just wrote them saves listing the whole lake.

        ``persist=False`` applies the events in memory only; :meth:`checkpoint` writes them later.
        Nothing is lost meanwhile: the events are in the lake, and a restart applies every lake
        file the last checkpoint does not name (the lake is the log, the checkpoint a summary).
        """
        self._finish_background(wait=False)
        lake = Lake(self.root, self.pipeline)
        listed: dict[str, list[str]] = {}
        replacements: list[Replacement] = []
        for stream in self._streams_in_order():
            if files is None:
                listed[stream], merged = lake.catalog(stream)
                replacements.extend(merged)
            else:
                listed[stream] = files.get(stream, [])
        self.follow_compactions(replacements)
        applied = set(self._checkpoint.applied)
        todo: dict[int, dict[str, list[str]]] = {}
        for stream, candidates in listed.items():
            for path in candidates:
                if path not in applied:
                    todo.setdefault(_hour_of(path), {}).setdefault(stream, []).append(path)
        report = UpdateReport()
        windows = self._windows(todo, window_rows)
        self._marks = self._arrival_watermarks(todo)
        many = len(windows) > 1  # then the final compaction below checkpoints
        with reused_memory() if many else contextlib.nullcontext():  # (large arrays, again and again)
            self._apply_windows(
                windows, report, progress, persist=persist, checkpoint_interval_s=checkpoint_interval_s
            )
            self._build_runs()
            if many:
                self.compact()
        self._publish()
        report.watermark_ms = self.watermark_ms
        report.pending = self.pending_count()
        return report

    def follow_compactions(self, replacements: Sequence[Replacement]) -> None:
        """Name merged lake files instead of the files they replaced in the list of files applied
        (see :mod:`clickwise.events.compaction`; the next checkpoint saves it). A full
        :meth:`catch_up` does this itself; callers that pass ``files`` call it after merging.
        Serialize it with updates, like :meth:`catch_up`."""
        if not replacements:
            return
        named = translate(self._checkpoint.applied, replacements)
        if set(named) != set(self._checkpoint.applied):
            self._checkpoint.applied, self._dirty = named, True

    def _apply_windows(
        self,
        windows: list[tuple[dict[str, list[str]], int]],
        report: UpdateReport,
        progress: Progress | None,
        *,
        persist: bool,
        checkpoint_interval_s: float,
    ) -> None:
        total = sum(rows for _, rows in windows)
        done = 0
        checkpointed = time.monotonic()
        for number, (files, rows) in enumerate(windows, 1):
            if number == len(windows):
                now = persist and len(windows) == 1
            else:
                now = persist and time.monotonic() - checkpointed >= checkpoint_interval_s
            self._apply_window(files, report, persist=now)
            if now:
                checkpointed = time.monotonic()
            done += rows
            if progress is not None:
                progress(done, total)

    def _streams_in_order(self) -> list[str]:
        """Streams without joins first, so that a joined event finds what arrived with it."""
        streams = list(self.pipeline.streams)
        return sorted(streams, key=lambda s: bool(self.pipeline.streams[s].joins))

    def _windows(
        self, todo: dict[int, dict[str, list[str]]], window_rows: int
    ) -> list[tuple[dict[str, list[str]], int]]:
        """Group hours into windows of about ``window_rows`` events (row counts from file footers)."""
        windows: list[tuple[dict[str, list[str]], int]] = []
        current: dict[str, list[str]] = {}
        rows = 0
        for hour in sorted(todo):
            for stream, paths in todo[hour].items():
                current.setdefault(stream, []).extend(paths)
                rows += sum(self._rows(path) for path in paths)
            if rows >= window_rows:
                windows.append((current, rows))
                current, rows = {}, 0
        if current:
            windows.append((current, rows))
        return windows

    def _arrival_watermarks(self, todo: dict[int, dict[str, list[str]]]) -> ArrivalWatermarks | None:
        """The watermark each event of this pass arrived to, when any event could be past a
        retention (``None`` otherwise: footers show every event is within the shortest one)."""
        paths = [path for streams in todo.values() for paths in streams.values() for path in paths]
        if not paths:
            return None
        ranges = [self._footer(path) for path in paths]
        high = self._checkpoint.counters.get("max_event_ms")
        lowest = min(low for _, low, _ in ranges)
        highest = max([top for _, _, top in ranges] + ([] if high is None else [high]))
        shortest = min(table.retention for table in self.pipeline.tables.values())
        if lowest >= highest - self.pipeline.allowed_lateness - shortest:
            return None
        times = self.root.read_frame(paths, columns=["_event_ms", "_arrival_ms"])
        return ArrivalWatermarks.of(
            times.get_column("_event_ms").to_numpy(), times.get_column("_arrival_ms").to_numpy(), high
        )

    def _columns(self, stream: str) -> list[str]:
        """The lake columns the tables read from a stream (feeds' inputs and join keys)."""
        names: dict[str, None] = dict.fromkeys(["_event_ms", "_arrival_ms"])
        outputs = {output for join in self.pipeline.streams[stream].joins for output in join.take}
        for feeds in self._feeds.values():
            for feed in feeds:
                if feed.stream == stream:
                    names.update(dict.fromkeys(f for f in feed.input_fields() if f not in outputs))
        for join in self.pipeline.streams[stream].joins:
            names.update(dict.fromkeys(join.key.values()))
        return list(names)

    def _rows(self, path: str) -> int:
        return self._footer(path)[0]

    def file_event_range(self, path: str) -> tuple[int, int, int]:
        """Rows and the lowest and highest event time of a lake file, from its footer (read once:
        catching up reads it too)."""
        return self._footer(path)

    def _footer(self, path: str) -> tuple[int, int, int]:
        """Rows and the lowest and highest event time of a lake file, from its footer."""
        cached = self._footers.get(path)
        if cached is None:
            cached = self._footers[path] = file_event_range(self.root, path)
            if len(self._footers) > 100_000:
                self._footers.clear()
        return cached

    def _apply_window(self, files: dict[str, list[str]], report: UpdateReport, *, persist: bool) -> None:
        counters = self._checkpoint.counters
        batches: dict[str, pl.DataFrame] = {}
        for stream in self._streams_in_order():
            paths = files.get(stream)
            if paths:
                events = self.root.read_frame(paths, columns=self._columns(stream))
                if self._marks is not None:
                    seen = self._marks.seen(events.get_column("_arrival_ms").to_numpy())
                    events = events.with_columns(pl.Series(SEEN_MS, seen, dtype=pl.Int64))
                batches[stream] = _in_time_order(events)  # runs need time order
                report.files += len(paths)
                report.events[stream] = report.events.get(stream, 0) + events.height
        late = self._count_late(list(batches.values()))
        for stream, events in batches.items():
            self._apply_stream(stream, self._with_joins(stream, events), report)
        self._retry_pending(report)
        report.late += late
        counters["late_events"] = counters.get("late_events", 0) + late
        self._checkpoint.applied.extend(p for paths in files.values() for p in paths)
        self._building_events += sum(events.height for events in batches.values())
        self._dirty = True
        if persist or self._building_events >= BUILD_ROWS:
            self._build_runs()
        if persist:
            self.checkpoint()

    def _build_runs(self) -> None:
        """Group the events applied since the last call into one new run per feed (then compact
        feeds with too many runs)."""
        for feed_name, builder in self._building.items():
            run = builder.build()
            if run is not None:
                self._runs.setdefault(feed_name, []).append(run)
                self._compact(feed_name)
        self._building.clear()
        self._building_events = 0

    def checkpoint(self) -> bool:
        """Write what was applied in memory since the last checkpoint (runs, pending joins, the
        list of applied lake files) in one atomic step; ``False`` when there was nothing to write."""
        self._finish_background(wait=True)
        if not self._dirty:
            return False
        self._persist()
        return True

    def checkpoint_in_background(self) -> bool:
        """Start writing a checkpoint of the state as it is now on a thread of its own, so updates
        go on meanwhile (the caller serializes updates and this call, as for :meth:`catch_up`).
        ``False`` when nothing changed or a checkpoint is still being written.

        Run files are immutable and the checkpoint names only what this snapshot holds, so the
        state on disk is always a whole one: the last finished checkpoint's. Files it supersedes
        are deleted when the next update (or checkpoint) finds the write finished.
        """
        self._finish_background(wait=False)
        if self._background is not None or not self._dirty:
            return False
        plan = self._plan()
        self._dirty = False  # updates from now on make it dirty again
        thread = threading.Thread(target=plan.write, args=(self.root,), name="tables-checkpoint", daemon=True)
        self._background = _Writing(plan, thread)
        thread.start()
        return True

    def _finish_background(self, *, wait: bool) -> None:
        """Adopt a background checkpoint once written (waiting for it with ``wait``): the runs it
        named are on disk now; delete what it superseded. A failed write leaves the state dirty,
        to be written again, and raises its error."""
        writing = self._background
        if writing is None or (writing.thread.is_alive() and not wait):
            return
        writing.thread.join()
        self._background = None
        plan = writing.plan
        if plan.error is not None:
            self._dirty = True
            raise plan.error
        self._adopt(plan)

    def _count_late(self, batches: list[pl.DataFrame]) -> int:
        """Events whose time was already behind the watermark when they arrived (in arrival order);
        advances the highest event time seen."""
        if not batches:
            return 0
        event_ms = np.concatenate([b.get_column("_event_ms").to_numpy() for b in batches])
        arrival_ms = np.concatenate([b.get_column("_arrival_ms").to_numpy() for b in batches])
        previous = self._checkpoint.counters.get("max_event_ms", np.iinfo(np.int64).min)
        late, high = count_late(event_ms, arrival_ms, previous, self.pipeline.allowed_lateness)
        self._checkpoint.counters["max_event_ms"] = high
        return late

    def _with_joins(self, stream: str, events: pl.DataFrame) -> pl.DataFrame:
        for join in self.pipeline.streams[stream].joins:
            feed = next(
                f for f in self._feeds[join.table] if set(join.take.values()) <= {a.name for a in f.aggs}
            )
            runs = list(self._runs.get(feed.name, []))
            hashes = join_key_hashes(events, join, feed.key_fields)
            builder = self._building.get(feed.name)
            if builder is not None:  # events of this catch-up not in runs yet: the keys wanted
                wanted = hashes.drop_nulls().to_numpy()
                recent = builder.build(keys=wanted) if len(wanted) else None
                if recent is not None:
                    runs.append(recent)
            events = resolve(events, join, feed, runs, hashes)
        return events

    def _apply_stream(
        self,
        stream: str,
        events: pl.DataFrame,
        report: UpdateReport,
        *,
        only_waiting: bool = False,
    ) -> None:
        """Add the stream's events to every feed it has; an event whose join found nothing waits
        for the feeds that need the join's output. ``only_waiting`` retries just those feeds."""
        for table_name, feeds in self._feeds.items():
            for feed in feeds:
                if feed.stream != stream or (only_waiting and not feed.waits_for_join):
                    continue
                # too late for this table is decided on arrival, whether or not a join resolved
                batch = self._within_retention(table_name, feed, events, report)
                if feed.waits_for_join:
                    fields = feed.join_fields & set(feed.input_fields())
                    ready = pl.all_horizontal([pl.col(f).is_not_null() for f in fields])
                    self._hold(stream, batch.filter(~ready))
                    batch = batch.filter(ready)
                if batch.height:
                    self._building.setdefault(feed.name, RunBuilder(feed)).add(batch)

    def _within_retention(
        self, table_name: str, feed: Feed, events: pl.DataFrame, report: UpdateReport
    ) -> pl.DataFrame:
        """The events the table takes: those that arrived at most its retention (and, when the
        feed needs a join's output, each join table's) behind the watermark they arrived to.
        Events without a ``_seen_ms`` column could not be that late (see ``_arrival_watermarks``)."""
        if SEEN_MS not in events.columns or events.height == 0:
            return events
        stream = feed.stream
        retention, joined = feed_retention_ms(self.pipeline, feed)
        lateness = self.pipeline.allowed_lateness
        seen = events.get_column(SEEN_MS)
        expired = (seen > NOTHING_SEEN) & (events.get_column("_event_ms") < seen - lateness - retention)
        count = int(expired.sum())
        if not count:
            return events
        report.expired += count
        counters = self._checkpoint.counters
        counters["expired_events"] = counters.get("expired_events", 0) + count
        old = events.filter(expired)
        batch = DeadLetterBatch()
        reason = f"older than the {format_duration_ms(retention)} retention of table {table_name!r}"
        if retention < self.pipeline.tables[table_name].retention:
            reason += f" (the retention of the tables its join reads: {', '.join(joined)})"
        derived = [output for join in self.pipeline.streams[stream].joins for output in join.take]
        for row in old.select(pl.all().exclude("_arrival_ms", SEEN_MS, *derived)).iter_rows(named=True):
            batch.add(reason, "_event_ms", orjson.dumps(row, default=str).decode(), -1)
        tag = (
            f"{EXPIRED_PREFIX.removeprefix('part-')}{self._checkpoint.sequence + 1:08d}-{table_name}-{count}"
        )
        path = DeadLetters(self.root).write(
            stream, batch, source="tables", tag=tag, arrival_ms=self.clock.now_ms()
        )
        if path is not None:
            self._checkpoint.dead_letters.append(path)  # counts only once the checkpoint is saved
        return events.filter(~expired)

    def _hold(self, stream: str, events: pl.DataFrame) -> None:
        if events.height == 0:
            return
        held = self._pending.get(stream)
        self._pending[stream] = events if held is None else pl.concat([held, events], how="diagonal_relaxed")

    def _retry_pending(self, report: UpdateReport) -> None:
        """Joined events whose join found nothing get another try after each update."""
        for stream, held in list(self._pending.items()):
            joins = self.pipeline.streams[stream].joins
            outputs = [name for join in joins for name in join.take]
            retried = self._with_joins(stream, held.drop([c for c in outputs if c in held.columns]))
            retried = _in_time_order(retried)
            self._pending.pop(stream)
            self._apply_stream(stream, retried, report, only_waiting=True)
            self._expire_pending(stream)

    def _expire_pending(self, stream: str) -> None:
        held = self._pending.get(stream)
        watermark = self.watermark_ms
        if held is None or watermark is None:
            return
        longest = max(self.pipeline.tables[j.table].retention for j in self.pipeline.streams[stream].joins)
        kept = held.filter(pl.col("_event_ms") >= watermark - longest)
        if kept.height:
            self._pending[stream] = kept.unique(maintain_order=True)
        else:
            self._pending.pop(stream)

    def _persist(self) -> None:
        self._finish_background(wait=True)
        plan = self._plan()
        plan.write(self.root)
        if plan.error is not None:
            raise plan.error
        self._dirty = False
        self._adopt(plan)

    def _plan(self) -> _CheckpointPlan:
        """What a checkpoint of the current state writes: the runs not on disk yet, the pending
        joins, and the checkpoint naming them (a copy: updates go on changing the live one)."""
        self._build_runs()  # (a checkpoint names the files applied: their events must be in runs)
        live = self._checkpoint
        sequence = live.sequence + 1
        checkpoint = Checkpoint(
            live.fingerprint,
            sequence,
            applied=list(live.applied),
            counters=dict(live.counters),
            dead_letters=list(live.dead_letters),
        )
        plan = _CheckpointPlan(checkpoint)
        for feed_name, runs in self._runs.items():
            paths = live.runs.get(feed_name, [])
            known = dict(zip((id(r) for r in self._loaded.get(feed_name, [])), paths, strict=False))
            fresh_paths = []
            for number, run in enumerate(runs):
                path = known.get(id(run))
                if path is None:
                    path = f"tables/runs/{feed_name}/{sequence:08d}-{number:03d}.arrow"
                    plan.runs.append((path, run))
                fresh_paths.append(path)
            checkpoint.runs[feed_name] = fresh_paths
            plan.loaded[feed_name] = list(runs)
        for stream, held in self._pending.items():
            path = f"tables/pending/{stream}-{sequence:08d}.parquet"
            plan.pending.append((path, held))
            checkpoint.pending[stream] = path
        return plan

    def _adopt(self, plan: _CheckpointPlan) -> None:
        """Take a written checkpoint as the last one: it names the runs on disk from now on."""
        live = self._checkpoint
        live.sequence = max(live.sequence, plan.checkpoint.sequence)
        live.runs = plan.checkpoint.runs
        live.pending = plan.checkpoint.pending
        self._loaded = plan.loaded
        # what it supersedes; dead letters of updates since the snapshot are kept (the live
        # checkpoint names them, and they are only written, never superseded)
        remove_unreferenced(self.root, live)

    def compact(self) -> None:
        """Merge every feed's runs into one (and drop events past retention), then checkpoint.

        Reads visit one run per feed afterwards; answers do not change.
        """
        changed = False
        for feed_name, runs in self._runs.items():
            if len(runs) > 1:
                self._runs[feed_name] = [self._retained(feed_name, merge_runs(runs))]
                changed = True
        if changed or self._dirty:
            self._persist()
            self._publish()

    def _retained(self, feed_name: str, run: Run) -> Run:
        """The run without the events no read inside the table's retention needs any more (the
        table remembers the cut, and refuses reads before its horizon)."""
        watermark = self.watermark_ms
        if watermark is None:
            return run
        table = feed_name.split(".", 1)[0]
        cutoff = drop_cutoff_ms(self.pipeline.tables[table], watermark)
        kept = drop_before(run, cutoff)
        if kept is not run:
            counters = self._checkpoint.counters
            name = DROPPED_BEFORE + table
            counters[name] = max(counters.get(name, cutoff), cutoff)
        return kept

    def exact_from_ms(self, table: str) -> int | None:
        """The earliest read time of ``table`` answered exactly (``None``: any time): older state was
        dropped by its retention."""
        return exact_from_ms(self.pipeline.tables[table], self._view_counters.get(DROPPED_BEFORE + table))

    def _check_horizon(self, table: str, earliest_ms: int) -> None:
        exact_from = self.exact_from_ms(table)
        if exact_from is not None and earliest_ms < exact_from:
            retention = format_duration_ms(self.pipeline.tables[table].retention)
            raise TableReadError(
                f"table {table!r} no longer holds what a read as of {format_ms(earliest_ms)} needs: its "
                f"retention ({retention}) dropped older events; read as of {format_ms(exact_from)} or "
                "later, or raise the table's retention and rebuild (clickwise run --rebuild)"
            )

    def _compact(self, feed_name: str) -> None:
        runs = self._runs[feed_name]
        if len(runs) <= MAX_RUNS:
            return
        # size-tiered: merge the two smallest runs, and each next one while it is no more than
        # TIER_RATIO times what is merged so far; a large run is rewritten only once enough small
        # ones add up to its size (each event is rewritten about log(state / batch) times)
        ordered = sorted(runs, key=len)
        take, merged = 2, len(ordered[0]) + len(ordered[1])
        while take < len(ordered) and len(ordered[take]) <= TIER_RATIO * merged:
            merged += len(ordered[take])
            take += 1
        keep = sorted(ordered[take:], key=len, reverse=True)
        self._runs[feed_name] = [*keep, self._retained(feed_name, merge_runs(ordered[:take]))]

    # --- reading ------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """ "Now" for reads: the clock, but never before the newest event applied (so "now" sees
        every ingested event)."""
        high = self._view_high
        now = self.clock.now_ms()
        return now if high is None else max(now, high + 1)

    def get_one(self, table: str, key: Any, as_of_ms: int | None = None) -> dict[str, Any]:
        """The aggregations of one key as of ``as_of_ms`` (default: now); events at exactly
        ``as_of_ms`` are not included."""
        self._table_feeds(table)
        moment = self.now_ms() if as_of_ms is None else int(as_of_ms)
        return self.read_one(table, self._key_hash(table, key), moment)

    def read_one(self, table: str, key_hash: int | None, as_of_ms: int) -> dict[str, Any]:
        """:meth:`get_one` by key hash (from :meth:`key_hash`); ``None`` reads as a key without events."""
        if self._view_horizons:
            self._check_horizon(table, as_of_ms)
        values: dict[str, Any] = {}
        view = self._view  # one published state for every feed of the table
        key = np.uint64(key_hash or 0)  # (converted once for every feed)
        for feed in self._table_feeds(table):
            runs = view.get(feed.name, ()) if key_hash is not None else ()
            values.update(evaluate_feed(feed, runs, key, as_of_ms))
        finish_ratios(self._ratios[table], values)
        return {name: values[name] for name in self.pipeline.tables[table].aggregations}

    def get_many(self, table: str, keys: Sequence[Any], as_of_ms: int | None = None) -> list[dict[str, Any]]:
        """:meth:`get_one` for several keys at one moment (one bulk evaluation)."""
        moment = self.now_ms() if as_of_ms is None else int(as_of_ms)
        hashes = np.array([self._key_hash(table, key) for key in keys], dtype=np.uint64)
        result = self.get_batch(table, hashes, np.full(len(hashes), moment, dtype=np.int64))
        return result.to_pylist()

    def get_batch(
        self, table: str, key_hash: np.ndarray, as_of_ms: np.ndarray, known: np.ndarray | None = None
    ) -> pa.Table:
        """The aggregations for each pair (``key_hash[i]``, ``as_of_ms[i]``), one row per pair.

        Key hashes come from :func:`key_hashes` (or :meth:`key_hash`); ``known[i]`` False reads as
        a key without events. The bulk path of backfills and snapshots; equal to :meth:`get_one`.
        """
        columns = self.evaluate_batch(table, key_hash, as_of_ms, known)
        names = list(self.pipeline.tables[table].aggregations)
        return pa.table({name: columns[name].to_arrow() for name in names})

    def evaluate_batch(
        self, table: str, key_hash: np.ndarray, as_of_ms: np.ndarray, known: np.ndarray | None = None
    ) -> dict[str, Column]:
        """:meth:`get_batch` as numpy columns (values, validity, text labels)."""
        feeds = self._table_feeds(table)
        if self._view_horizons and len(as_of_ms):
            self._check_horizon(table, int(np.min(as_of_ms)))
        pairs = Pairs.of(key_hash, as_of_ms, known)
        columns: dict[str, Column] = {}
        view = self._view  # one published state for every feed of the table
        for feed in feeds:
            columns.update(evaluate_feed_batch(feed, self._single_run(view, feed.name), pairs))
        finish_ratios_batch(self._ratios[table], columns)
        return columns

    def prepare_bulk_reads(self, tables: Iterable[str], executor: Executor | None = None) -> None:
        """Build now what the first bulk reads of ``tables`` would build (each feed's runs merged
        into one, the links of distinct counts), the work split over ``executor`` when given."""
        view = self._view
        feeds = [feed for table in dict.fromkeys(tables) for feed in self._table_feeds(table)]
        if executor is None:
            runs = [self._single_run(view, feed.name) for feed in feeds]
        else:
            runs = list(executor.map(lambda feed: self._single_run(view, feed.name), feeds))
        for feed, run in zip(feeds, runs, strict=True):
            if run is not None:
                prepare_bulk(feed, run, executor)

    def _single_run(self, view: dict[str, tuple[Run, ...]], feed_name: str) -> Run | None:
        """The feed's runs merged into one for bulk reads (cached until the runs change)."""
        runs = view.get(feed_name, ())
        if not runs:
            return None
        if len(runs) == 1:
            return runs[0]
        identity = tuple(id(run) for run in runs)
        cached = self._merged.get(feed_name)
        if cached is None or cached[0] != identity:
            cached = self._merged[feed_name] = (identity, merge_runs(runs))
        return cached[1]

    def key_hash(self, table: str, key: Any) -> int:
        """The hash of one key of ``table`` (a value, a tuple or a dict of the key fields)."""
        return self._key_hash(table, key)

    def keys(self, table: str) -> list[str]:
        """The text of every key with at least one event in the table's state."""
        texts: set[str] = set()
        for feed in self._table_feeds(table):
            for run in self._view.get(feed.name, ()):
                texts.update(run.key_texts.to_pylist())
        return sorted(texts)

    def snapshot(self, table: str, as_of_ms: int | None = None) -> pa.Table:
        """Every key's aggregations as of ``as_of_ms`` (keys with an event before it)."""
        moment = self.now_ms() if as_of_ms is None else int(as_of_ms)
        key_fields = self.pipeline.tables[table].key
        texts = self._keys_before(table, moment)
        hashes = hash_texts(pa.array(texts, pa.string()))
        values = self.get_batch(table, hashes, np.full(len(texts), moment, dtype=np.int64))
        columns: dict[str, Any] = {}
        for position, name in enumerate(key_fields):
            columns[name] = pa.array([text.split(KEY_SEPARATOR)[position] for text in texts], pa.string())
        for name in values.column_names:
            columns[name] = values.column(name)
        return pa.table(columns)

    def _keys_before(self, table: str, moment: int) -> list[str]:
        texts: set[str] = set()
        for feed in self._table_feeds(table):
            for run in self._view.get(feed.name, ()):
                first = run.times[run.starts[:-1]]  # rows are in time order within a key
                early = np.flatnonzero(first < run.offsets([moment])[0])
                if len(early):
                    texts.update(run.key_texts.take(pa.array(early)).to_pylist())
        return sorted(texts)

    def history(self, table: str, key: Any, from_ms: int, to_ms: int, every_ms: int) -> pa.Table:
        """The aggregations of one key at ``from_ms, from_ms + every_ms, ...`` up to ``to_ms`` inclusive."""
        if every_ms <= 0:
            raise TableReadError(f"every must be positive, got {every_ms!r} ms")
        if to_ms < from_ms:
            raise TableReadError(f"the series ends ({to_ms}) before it starts ({from_ms})")
        if (to_ms - from_ms) // every_ms > 100_000:
            raise TableReadError("a history of more than 100,000 points; use a larger step")
        moments = np.arange(from_ms, to_ms + 1, every_ms, dtype=np.int64)
        hashes = np.full(len(moments), self._key_hash(table, key), dtype=np.uint64)
        values = self.get_batch(table, hashes, moments)
        columns = {"as_of_ms": pa.array(moments)}
        columns.update({name: values.column(name) for name in values.column_names})
        return pa.table(columns)

    def _table_feeds(self, table: str) -> list[Feed]:
        feeds = self._feeds.get(table)
        if feeds is None:
            raise TableReadError(f"unknown table {table!r}; the pipeline has {sorted(self._feeds)}")
        return feeds

    def _key_hash(self, table: str, key: Any) -> int:
        fields = self.pipeline.tables[table].key
        if not fields:
            parts: tuple[Any, ...] = ()
        elif isinstance(key, dict):
            missing = [f for f in fields if f not in key]
            if missing:
                raise TableReadError(f"table {table!r} is keyed by {fields}; the key lacks {missing}")
            parts = tuple(key[f] for f in fields)
        elif isinstance(key, (tuple, list)):
            parts = tuple(key)
        else:
            parts = (key,)
        if len(parts) != len(fields):
            raise TableReadError(f"table {table!r} is keyed by {fields}; got {key!r}")
        return hash_text(key_text(parts))


def _load_run(root: Root, path: str, summed: frozenset[str]) -> Run:
    try:
        return Run.from_bytes(root.read_buffer(path), texts=_texts_loader(root, path), summed=summed)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StateError(
            f"cannot read table state file {root.url}/{path} ({exc}); rebuild the tables from the lake "
            "with `clickwise run --rebuild --once`"
        ) from exc


def _texts_loader(root: Root, path: str) -> Callable[[], pa.Array]:
    return lambda: read_key_texts(root.read_buffer(path))


def _split(text: str, fields: int) -> tuple[str, ...] | str | None:
    if fields == 0:
        return None
    parts = tuple(text.split(KEY_SEPARATOR))
    return parts[0] if fields == 1 else parts


def _in_time_order(events: pl.DataFrame) -> pl.DataFrame:
    """The events ordered by (event time, arrival time); ties keep their order."""
    event_ms, arrival_ms = events.get_column("_event_ms"), events.get_column("_arrival_ms")
    order = time_order(event_ms.to_numpy(), arrival_ms.to_numpy())
    return events if order is None else events.select(pl.all().gather(order))


def _hour_of(path: str) -> int:
    hour = partition_hour_ms(path)
    return hour if hour is not None else 0


@dataclass
class _CheckpointPlan:
    """A checkpoint to write: its run files and pending joins, then the checkpoint itself."""

    checkpoint: Checkpoint
    runs: list[tuple[str, Run]] = field(default_factory=list)
    pending: list[tuple[str, pl.DataFrame]] = field(default_factory=list)
    loaded: dict[str, list[Run]] = field(default_factory=dict)
    error: Exception | None = None

    def write(self, root: Root) -> None:
        """Write every file, the checkpoint last (atomically): a crash leaves the previous one."""
        try:
            for path, run in self.runs:
                root.write_parts(path, run.to_parts())
            for path, held in self.pending:
                root.write_parquet(path, held.to_arrow())
            save_checkpoint(root, self.checkpoint)
        except Exception as exc:  # noqa: BLE001 (handed to the thread that adopts the plan)
            self.error = exc


@dataclass
class _Writing:
    plan: _CheckpointPlan
    thread: threading.Thread
