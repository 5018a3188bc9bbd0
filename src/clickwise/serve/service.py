"""What the HTTP service does, without HTTP: ingest events, read tables, decide, switch models.

One :class:`Service` owns the pipeline's tables at a root. Events are validated, de-duplicated,
enriched, stored in the lake and applied to the tables before :meth:`Service.ingest` returns, so a
read right after sees them. A decision computes the opportunity's features as of its time through
the same :class:`~clickwise.features.FeatureSet` as the backfill, scores them with the active
model and applies the pipeline's decision rules; every decision is logged with the features it
used (``<root>/decisions/``), so the label join can turn served decisions into training rows.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from clickwise.engine import COMPACT_LAKE_S, compact_settled
from clickwise.enrich.apply import Enricher
from clickwise.errors import ClickwiseError
from clickwise.events import Ingestor, Lake
from clickwise.events.kafka import KafkaSource, kafka_groups
from clickwise.events.kinesis import KinesisSource, kinesis_streams
from clickwise.events.positions import BrokerSource
from clickwise.events.validate import EVENT_MS, validate, validate_one
from clickwise.features import FeatureSet
from clickwise.model import Predictor, list_versions, resolve
from clickwise.model.money import first_rule_holding, rule_holds
from clickwise.model.registry import active as active_version
from clickwise.model.registry import set_active
from clickwise.spec import Pipeline
from clickwise.spec.features import DecisionDef
from clickwise.storage import Root
from clickwise.tables import Tables
from clickwise.tables.engine import LIVE_CHECKPOINT_S, TableReadError
from clickwise.tables.retention import past_retention
from clickwise.time import Clock, SystemClock, format_ms, ms_to_datetime, parse_instant_ms, parse_zone

MAX_KEY_LENGTH = 1024
DECISION_LOG = "decisions"
LOG_FLUSH_ROWS = 20_000
SOURCE_POLL_SECONDS = 0.05  # a Kafka source's longest wait for messages (bounds their delay)
ONE_BY_ONE = 8  # up to this many opportunities a request, each is decided on its own (no columns)
_LOG_TYPES = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


class ServiceError(ClickwiseError):
    """A request the service refuses: ``status`` is the HTTP status, ``code`` a stable word."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass
