"""A kill -9 harness: crash ingest and table updates at random moments, restart, compare answers.

The claim it checks (DESIGN.md section 5): after a SIGKILL at any moment of an ingest or a table
update, running the same work again gives exactly the answers of a run that was never interrupted:
the same lake rows, the same dead letters, the same table values at every moment. No event is
lost and none is counted twice.

A *victim* is a subprocess (``python -m clickwise.testing_crash work ...``) that ingests the
inputs of a small synthetic data set one by one and catches the tables up after every round of
inputs, in windows of a few hundred events (so there are many checkpoints). It uses a fixed clock,
so two runs of the same work write the same bytes. The harness kills it by pid, after a delay drawn
over the measured length of an uninterrupted run (or right before its N-th storage write or
delete), copies what the crash left, runs the work again until it finishes, and compares.

Used by ``tests/tables/test_crash.py`` and ``benchmarks/bench_crash.py``::

    harness = CrashHarness(workdir)
    harness.prepare()                          # data set, reference run, reference answers
    result = harness.trial(seed=1)             # kill, restart, compare
    assert result.ok, result.describe()
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

VICTIM_MODULE = "clickwise.testing_crash"
STREAMS = ("clicks", "impressions", "predictions")
"""The order of the inputs in a round: clicks first, so that some wait for their impressions."""
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
MS_PER_HOUR = 3_600_000
ARRIVAL_COLUMNS = ("arrival_ts", "_arrival_ms")
_BAD_LINES = {
    "impressions": b'{"impression_id": "bad-cost", "user_id": "u", "campaign_id": "c", "domain": "d", '
    b'"cost": -1, "ts": %d}\n',
    "clicks": b'{"click_id": "bad-no-user", "impression_id": "i", "campaign_id": "c", "ts": %d}\n',
    "predictions": b'{"user_id": "u", "score": 7.5, "ts": %d}\n',
}


# --- the data set -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashConfig:
    """What the victim works on: a synthetic data set split into ``parts`` inputs per stream."""

    users: int = 300
    hours: float = 6.0
    data_seed: int = 5
    parts: int = 4
    window_rows: int = 300
    pipeline_text: str | None = None
    """The pipeline (YAML); default: the bundled ``adclick`` example."""


@dataclass(frozen=True)
class Dataset:
    """Inputs on disk, the pipeline file and the fixed "now" every run uses."""

    folder: Path
    inputs: tuple[str, ...]
    pipeline_path: Path
    start_ms: int
    end_ms: int
    max_event_ms: int
    now_ms: int

    @classmethod
    def load(cls, folder: Path) -> Dataset:
        raw = orjson.loads((folder / "dataset.json").read_bytes())
        return cls(
            folder=folder,
            inputs=tuple(raw["inputs"]),
            pipeline_path=folder / "pipeline.yaml",
            start_ms=raw["start_ms"],
            end_ms=raw["end_ms"],
            max_event_ms=raw["max_event_ms"],
            now_ms=raw["now_ms"],
        )

    def ordered_inputs(self, order_seed: int | None) -> list[str]:
        """The inputs in the canonical order (round robin over streams), or shuffled by a seed."""
        inputs = list(self.inputs)
        if order_seed is not None:
            random.Random(order_seed).shuffle(inputs)
        return inputs

    def moments(self) -> list[int]:
        """The as-of moments the tables are compared at (the last one is after every event)."""
        return [
            self.start_ms + MS_PER_HOUR,
            self.start_ms + 3 * MS_PER_HOUR + 17 * 60_000,
            self.end_ms,
            self.max_event_ms + 1,
        ]


def make_dataset(folder: Path, config: CrashConfig) -> Dataset:
    """Generate the data set once: each stream's JSON lines cut into ``parts`` inputs, with a bad
    record appended to each input (so there are dead letters to compare)."""
    from clickwise.examples import example_path
    from clickwise.synth import generate

    if (folder / "dataset.json").exists():
        return Dataset.load(folder)
    generated = folder / "generated"
    shutil.rmtree(generated, ignore_errors=True)
    summary = generate(
        generated,
        users=config.users,
        hours=config.hours,
        seed=config.data_seed,
        start_ms=START_MS,
        fmt="jsonl",
    )
    slices: dict[str, list[str]] = {}
    for stream in STREAMS:
        lines = b"".join(p.read_bytes() for p in summary.paths[stream]).splitlines(keepends=True)
        for part in range(config.parts):
            chunk = lines[part * len(lines) // config.parts : (part + 1) * len(lines) // config.parts]
            chunk.append(_BAD_LINES[stream] % (START_MS + part))
            target = folder / "inputs" / stream / f"part-{part}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(chunk))
            slices.setdefault(str(part), []).append(str(target))
    pipeline_text = config.pipeline_text or example_path("adclick").read_text()
    (folder / "pipeline.yaml").write_text(pipeline_text)
    now_ms = (summary.max_arrival_ms // MS_PER_HOUR + 2) * MS_PER_HOUR  # after every arrival
    description = {
        "inputs": [path for part in range(config.parts) for path in slices[str(part)]],
        "start_ms": summary.start_ms,
        "end_ms": summary.end_ms,
        "max_event_ms": summary.max_ts_ms,
        "now_ms": now_ms,
        "config": {k: v for k, v in config.__dict__.items() if k != "pipeline_text"},
    }
    (folder / "dataset.json").write_bytes(orjson.dumps(description, option=orjson.OPT_INDENT_2))
    return Dataset.load(folder)


# --- the victim (runs in a subprocess) ----------------------------------------------------------


def run_work(
    data: Path, root_dir: Path, *, window_rows: int, order_seed: int | None, announce: Callable[[str], None]
) -> None:
    """Ingest every input one by one; catch the tables up after the first input of each round (some
    clicks then wait for their impressions) and after the last."""
    from clickwise.events import Ingestor
    from clickwise.spec import load_pipeline
    from clickwise.storage import open_root
    from clickwise.tables import Tables
    from clickwise.time import FixedClock

    dataset = Dataset.load(data)
    pipeline = load_pipeline(dataset.pipeline_path)
    root = open_root(root_dir)
    clock = FixedClock(dataset.now_ms)
    announce("ready")
    ingestor = Ingestor(pipeline, root, clock=clock)
    tables = Tables.open(pipeline, root, clock=clock)
    inputs = dataset.ordered_inputs(order_seed)
    for number, path in enumerate(inputs, 1):
        ingestor.ingest_files([path])
        if number % len(STREAMS) in (0, 1) or number == len(inputs):
            tables.catch_up(window_rows=window_rows, checkpoint_interval_s=0)  # more crash points


def _count_storage_ops(crash_at: str | None) -> Callable[[], int]:
    """Count the root's writes and deletes; SIGKILL this process right before the one ``crash_at``
    names (see :func:`crash_point`), after saying on stderr which one it is."""
    from clickwise.storage import Root

    number_at, contains, nth = crash_point(crash_at)
    lock = threading.Lock()
    done = [0]
    matched = [0]

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(self: Root, relative: str, *args: Any, **kwargs: Any) -> Any:
            with lock:
                number = done[0]
                done[0] += 1
                hit = number == number_at
                if contains is not None and contains in f"{name} {relative}":
                    matched[0] += 1
                    hit = matched[0] == nth
                if hit:
                    sys.stderr.write(f"crash before storage operation {number}: {name} {relative}\n")
                    sys.stderr.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            return method(self, relative, *args, **kwargs)

        return counted

    # (write_bytes writes through write_parts: every file write is counted once)
    Root.write_parts = wrap("write", Root.write_parts)  # type: ignore[method-assign]
    Root.delete = wrap("delete", Root.delete)  # type: ignore[method-assign]
    return lambda: done[0]


def crash_point(spec: str | None) -> tuple[int | None, str | None, int]:
    """Parse a crash point: ``"57"`` (before the 58th write or delete, counting from 0) or
    ``"write lake/_manifest/impressions#2"`` (before the 2nd operation whose ``kind path`` contains
    the text).

    >>> crash_point("57"), crash_point("delete tables/runs#3")
    ((57, None, 0), (None, 'delete tables/runs', 3))
    """
    if spec is None:
        return None, None, 0
    if spec.isdigit():
        return int(spec), None, 0
    text, _, nth = spec.rpartition("#")
    if not text or not nth.isdigit() or int(nth) < 1:
        raise ValueError(f"crash point {spec!r} is neither a number nor 'TEXT#N' (N >= 1)")
    return None, text, int(nth)


def _victim_main(args: argparse.Namespace) -> None:
    ops = _count_storage_ops(args.crash_at)

    def announce(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    run_work(
        Path(args.data),
        Path(args.root),
        window_rows=args.window_rows,
        order_seed=args.order,
        announce=announce,
    )
    announce(f"done {ops()}")


# --- running and killing victims ----------------------------------------------------------------


@dataclass(frozen=True)
class VictimRun:
    """One run of the work: killed after ``delay_s`` (or before a storage operation), or finished."""

    killed: bool
    seconds: float
    delay_s: float | None = None
    crash_at: str | None = None
    order_seed: int | None = None
    storage_ops: int | None = None
    note: str = ""

    def describe(self) -> str:
        order = "" if self.order_seed is None else f", input order seed {self.order_seed}"
        if self.crash_at is not None:
            what = f"crash at {self.crash_at!r}"
        elif self.delay_s is not None:
            what = f"SIGKILL after {self.delay_s:.4f} s"
        else:
            what = "run to the end"
        outcome = "killed" if self.killed else "finished"
        return f"{what}{order}: {outcome}{' (' + self.note + ')' if self.note else ''}"


def run_victim(
    dataset: Dataset,
    root_dir: Path,
    *,
    window_rows: int,
    order_seed: int | None = None,
    kill_after_s: float | None = None,
    crash_at: str | None = None,
    log: Path | None = None,
    timeout_s: float = 300.0,
) -> VictimRun:
    """Run the work in a subprocess; SIGKILL it (by pid) ``kill_after_s`` seconds after it is ready
    (or let it kill itself at ``crash_at``, see :func:`crash_point`). A victim still running after
    ``timeout_s`` is killed and reported as an error."""
    command = [
        sys.executable,
        "-m",
        VICTIM_MODULE,
        "work",
        "--data",
        str(dataset.folder),
        "--root",
        str(root_dir),
        "--window-rows",
        str(window_rows),
    ]
    if order_seed is not None:
        command += ["--order", str(order_seed)]
    if crash_at is not None:
        command += ["--crash-at", crash_at]
    log = log or root_dir.with_name(root_dir.name + ".log")
    with (
        log.open("ab") as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process,
    ):
        try:
            assert process.stdout is not None
            ready = process.stdout.readline()
            started = time.perf_counter()
            if ready.strip() == b"ready" and kill_after_s is not None:
                try:
                    process.wait(timeout=kill_after_s)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)  # by pid; the process is ours and not yet reaped
            rest, _ = process.communicate(timeout=timeout_s)
            code = process.returncode
            seconds = time.perf_counter() - started
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
    if code == -signal.SIGKILL:
        note = _last_line(log) if crash_at is not None else ""
        return VictimRun(True, seconds, kill_after_s, crash_at, order_seed, note=note)
    if code != 0 or ready.strip() != b"ready":
        raise RuntimeError(f"the victim failed with exit code {code}; see {log}:\n{_tail(log)}")
    ops = int(rest.split()[-1]) if rest.startswith(b"done") else None
    return VictimRun(False, seconds, kill_after_s, crash_at, order_seed, storage_ops=ops)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _last_line(path: Path) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return text[-1] if text else ""


# --- answers and their comparison ---------------------------------------------------------------


Row = tuple[Any, ...]


@dataclass
class Answers:
    """Everything a root answers: lake rows, manifests, dead letters, table snapshots, counters."""

    lake: dict[str, Counter[Row]]
    lake_files: set[str]
    manifests: dict[str, Any]
    dead_letters: dict[str, Counter[Row]]
    snapshots: dict[tuple[str, int], list[dict[str, Any]]]
    counts: dict[tuple[str, str], dict[Row, int]]
    """Every ``count`` aggregation after the last event: key -> value."""
    counters: dict[str, int]
    pending: int
    temporaries: int
    expired_letters: int
    """Dead letters of events past a table's retention (one per ``expired_events``)."""


def read_answers(dataset: Dataset, root_dir: Path, *, same_order: bool = True) -> Answers:
    """What the root at ``root_dir`` answers. Without ``same_order`` (inputs were given in another
    order), lake rows are compared without their arrival times and manifests are not compared:
    which of two deliveries of one event is kept legitimately depends on the order."""
    import polars as pl

    from clickwise.events import DeadLetters
    from clickwise.spec import load_pipeline
    from clickwise.storage import open_root
    from clickwise.tables import Tables
    from clickwise.time import FixedClock

    pipeline = load_pipeline(dataset.pipeline_path)
    root = open_root(root_dir)
    rows: dict[str, Counter[Row]] = {}
    files: set[str] = set()
    for stream in pipeline.streams:
        paths = root.list_files(f"lake/{stream}", suffix=".parquet")
        files.update(paths)
        frame = pl.from_arrow(root.read_parquet(paths)) if paths else pl.DataFrame()
        assert isinstance(frame, pl.DataFrame)
        if not same_order:
            frame = frame.drop([c for c in ARRIVAL_COLUMNS if c in frame.columns])
        rows[stream] = Counter(frame.select(sorted(frame.columns)).rows())
    manifests = {path: orjson.loads(root.read_bytes(path)) for path in root.list_files("lake/_manifest")}
    if not same_order:
        manifests = dict.fromkeys(manifests)
    dead = DeadLetters(root)
    letters = {stream: dead.read(stream) for stream in pipeline.streams}
    dead_rows = {stream: Counter(_rows(table)) for stream, table in letters.items()}
    expired = sum(t.column("source").to_pylist().count("tables") for t in letters.values())
    tables = Tables.open(pipeline, root, clock=FixedClock(dataset.now_ms))
    snapshots = {
        (table, moment): tables.snapshot(table, moment).to_pylist()
        for table in pipeline.tables
        for moment in dataset.moments()
    }
    last = dataset.moments()[-1]
    counts: dict[tuple[str, str], dict[Row, int]] = {}
    for table, definition in pipeline.tables.items():
        key_fields = definition.key
        for name, aggregation in definition.aggregations.items():
            if aggregation.op == "count":
                counts[(table, name)] = {
                    tuple(row[k] for k in key_fields): int(row[name]) for row in snapshots[(table, last)]
                }
    temporaries = sum(1 for _, _, names in os.walk(root_dir) for n in names if ".tmp-" in n)
    return Answers(
        rows,
        files,
        manifests,
        dead_rows,
        snapshots,
        counts,
        tables.counters(),
        tables.pending_count(),
        temporaries,
        expired,
    )