class IngestResult:
    accepted: int
    rejected: int
    duplicates: int
    conflicts: int  # an event id stored with different content (also in errors, with the stored time)
    errors: list[dict[str, Any]]
    watermark_ms: int | None
    not_counted: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Per table: accepted events it does not count (past its retention), with the reason."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Service:
    """The tables, the active model and the decision policy of one pipeline at one root."""

    def __init__(
        self,
        pipeline: Pipeline,
        root: Root,
        *,
        models: str | None = None,
        model: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        started = time.perf_counter()
        self.pipeline = pipeline
        self._shortest_retention = pipeline.allowed_lateness + min(
            (t.retention for t in pipeline.tables.values()), default=0
        )
        self.fingerprint = pipeline.fingerprint()  # a digest of the whole definition: compute once
        self.root = root
        self.clock = clock or SystemClock()
        self._write_lock = threading.Lock()
        self._apply_lock = threading.Lock()  # one update of the tables at a time
        self._checkpointed = time.monotonic()
        self._unapplied: dict[str, list[str]] = {}  # lake files written, not yet in the tables
        self._written = 0  # ingest batches written to the lake
        self.sources: list[BrokerSource] = []
        self.consumed: dict[str, int] = {}  # events stored from sources, by stream
        self.source_errors = 0  # failed reads of sources (retried)
        self._consumer_thread: threading.Thread | None = None
        self._maintenance_thread: threading.Thread | None = None
        self.lake_compaction: dict[str, int] = {}  # what the last merge of small lake files did
        self._stopping = threading.Event()
        self._applied = 0  # ... and applied to the tables
        self.tables = Tables.open(pipeline, root, clock=self.clock)
        self.tables.catch_up()
        # Reads hold the tables' lock, so a decision sees one state of every table; an update
        # takes it only to publish its result, so reads never wait for an update's work.
        self.lock = self.tables.lock
        self.ingestor = Ingestor(pipeline, root, clock=self.clock)
        # the stored event ids (for de-duplication) load beside the first reads; ingest waits (a
        # stream whose index failed to load builds it on its first batch, as a plain Ingestor does)
        loader = self.ingestor.load_id_indexes
        self._ids_loading = threading.Thread(target=loader, name="id-index", daemon=True)
        self._ids_loading.start()
        self.features = FeatureSet(pipeline) if pipeline.label is not None else None
        self.models = models
        self.predictor: Predictor | None = None
        if model is not None or (models is not None and list_versions(models)):
            chosen = model or (active_version(models) if models else None) or "latest"
            self.predictor = self._load(resolve(chosen, models))
        self._enricher = Enricher(pipeline, pipeline.label.exposure) if pipeline.label is not None else None
        self._log: list[pa.Table] = []  # decisions made in columns
        self._log_schema = self._decision_log_schema()
        self._log_rows = 0
        self._log_values: list[list[Any]] = [[] for _ in self._log_schema]  # ... and one by one
        self._flusher: threading.Thread | None = None
        self._flush_lock = threading.Lock()  # one log file written at a time
        if pipeline.decision is not None and self.features is not None:  # a rule that cannot compare
            first_rule_holding(self._log_schema.empty_table(), pipeline.decision.block)  # fails now
        self._log_lock = threading.Lock()
        self._warm_up()
        self.startup_s = time.perf_counter() - started

    def _warm_up(self) -> None:
        """Read every table once for a key nobody has, so the compiled read loops are loaded (or
        compiled, on a fresh install) before the first request rather than during it."""
        for table in self.pipeline.tables:
            now = np.full(1, self.tables.now_ms(), dtype=np.int64)
            self.tables.evaluate_batch(table, np.zeros(1, dtype=np.uint64), now)
        if self.features is None or self._enricher is None:
            return
        # ... and the one-by-one path: parsers build their rules on first use, the booster its
        # predictor (nothing is logged)
        event: dict[str, Any] = dict.fromkeys(self.features.input_fields(), "")
        event.update(self._enricher.enrich_one(self._enricher.sample()))
        event[EVENT_MS] = self.clock.now_ms()
        values = self.features.compute_one(self.tables, event)
        if self.predictor is not None:
            self.predictor.predict([{name: None for name in values}])

    # --- events ---------------------------------------------------------------------------------

    def ingest(self, stream: str, records: list[dict[str, Any]]) -> IngestResult:
        """Store and apply a batch of one stream's records; bad ones are rejected with a reason each."""
        if stream not in self.pipeline.streams:
            raise ServiceError(
                404,
                "unknown_stream",
                f"unknown stream {stream!r}; the pipeline has {sorted(self.pipeline.streams)}",
                "stream",
            )
        table = _records_table(records)
        self._ids_loading.join()
        with self._write_lock:  # lake writes one at a time; the tables apply them in groups
            seen = self.tables.counters().get("max_event_ms")  # what arrived before this batch
            counts = self.ingestor.ingest_table(
                table, stream, tag=f"http-{uuid.uuid4().hex}", source="http", new_tag=True
            )
            mine = self._note_written({stream: counts.files})
        watermark = self._apply_upto(mine)
        errors = [{"index": row, "field": field, "reason": reason} for row, reason, field in counts.problems]
        result = IngestResult(
            counts.accepted, counts.rejected, counts.duplicates, counts.conflicts, errors, watermark
        )
        lowest = min((self.tables.file_event_range(path)[1] for path in counts.files), default=None)
        if lowest is not None and seen is not None and lowest < seen - self._shortest_retention:
            times = self.root.read_frame(counts.files, columns=["_event_ms"]).get_column("_event_ms")
            uncounted = past_retention(self.pipeline, stream, times.to_numpy(), seen)
            for name, (count, reason) in uncounted.items():
                result.not_counted[name] = {"events": count, "reason": reason}
        return result

    def _note_written(self, files: dict[str, list[str]]) -> int:
        """Remember lake files to apply (under the write lock); returns the write's number."""
        for stream, paths in files.items():
            self._unapplied.setdefault(stream, []).extend(paths)
        self._written += 1
        return self._written

    def _apply_upto(self, mine: int) -> int | None:
        """Apply every written lake file up to write ``mine`` (and any later ones); the watermark."""
        with self._apply_lock:
            if self._applied < mine:  # no other writer applied this one's files yet: apply all
                with self._write_lock:
                    files, self._unapplied = self._unapplied, {}
                    upto = self._written
                # in memory: the lake already holds the events durably, and a restart applies
                # whatever the last table checkpoint does not name
                self.tables.catch_up(files=files, persist=False)
                self._applied = upto
                if time.monotonic() - self._checkpointed >= LIVE_CHECKPOINT_S:
                    # written on a thread of its own: applying (and so freshness) does not wait
                    if self.tables.checkpoint_in_background():
                        self._checkpointed = time.monotonic()
            return self.tables.watermark_ms

    def start_sources(self) -> None:
        """Consume the pipeline's Kafka and Kinesis sources on a background thread (stored and
        applied like HTTP batches; stopped by :meth:`close`)."""
        if self._consumer_thread is not None:
            return
        self.sources = [
            KafkaSource(self.pipeline, self.root, streams, ingestor=self.ingestor)
            for streams in kafka_groups(self.pipeline).values()
        ]
        kinesis = kinesis_streams(self.pipeline)
        if kinesis:
            self.sources.append(KinesisSource(self.pipeline, self.root, kinesis, ingestor=self.ingestor))
        for source in self.sources:
            source.start()
        if self.sources:
            self._consumer_thread = threading.Thread(target=self._consume, name="sources", daemon=True)
            self._consumer_thread.start()

    def _consume(self) -> None:
        self._ids_loading.join()
        broken: set[int] = set()  # sources to restart from their stored positions
        while not self._stopping.is_set():
            for number, source in enumerate(self.sources):
                try:
                    if number in broken:  # what it had fetched but not stored is read again
                        source.close()
                        source.start()
                        broken.discard(number)
                    self._consume_once(source)
                except Exception as exc:  # noqa: BLE001 - a source failing must not stop the others
                    self.source_errors += 1
                    broken.add(number)
                    print(f"clickwise: reading {type(source).__name__} failed; restarting it from its "
                          f"stored positions in 1 s: {exc!r}", file=sys.stderr, flush=True)  # fmt: skip
                    self._stopping.wait(1.0)

    def _consume_once(self, source: BrokerSource) -> None:
        fetched: Any = source.fetch(timeout_s=SOURCE_POLL_SECONDS)
        if not fetched:
            return
        with self._write_lock:
            report = source.store(fetched)
            mine = self._note_written({s: c.files for s, c in report.streams.items()})
        for stream, counts in report.streams.items():
            self.consumed[stream] = self.consumed.get(stream, 0) + counts.accepted
        self._apply_upto(mine)

    def start_maintenance(self) -> None:
        """Merge small lake files on a background thread every ``COMPACT_LAKE_S`` (HTTP batches
        and polls write one each; see :mod:`clickwise.events.compaction`). Only files the last
        table checkpoint names are merged, so the files ingest is still applying are never
        touched; the tables are told under the update lock. Stopped by :meth:`close`."""
        if self._maintenance_thread is None:
            self._maintenance_thread = threading.Thread(target=self._maintain, name="lake", daemon=True)
            self._maintenance_thread.start()

    def _maintain(self) -> None:
        self._ids_loading.join()  # (it reads every lake file: none may go meanwhile)
        while not self._stopping.wait(COMPACT_LAKE_S):
            try:
                self.lake_compaction = compact_settled(self.pipeline, self.root, self.clock)
                lake = Lake(self.root, self.pipeline)
                merged = [r for stream in self.pipeline.streams for r in lake.replacements(stream)]
                with self._apply_lock:
                    self.tables.follow_compactions(merged)
            except Exception as exc:  # noqa: BLE001 - merging is an optimization: keep serving
                print(f"clickwise: merging small lake files failed (tried again in {COMPACT_LAKE_S:.0f} "
                      f"s): {exc!r}", file=sys.stderr, flush=True)  # fmt: skip

    def source_status(self) -> list[dict[str, Any]]:
        """Each source's positions, lag, events/s over the last minute and dead letters."""
        return [source.status() for source in self.sources]

    # --- reads ------------------------------------------------------------------------------------

    def parse_key(self, table: str, text: str) -> Any:
        """A key from a URL: the value, or values joined by ',' for several fields; '-' for none."""
        definition = self.pipeline.tables.get(table)
        if definition is None:
            raise ServiceError(
                404,
                "unknown_table",
                f"unknown table {table!r}; the pipeline has {sorted(self.pipeline.tables)}",
                "table",
            )
        if len(text) > MAX_KEY_LENGTH:
            raise ServiceError(400, "bad_key", f"a key is at most {MAX_KEY_LENGTH} characters", "key")
        fields = definition.key
        if not fields:
            return None
        parts = text.split(",") if len(fields) > 1 else [text]
        if len(parts) != len(fields):
            raise ServiceError(
                400,
                "bad_key",
                f"table {table!r} is keyed by {fields}: give {len(fields)} values joined by ','",
                "key",
            )
        return parts[0] if len(fields) == 1 else tuple(parts)

    def parse_time(self, text: str | None, field: str = "as_of") -> int | None:
        if text is None or text == "":
            return None
        try:
            return parse_instant_ms(text)
        except ClickwiseError as exc:
            message = str(exc)
            if _PLUS_AS_SPACE.fullmatch(text):
                message += (
                    "; its '+' was read as a space (in a URL query '+' means a space): "
                    "write the offset as %2B08:00, or give the time in UTC with Z, or as epoch ms"
                )
            raise ServiceError(400, "bad_time", message, field) from None

    def lookup(self, table: str, key: Any, as_of_ms: int | None) -> dict[str, Any]:
        with self.lock:
            moment = self.tables.now_ms() if as_of_ms is None else as_of_ms
            try:
                values = self.tables.get_one(table, key, moment)
            except TableReadError as exc:
                raise ServiceError(400, "bad_key", str(exc), "key") from None
        return {"table": table, "key": key, "as_of_ms": moment, "as_of": format_ms(moment), "values": values}

    def lookup_many(self, table: str, keys: list[Any], as_of_ms: int | None) -> dict[str, Any]:
        with self.lock:
            moment = self.tables.now_ms() if as_of_ms is None else as_of_ms
            try:
                rows = self.tables.get_many(table, keys, moment)
            except TableReadError as exc:
                raise ServiceError(400, "bad_key", str(exc), "keys") from None
        return {
            "table": table,
            "as_of_ms": moment,
            "rows": [{"key": k, "values": v} for k, v in zip(keys, rows, strict=True)],
        }

    # --- decisions --------------------------------------------------------------------------------

    def decide(self, opportunities: list[dict[str, Any]], *, explain: bool = False) -> list[dict[str, Any]]:
        """A decision per opportunity (impression fields, no label): p_click, serve/skip/block, why."""
        predictor = self.predictor
        if predictor is None or self.features is None or self._enricher is None:
            raise ServiceError(
                409,
                "no_model",
                "no model is active; train one and activate it (POST /v1/models/{version}/activate)",
            )
        label = self.pipeline.label
        assert label is not None
        definition = self.pipeline.streams[label.exposure]
        now_ms = self.clock.now_ms()
        prepared = [self._opportunity(record, definition, now_ms) for record in opportunities]
        if len(prepared) <= ONE_BY_ONE:
            plain = [validate_one(record, definition, now_ms=now_ms) for record in prepared]
            if all(row is not None for row in plain):
                return self._decide_rows([row for row in plain if row is not None], predictor, explain)
        valid, rejected = validate(_records_table(prepared), definition, now_ms=now_ms)
        if len(rejected.rows):
            index = int(rejected.rows[0])
            raise ServiceError(
                422, "invalid_opportunity", f"opportunity {index}: {rejected.reasons[0]}", rejected.fields[0]
            )
        events = pl.from_arrow(self._enricher.enrich_many(valid))
        assert isinstance(events, pl.DataFrame)
        with self.lock:
            values = self.features.compute(self.tables, events)
        table = pa.table(values)
        p_click = predictor.predict(table)
        outcomes = self._policy(table, p_click)
        event_id = definition.event_id
        ids = events.get_column(event_id).to_list() if event_id else [None] * events.height
        event_ms = events.get_column(EVENT_MS).to_list()
        self._record(ids, event_ms, table, p_click, outcomes, predictor.version)
        answers = []
        rows = table.to_pylist() if explain else None
        for i, (decision, reasons) in enumerate(outcomes):
            answer: dict[str, Any] = {
                "id": ids[i],
                "p_click": float(p_click[i]),
                "decision": decision,
                "reasons": reasons,
                "model_version": predictor.version,
                "pipeline_fingerprint": self.fingerprint,
                "as_of_ms": event_ms[i],
            }
            if rows is not None:
                answer["features"] = rows[i]
            answers.append(answer)
        return answers

    def _decide_rows(
        self, rows: list[dict[str, Any]], predictor: Predictor, explain: bool
    ) -> list[dict[str, Any]]:
        """:meth:`decide` for a few plainly valid opportunities, one by one, without columns (the
        same features, scores and decisions; tested against the column path)."""
        assert self.features is not None and self._enricher is not None
        event_id = self.pipeline.streams[self.features.exposure].event_id
        events = [{**row, **self._enricher.enrich_one(row)} for row in rows]
        with self.lock:
            features = [self.features.compute_one(self.tables, event) for event in events]
        p_click = predictor.predict(features)
        decided_ms = self.clock.now_ms()
        answers, logged = [], []
        for event, values, p in zip(events, features, p_click.tolist(), strict=True):
            decision, reasons = self._policy_one(values, p)
            ident = event[event_id] if event_id else None
            row = [ident, event[EVENT_MS], *values.values(), p, decision, predictor.version, decided_ms]
            logged.append(row)
            answer: dict[str, Any] = {
                "id": ident,
                "p_click": p,
                "decision": decision,
                "reasons": reasons,
                "model_version": predictor.version,
                "pipeline_fingerprint": self.fingerprint,
                "as_of_ms": event[EVENT_MS],
            }
            if explain:
                answer["features"] = values
            answers.append(answer)
        with self._log_lock:  # kept as columns of Python values: a row costs a few appends
            for row in logged:
                for column, value in zip(self._log_values, row, strict=True):
                    column.append(value)
            self._log_rows += len(logged)
            full = self._log_rows >= LOG_FLUSH_ROWS
        if full:
            self._flush_in_background()
        return answers

    def _policy_one(self, values: dict[str, Any], p_click: float) -> tuple[str, list[str]]:
        """:meth:`_policy` for one row of features."""
        decision = self.pipeline.decision
        if decision is None:
            return "serve", []
        holding = (i for i, rule in enumerate(decision.block) if rule_holds(values[rule.feature], rule))
        first = next(holding, -1)
        cost = values[decision.cost] if isinstance(decision.cost, str) else decision.cost
        return _outcome(decision, first, p_click, float(cost or 0.0))

    def _decision_log_schema(self) -> pa.Schema:
        """The columns of the decision log: the decision, then every feature in its type."""
        infos = self.features.infos if self.features is not None else []
        return pa.schema(
            [pa.field("event_id", pa.string()), pa.field("event_ms", pa.int64())]
            + [pa.field(info.name, _LOG_TYPES[info.type]) for info in infos]
            + [
                pa.field("p_click", pa.float64()),
                pa.field("decision", pa.string()),
                pa.field("model_version", pa.string()),
                pa.field("decided_ms", pa.int64()),
            ]  # fmt: skip
        )

    def _opportunity(self, record: Any, definition: Any, now_ms: int) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise ServiceError(
                422, "invalid_opportunity", "each opportunity is a JSON object of impression fields"
            )
        record = dict(record)
        time_field = definition.time.field
        if record.get(time_field) is None:  # an opportunity happens now unless it says when
            now = _written_as(now_ms, definition.time.format, definition.time.timezone)
            if now is not None:  # (else validation names the missing field)
                record[time_field] = now
        if definition.event_id and record.get(definition.event_id) is None:
            record[definition.event_id] = uuid.uuid4().hex
        return record

    def _policy(self, table: pa.Table, p_click: np.ndarray) -> list[tuple[str, list[str]]]:
        decision = self.pipeline.decision
        if decision is None:
            return [("serve", []) for _ in range(len(p_click))]
        first = first_rule_holding(table, decision.block)
        if isinstance(decision.cost, str):
            cost = table.column(decision.cost).cast(pa.float64()).fill_null(0.0).to_numpy()
        else:
            cost = np.full(len(p_click), float(decision.cost))
        return [
            _outcome(decision, int(rule), float(p), float(c))
            for rule, p, c in zip(first.tolist(), p_click.tolist(), cost.tolist(), strict=True)
        ]

    def _record(
        self,
        ids: list[Any],
        event_ms: list[int],
        table: pa.Table,
        p_click: np.ndarray,
        outcomes: list[tuple[str, list[str]]],
        version: str,
    ) -> None:
        log = table.add_column(0, "event_id", pa.array(ids, pa.string()))
        log = log.add_column(1, "event_ms", pa.array(event_ms, pa.int64()))
        log = log.append_column("p_click", pa.array(p_click, pa.float64()))
        log = log.append_column("decision", pa.array([o[0] for o in outcomes], pa.string()))
        log = log.append_column("model_version", pa.array([version] * len(ids), pa.string()))
        log = log.append_column("decided_ms", pa.array([self.clock.now_ms()] * len(ids), pa.int64()))
        with self._log_lock:
            self._log.append(log)
            self._log_rows += log.num_rows
            full = self._log_rows >= LOG_FLUSH_ROWS
        if full:
            self._flush_in_background()

    def _flush_in_background(self) -> None:
        """Write the log off the request's thread (a file of 20,000 rows takes ~100 ms); one
        writer at a time, and :meth:`close` waits for it."""
        with self._log_lock:
            if self._flusher is not None and self._flusher.is_alive():
                return  # the running writer takes these rows on its next round
            self._flusher = threading.Thread(target=self._flush_while_full, name="decision-log", daemon=True)
            self._flusher.start()

    def _flush_while_full(self) -> None:
        while True:
            self.flush_decisions()
            with self._log_lock:
                if self._log_rows < LOG_FLUSH_ROWS:
                    return

    def flush_decisions(self) -> str | None:
        """Write the logged decisions not written yet (one Parquet file); returns its path. When
        the write fails, the rows stay in the log for the next attempt."""
        with self._flush_lock:
            with self._log_lock:
                parts, values = self._log, self._log_values
                self._log, self._log_values, self._log_rows = [], [[] for _ in self._log_schema], 0
            if not parts and not values[0]:
                return None
            try:
                stamp = format_ms(self.clock.now_ms())
                path = f"{DECISION_LOG}/date={stamp[:10]}/hour={stamp[11:13]}/part-{time.time_ns()}.parquet"
                self.root.write_parquet(path, self._log_table(parts, values))
            except BaseException:
                with self._log_lock:
                    self._log[:0] = parts
                    for column, kept in zip(self._log_values, values, strict=True):
                        column[:0] = kept
                    self._log_rows += sum(t.num_rows for t in parts) + len(values[0])
                raise
            return path

    def _log_table(self, parts: list[pa.Table], values: list[list[Any]]) -> pa.Table:
        schema = self._log_schema
        tables = []
        if values[0]:
            arrays = []
            for field, column in zip(schema, values, strict=True):
                arrays.append(pa.array(column, field.type))
                time.sleep(0)  # a column at a time, letting request threads in between (the GIL)
            tables.append(pa.Table.from_arrays(arrays, schema=schema))
        for part in parts:
            columns = [part.column(f.name).cast(f.type) for f in schema]
            tables.append(pa.Table.from_arrays(columns, schema=schema))
        return pa.concat_tables(tables)

    # --- models -----------------------------------------------------------------------------------

    def _load(self, model_dir: str) -> Predictor:
        try:
            return Predictor.load(model_dir, pipeline=self.pipeline)
        except ClickwiseError as exc:
            raise ServiceError(409, "model_refused", str(exc)) from None

    def list_models(self) -> dict[str, Any]:
        if self.models is None:
            return {
                "models": None,
                "versions": [],
                "active": self.predictor.version if self.predictor else None,
            }
        return {
            "models": self.models,
            "versions": list_versions(self.models),
            "active": self.predictor.version if self.predictor else None,
        }

    def activate(self, version: str) -> dict[str, Any]:
        """Load a version and swap it in (requests in flight finish on the old one)."""
        if self.models is None:
            raise ServiceError(409, "no_registry", "the service was started without --models")
        if version not in list_versions(self.models):
            raise ServiceError(
                404, "unknown_model", f"no model version {version!r} in {self.models}", "version"
            )
        predictor = self._load(resolve(version, self.models))
        set_active(self.models, version)
        self.predictor = predictor
        return {"active": version}

    def close(self) -> None:
        """Make everything durable: the table state and the decision log."""
        self._stopping.set()
        for thread in (self._consumer_thread, self._maintenance_thread):
            if thread is not None:
                thread.join()
        self._consumer_thread = self._maintenance_thread = None
        for source in self.sources:
            source.close()
        with self._apply_lock:
            self.tables.checkpoint()
        flusher = self._flusher
        if flusher is not None:
            flusher.join()
        self.flush_decisions()


def _outcome(decision: DecisionDef, first_rule: int, p_click: float, cost: float) -> tuple[str, list[str]]:
    """Block when a rule holds (``first_rule`` >= 0), serve when the expected value beats the
    cost, else skip; with the reasons."""
    if first_rule >= 0:
        rule = decision.block[first_rule]
        why = "bot agent" if rule.feature == "is_bot_agent" else "bot-like history"
        return "block", [f"{why}: {rule.feature} {rule.op} {rule.value}"]
    if p_click * decision.value_per_click > cost:
        return "serve", []
    return "skip", ["below value threshold: p_click x value per click <= cost"]


_PLUS_AS_SPACE = re.compile(r"\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}(:?\d{2})?\s*")
"""An ISO time whose ``+`` offset became a space in a URL query (``...T10:00:00 08:00``)."""

_EPOCH_PER_MS = {"epoch_ms": (1, 1), "epoch_s": (1, 1000), "epoch_us": (1000, 1), "epoch_ns": (1_000_000, 1)}


def _written_as(now_ms: int, fmt: str, zone: str | None) -> int | str | None:
    """``now_ms`` written as a stream's time field is (an epoch number, ISO text, or text of its
    strptime pattern in its zone); None when the pattern cannot write it."""
    if fmt in _EPOCH_PER_MS:
        multiply, divide = _EPOCH_PER_MS[fmt]
        return now_ms * multiply // divide
    if fmt == "iso":
        return format_ms(now_ms)
    try:
        return ms_to_datetime(now_ms).astimezone(parse_zone(zone or "UTC")).strftime(fmt)
    except (ValueError, ClickwiseError):
        return None


def _records_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records as columns. When a field's values have mixed types (a number here, text there),
    every value becomes its JSON text, so validation judges each record on its own (text is cast
    to the field's type, leniently) instead of the whole batch failing."""
    if not records:
        return pa.table({})
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError):
        texts = [{name: _text(value) for name, value in record.items()} for record in records]
        return pa.Table.from_pylist(texts)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