def _rows(table: Any) -> list[Row]:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.rows()


@dataclass
class Comparison:
    """How a restarted root differs from the reference."""

    lost: dict[str, int] = field(default_factory=dict)
    doubled: dict[str, int] = field(default_factory=dict)
    mismatching_tables: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Differences that are not errors (late-event statistics, float rounding, stray temporaries)."""

    @property
    def lost_events(self) -> int:
        return sum(self.lost.values())

    @property
    def doubled_events(self) -> int:
        return sum(self.doubled.values())

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost_events and not self.doubled_events


def compare_answers(reference: Answers, victim: Answers) -> Comparison:
    """Lost and double-counted events per place, mismatching tables, and what else differs."""
    result = Comparison()
    for stream, expected in reference.lake.items():
        _multiset_diff(result, f"lake {stream}", expected, victim.lake.get(stream, Counter()))
    for stream, expected in reference.dead_letters.items():
        _multiset_diff(result, f"dead letters {stream}", expected, victim.dead_letters.get(stream, Counter()))
    if reference.lake_files != victim.lake_files:
        extra = sorted(victim.lake_files - reference.lake_files)[:3]
        missing = sorted(reference.lake_files - victim.lake_files)[:3]
        result.problems.append(f"lake files differ: extra {extra}, missing {missing}")
    if reference.manifests != victim.manifests:
        differing = sorted(
            p
            for p in reference.manifests.keys() | victim.manifests.keys()
            if reference.manifests.get(p) != victim.manifests.get(p)
        )
        result.problems.append(f"lake manifest entries differ: {differing[:3]}")
    _compare_tables(result, reference, victim)
    if victim.temporaries:
        result.notes.append(f"{victim.temporaries} temporary files left by killed writes")
    return result


def _multiset_diff(result: Comparison, place: str, expected: Counter[Row], actual: Counter[Row]) -> None:
    lost = sum((expected - actual).values())
    doubled = sum((actual - expected).values())
    if lost:
        result.lost[place] = lost
    if doubled:
        result.doubled[place] = doubled


def _compare_tables(result: Comparison, reference: Answers, victim: Answers) -> None:
    for (table, aggregation), want in reference.counts.items():
        got = victim.counts.get((table, aggregation), {})
        lost = sum(max(v - got.get(k, 0), 0) for k, v in want.items())
        doubled = sum(max(v - want.get(k, 0), 0) for k, v in got.items())
        place = "tables"  # the worst count aggregation (several count the same events)
        result.lost[place] = max(result.lost.get(place, 0), lost)
        result.doubled[place] = max(result.doubled.get(place, 0), doubled)
        if not result.lost[place]:
            del result.lost[place]
        if not result.doubled[place]:
            del result.doubled[place]
    for (table, moment), expected in reference.snapshots.items():
        actual = victim.snapshots.get((table, moment), [])
        if actual == expected:
            continue
        if _close(expected, actual):
            result.notes.append(f"table {table} as of {moment}: equal up to float rounding")
            continue
        result.mismatching_tables.add(table)
        result.problems.append(f"table {table} as of {moment}: {_first_difference(expected, actual)}")
    expected_counters = {k: v for k, v in reference.counters.items() if k != "late_events"}
    actual_counters = {k: v for k, v in victim.counters.items() if k != "late_events"}
    if expected_counters != actual_counters:
        result.mismatching_tables.add("counters")
        result.problems.append(f"counters differ: {expected_counters} != {actual_counters}")
    late = (reference.counters.get("late_events"), victim.counters.get("late_events"))
    if late[0] != late[1]:
        result.notes.append(f"late_events {late[1]} (reference {late[0]}; depends on update windows)")
    if victim.expired_letters != victim.counters.get("expired_events", 0):
        result.problems.append(
            f"{victim.expired_letters} dead letters of expired events, but "
            f"{victim.counters.get('expired_events', 0)} expired events counted"
        )
    if reference.pending != victim.pending:
        result.mismatching_tables.add("pending")
        result.problems.append(f"events waiting for a join: {victim.pending} (reference {reference.pending})")


def _close(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> bool:
    if len(expected) != len(actual):
        return False
    for a, b in zip(expected, actual, strict=True):
        if a.keys() != b.keys():
            return False
        for name, value in a.items():
            other = b[name]
            if isinstance(value, float) and isinstance(other, float):
                if not math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif value != other:
                return False
    return True


def _first_difference(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str:
    if len(expected) != len(actual):
        return f"{len(actual)} keys (reference {len(expected)})"
    for a, b in zip(expected, actual, strict=True):
        if a != b:
            return f"{b} (reference {a})"
    return "?"


# --- trials -------------------------------------------------------------------------------------


@dataclass
class TrialResult:
    """One trial: the kills, the restart, the comparison, and where the crashed states were kept."""

    seed: int
    runs: list[VictimRun]
    comparison: Comparison
    seconds: float
    folder: Path
    work_command: str

    @property
    def ok(self) -> bool:
        return self.comparison.ok

    def describe(self) -> str:
        c = self.comparison
        lines = [
            f"trial seed {self.seed} in {self.folder}:",
            *(f"  run {n}: {run.describe()}" for n, run in enumerate(self.runs)),
            f"  lost {c.lost_events} {c.lost}, double-counted {c.doubled_events} {c.doubled}",
            *(f"  problem: {p}" for p in c.problems[:10]),
            *(f"  note: {n}" for n in c.notes[:5]),
        ]
        if not self.ok:
            lines.append(
                "  reproduce: copy root-after-kill-N (the state run N left) to ROOT and run "
                f"{self.work_command} [--order SEED of run N+1]"
            )
        return "\n".join(lines)


class CrashHarness:
    """A data set, a reference built by an uninterrupted run, and trials that kill and restart."""

    def __init__(self, workdir: Path, config: CrashConfig | None = None) -> None:
        self.workdir = Path(workdir)
        self.config = config or CrashConfig()
        self.dataset: Dataset | None = None
        self.reference: Answers | None = None
        self.reference_run: VictimRun | None = None
        self._loose_reference: Answers | None = None

    @property
    def duration_s(self) -> float:
        """How long an uninterrupted run works (from ready to exit)."""
        assert self.reference_run is not None, "call prepare() first"
        return self.reference_run.seconds

    @property
    def storage_ops(self) -> int:
        """How many writes and deletes an uninterrupted run makes."""
        assert self.reference_run is not None and self.reference_run.storage_ops is not None
        return self.reference_run.storage_ops

    def _reference_in_any_order(self) -> Answers:
        assert self.dataset is not None
        if self._loose_reference is None:
            self._loose_reference = read_answers(self.dataset, self.workdir / "reference", same_order=False)
        return self._loose_reference

    def prepare(self) -> None:
        """Generate the data set and run the work once, uninterrupted (timed), as the reference.

        A run before it compiles what the work needs (numba keeps compiled code on disk): a first
        run on a cold cache took 3.6 s where the work takes 1.4-1.8 s, and kills placed along that
        time mostly came after the runs had finished."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dataset = make_dataset(self.workdir / "data", self.config)
        warm_up = self.workdir / "warm-up"
        run_victim(self.dataset, warm_up, window_rows=self.config.window_rows)
        shutil.rmtree(warm_up, ignore_errors=True)
        root = self.workdir / "reference"
        shutil.rmtree(root, ignore_errors=True)
        self.reference_run = run_victim(self.dataset, root, window_rows=self.config.window_rows)
        self.reference = read_answers(self.dataset, root)

    def trial(
        self,
        seed: int,
        *,
        kill_fractions: Sequence[float] | None = None,
        crash_at: Sequence[str] | None = None,
        reorder: bool = False,
        orders: Sequence[int | None] | None = None,
        keep: bool = True,
    ) -> TrialResult:
        """Kill the work one to three times, then run it to the end and compare with the reference.

        Kill delays are ``fraction * duration_s`` after the victim is ready, fractions drawn
        uniformly from [0, 1] by ``seed`` unless given; ``crash_at`` kills right before those
        storage operations instead (see :func:`crash_point`). With ``reorder`` every restart takes
        the inputs in another order (``orders``: the shuffle seed of each run, None for canonical).
        """
        assert self.dataset is not None and self.reference is not None, "call prepare() first"
        started = time.perf_counter()
        rng = random.Random(seed)
        folder = self.workdir / f"trial-{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        root = folder / "root"
        if crash_at is None and kill_fractions is None:
            kill_fractions = [rng.random() for _ in range(rng.randint(1, 3))]
        kills: list[tuple[float | None, str | None]] = (
            [(None, point) for point in crash_at]
            if crash_at is not None
            else [(f * self.duration_s, None) for f in kill_fractions or []]
        )
        if orders is None:
            orders = [None, *(rng.randrange(1_000_000) if reorder else None for _ in kills)]
        runs: list[VictimRun] = []
        window_rows = self.config.window_rows
        for number, (delay_s, point) in enumerate(kills):
            run = run_victim(
                self.dataset,
                root,
                window_rows=window_rows,
                order_seed=orders[number],
                kill_after_s=delay_s,
                crash_at=point,
            )
            runs.append(run)
            if not run.killed:
                break
            shutil.copytree(root, folder / f"root-after-kill-{number}")
        runs.append(run_victim(self.dataset, root, window_rows=window_rows, order_seed=orders[len(runs)]))
        victim = read_answers(self.dataset, root, same_order=not reorder)
        reference = self.reference if not reorder else self._reference_in_any_order()
        command = (
            f"{sys.executable} -m {VICTIM_MODULE} work --data {self.dataset.folder} --root ROOT "
            f"--window-rows {window_rows}"
        )
        result = TrialResult(seed, runs, compare_answers(reference, victim), 0.0, folder, command)
        result.seconds = time.perf_counter() - started
        if result.ok and not keep:
            shutil.rmtree(folder, ignore_errors=True)
        return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {VICTIM_MODULE}", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    work = commands.add_parser("work", help="Do the work (the victim the harness kills).")
    work.add_argument("--data", required=True, help="The data set folder (made by make_dataset).")
    work.add_argument("--root", required=True, help="The state root.")
    work.add_argument("--window-rows", type=int, default=CrashConfig.window_rows)
    work.add_argument("--order", type=int, default=None, help="Shuffle the inputs with this seed.")
    work.add_argument(
        "--crash-at",
        default=None,
        help="SIGKILL itself before this storage write or delete: a number, or 'TEXT#N' (see crash_point).",
    )
    args = parser.parse_args(argv)
    if args.command == "work":
        _victim_main(args)


if __name__ == "__main__":
    main()
