"""Small lake files merged: every event kept once, the tables and the lists that name files follow,
and what an interrupted merge leaves is cleaned up."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickwise.dataset import RowEmitter
from clickwise.engine import compact_settled, describe_status
from clickwise.events import Ingestor, Lake
from clickwise.events.compaction import (
    KEEP_REPLACED_MS,
    CompactionError,
    _tier,
    compact_stream,
    translate,
)
from clickwise.events.folding import FOLD_AFTER_MS, fold_manifest
from clickwise.events.lake import Replacement
from clickwise.events.positions import Ledger, load_ledger, save_ledger
from clickwise.events.readers import RawChunk
from clickwise.examples import example_path
from clickwise.spec import Pipeline, load_pipeline
from clickwise.storage import Root, open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.tables.state import load_checkpoint
from clickwise.time import FixedClock

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
NOW = FixedClock(START_MS + 86_400_000)
STREAMS = ("impressions", "clicks", "predictions")
BATCH = 100
POLLS = 12


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    folder = tmp_path_factory.mktemp("gen")
    generate(folder, users=500, hours=5, seed=5, start_ms=START_MS, fmt="jsonl")
    return {s: pajson.read_json(folder / s / "part-00000.jsonl") for s in STREAMS}


def _pipeline() -> Pipeline:
    return load_pipeline(example_path("adclick"))


def _ingest(root: Root, records: dict[str, pa.Table], part: slice = slice(None)) -> None:
    """Each stream in batches of BATCH records: one small lake file per batch and hour."""
    ingestor = Ingestor(_pipeline(), root, clock=NOW)
    for stream, table in records.items():
        batches = list(range(0, table.num_rows, BATCH))[part]
        for first in batches:
            ingestor.ingest_table(table.slice(first, BATCH), stream, tag=f"b{first}")


def _lake_rows(root: Root) -> dict[str, pa.Table]:
    lake = Lake(root, _pipeline())
    return {stream: lake.read_all(stream) for stream in STREAMS}


def _compact_all(root: Root, settled: set[str] | None = None, clock: FixedClock = NOW) -> dict[str, int]:
    lake = Lake(root, _pipeline())
    merged = {}
    for stream in STREAMS:
        held = set(lake.completed_files(stream)) if settled is None else settled
        merged[stream] = compact_stream(lake, stream, held, clock=clock).merged
    return merged


def test_merging_keeps_every_event_once_in_fewer_files(tmp_path: Path, records: dict[str, pa.Table]) -> None:
    root = open_root(str(tmp_path))
    _ingest(root, records)
    lake = Lake(root, _pipeline())
    before_files = {s: len(lake.completed_files(s)) for s in STREAMS}
    before = _lake_rows(root)
    merged = _compact_all(root)
    assert merged["impressions"] >= 8 and merged["predictions"] >= 4
    _compact_all(root)  # the next tier: merged files with merged files
    after_files = {s: len(lake.completed_files(s)) for s in STREAMS}
    assert after_files["impressions"] < before_files["impressions"] // 2
    assert _lake_rows(root) == before  # the same events in the same order
    replaced = {path for s in STREAMS for r in lake.replacements(s) for path in r.replaced}
    assert all(root.exists(path) for path in replaced)  # (kept for readers that listed them)
    _compact_all(root, set(), FixedClock(NOW.now_ms() + KEEP_REPLACED_MS))
    on_disk = {f.path for s in STREAMS for f in lake.files(s, completed_only=False)}
    assert on_disk == {path for s in STREAMS for path in lake.completed_files(s)}  # now deleted


def test_only_settled_files_are_merged(tmp_path: Path, records: dict[str, pa.Table]) -> None:
    root = open_root(str(tmp_path))
    _ingest(root, records)
    lake = Lake(root, _pipeline())
    files = sorted(lake.completed_files("impressions"))
    settled = set(files[: len(files) // 2])
    report = compact_stream(lake, "impressions", settled)
    assert report.merged > 0
    replaced = {path for r in lake.replacements("impressions") for path in r.replaced}
    assert replaced <= settled
    assert set(files) - settled <= set(lake.completed_files("impressions"))


def test_tables_follow_merged_files_in_memory_and_after_a_restart(
    tmp_path: Path, records: dict[str, pa.Table]
) -> None:
    pipeline = _pipeline()
    root = open_root(str(tmp_path / "merged"))
    _ingest(root, records, slice(0, None, 2))
    tables = Tables.open(pipeline, root, clock=NOW)
    tables.catch_up()  # (a checkpoint follows)
    durable = set(load_checkpoint(root, pipeline, rebuild=False).applied)
    assert sum(_compact_all(root, durable).values()) > 0
    _ingest(root, records, slice(1, None, 2))
    tables.catch_up()  # names the merged files instead of the ones it had applied; adds the rest
    reference_root = open_root(str(tmp_path / "reference"))
    _ingest(reference_root, records)
    reference = Tables.open(pipeline, reference_root, clock=NOW)
    reference.catch_up()
    _assert_same(tables, reference)
    lake = Lake(root, pipeline)
    assert tables.applied_files() == {path for s in STREAMS for path in lake.completed_files(s)}
    tables.checkpoint()
    _compact_all(root, set(load_checkpoint(root, pipeline, rebuild=False).applied))
    reopened = Tables.open(pipeline, root, clock=NOW)  # its checkpoint names files merged since
    assert sum(reopened.catch_up().events.values()) == 0  # nothing applied twice
    _assert_same(reopened, reference)


def _assert_same(tables: Tables, reference: Tables) -> None:
    for name in tables.pipeline.tables:
        got, want = tables.snapshot(name, NOW.now_ms()), reference.snapshot(name, NOW.now_ms())
        keys = [(c, "ascending") for c in want.column_names if c.endswith("_id") or c == "country"]
        if keys:
            got, want = got.sort_by(keys), want.sort_by(keys)
        assert got.num_rows == want.num_rows > 0, name
        assert got.equals(want), name


def test_training_rows_are_the_same_when_files_are_merged_between_passes(
    tmp_path: Path, records: dict[str, pa.Table]
) -> None:
    """The row emitter names the files it handled: merged ones must count as handled, not as new
    exposures (their rows would go out twice); folded entries change nothing either."""
    pipeline = _pipeline()
    later = FixedClock(NOW.now_ms() + 10 * FOLD_AFTER_MS)  # (batch entries old enough to fold)
    emitted = {}
    for name, merging in (("plain", False), ("merged", True)):
        root = open_root(str(tmp_path / name))
        tables, emitter = Tables.open(pipeline, root, clock=NOW), RowEmitter(pipeline, root)
        done = {"merged": 0, "folded": 0}
        for part in range(6):  # six passes, each a sixth of every stream, stored like broker polls
            sixth = {s: t.slice(part * t.num_rows // 6, t.num_rows // 6 + 1) for s, t in records.items()}
            _broker_batches(root, sixth, NOW)
            tables.catch_up()
            emitter.emit(tables)
            if merging:
                report = compact_settled(pipeline, root, later)
                done = {key: done[key] + report[key] for key in done}
        assert min(done.values()) > 0 or not merging
        rows = root.read_parquet(root.list_files("rows", suffix=".parquet"))  # (every row as written)
        emitted[name] = rows.sort_by([("event_id", "ascending"), ("correction", "ascending")])
    assert emitted["merged"].num_rows == emitted["plain"].num_rows > 1000
    assert emitted["merged"].equals(emitted["plain"])


def test_what_an_interrupted_merge_leaves_is_removed(tmp_path: Path, records: dict[str, pa.Table]) -> None:
    root = open_root(str(tmp_path))
    _ingest(root, records)
    lake = Lake(root, _pipeline())
    before = _lake_rows(root)
    stray = lake.write("clicks", lake.read_all("clicks"), "compact-000000000001")  # no entry written
    assert _lake_rows(root) == before  # not an event until an entry names it
    compact_stream(lake, "impressions", set(lake.completed_files("impressions")), clock=NOW)
    replaced = sorted(path for r in lake.replacements("impressions") for path in r.replaced)
    report = compact_stream(lake, "clicks", set(lake.completed_files("clicks")), clock=NOW)
    assert report.removed == len(stray) and not any(root.exists(path) for path in stray)
    assert compact_stream(lake, "impressions", set(), clock=NOW).removed == 0  # (kept an hour)
    late = FixedClock(NOW.now_ms() + KEEP_REPLACED_MS)
    assert compact_stream(lake, "impressions", set(), clock=late).removed == len(replaced)
    assert not any(root.exists(path) for path in replaced)
    assert _lake_rows(root) == before


def test_translate_names_a_merged_file_only_for_lists_holding_all_its_files() -> None:
    first = Replacement(1, frozenset({"a", "b", "c"}), "m1")
    second = Replacement(2, frozenset({"m1", "d"}), "m2")
    assert translate(["a", "b", "c", "d", "x"], [first, second]) == ["m2", "x"]
    assert translate(["a", "b", "c"], [first]) == ["m1"]
    assert translate(["x"], [first, second]) == ["x"]
    with pytest.raises(CompactionError, match="another process"):
        translate(["a", "x"], [first])


def _broker_batches(root: Root, records: dict[str, pa.Table], clock: FixedClock) -> dict[str, Ledger]:
    """Each stream's records stored like a Kafka source's polls: batches with positions and marks."""
    pipeline = _pipeline()
    ingestor = Ingestor(pipeline, root, clock=clock)
    ledgers = {}
    for stream, table in records.items():
        ledger = load_ledger(Lake(root, pipeline), stream, "kafka")
        for first in range(0, table.num_rows, BATCH):
            chunk = RawChunk(table.slice(first, BATCH), 0, lambda rows: [])
            partition = f"{stream}:{first // BATCH % 3}"
            positions = {partition: ledger.positions.get(partition, 0) + BATCH}
            ledger.store(
                ingestor, stream, chunk, positions, source="kafka", maybe_leftovers=False,
                marks={partition: START_MS + first},
            )  # fmt: skip
        ledgers[stream] = ledger
    return ledgers


def _entries(root: Root, stream: str) -> list[str]:
    return root.list_files(f"lake/_manifest/{stream}", suffix=".json")


def test_folding_keeps_the_lake_files_and_the_positions(tmp_path: Path, records: dict[str, pa.Table]) -> None:
    root = open_root(str(tmp_path))
    ledgers = _broker_batches(root, records, NOW)
    _compact_all(root)
    lake = Lake(root, _pipeline())
    before = {s: sorted(lake.completed_files(s)) for s in STREAMS}
    rows = _lake_rows(root)
    too_young = fold_manifest(lake, "impressions", set(), now_ms=NOW.now_ms() + FOLD_AFTER_MS // 2)
    assert too_young == 0
    later = NOW.now_ms() + KEEP_REPLACED_MS + FOLD_AFTER_MS
    for stream in STREAMS:
        entries = len(_entries(root, stream))
        assert fold_manifest(lake, stream, set(), now_ms=later) == entries  # every batch and merge
        assert _entries(root, stream) == []
        loaded = load_ledger(lake, stream, "kafka")  # (no cache: the summary alone)
        save_ledger(root, stream, Ledger("kafka", 1, {"x:0": 1}, {"x:0": 1}))  # a cache lagging it
        assert load_ledger(lake, stream, "kafka") == loaded
        want = ledgers[stream]
        assert (loaded.sequence, loaded.positions, loaded.marks) == (
            want.sequence,
            want.positions,
            want.marks,
        )
    assert {s: sorted(lake.completed_files(s)) for s in STREAMS} == before
    assert _lake_rows(root) == rows
    fresh = records["impressions"].slice(0, 4 * BATCH)  # the same records under new ids
    fresh = fresh.set_column(0, "impression_id", pc.binary_join_element_wise("n", fresh.column(0), ""))
    ledger = _broker_batches(root, {"impressions": fresh}, FixedClock(later))["impressions"]
    assert ledger.sequence == ledgers["impressions"].sequence + 4  # the next batches, not folded ones
    assert lake.count("impressions") == rows["impressions"].num_rows + fresh.num_rows
    number = lake.last_compaction("impressions")
    settled = set(lake.completed_files("impressions"))
    assert number > 0 and compact_stream(lake, "impressions", settled, clock=FixedClock(later)).merged
    assert lake.replacements("impressions")[0].number == number + 1  # numbers go on after a fold


def test_merges_fold_once_no_saved_list_names_their_files_which_go_an_hour_later(
    tmp_path: Path, records: dict[str, pa.Table]
) -> None:
    root = open_root(str(tmp_path))
    _broker_batches(root, records, NOW)
    lake = Lake(root, _pipeline())
    compact_stream(lake, "impressions", set(lake.completed_files("impressions")), clock=NOW)
    merges = lake.replacements("impressions")
    replaced = {path for merge in merges for path in merge.replaced}
    files = sorted(lake.completed_files("impressions"))
    soon = NOW.now_ms() + FOLD_AFTER_MS
    named = {sorted(merges[0].replaced)[0]}  # e.g. the tables' checkpoint, not yet saved translated
    batches = len(_entries(root, "impressions")) - len(merges)
    assert fold_manifest(lake, "impressions", named, now_ms=soon) == batches  # the batches only
    assert lake.replacements("impressions") == merges
    assert fold_manifest(lake, "impressions", set(), now_ms=soon) == len(merges) > 0
    assert lake.replacements("impressions") == [] and _entries(root, "impressions") == []
    assert sorted(lake.completed_files("impressions")) == files
    shown = describe_status(_pipeline(), root)["streams"]["impressions"]  # (clickwise status)
    assert (shown["files"], shown["manifest_entries"], shown["events"]) == (
        len(files),
        0,
        lake.count("impressions"),
    )
    assert all(root.exists(path) for path in replaced)  # (kept for readers that listed them)
    fold_manifest(lake, "impressions", set(), now_ms=NOW.now_ms() + KEEP_REPLACED_MS)
    assert not any(root.exists(path) for path in replaced)
    assert sorted(lake.completed_files("impressions")) == files
    stale = f"lake/_manifest/impressions/compact-{merges[0].number:012d}.json"
    root.write_bytes(stale, b'{"compaction": 1, "files": ["x"], "replaces": ["y"]}')  # left by a crash
    assert "x" not in lake.completed_files("impressions")  # covered by the summary: skipped
    fold_manifest(lake, "impressions", set(), now_ms=soon)
    assert not root.exists(stale)


def test_a_tier_is_files_of_like_size_up_to_a_file_that_is_not_small() -> None:
    mb = 1 << 20
    sizes = {"a": 1 * mb, "b": 1 * mb, "c": 2 * mb, "d": 3 * mb, "e": 20 * mb}
    assert _tier(list(sizes), sizes) == ["a", "b", "c", "d"]  # e is more than twice a-d together
    large = {name: 40 * mb for name in "abcdef"}
    assert _tier(list(large), large) == ["a", "b"]  # 80 MB merged: no longer small
    straggler = {"tiny": 2_000, **{f"poll{i}": 50_000 for i in range(5)}}  # (under FLOOR_BYTES)
    assert len(_tier(list(straggler), straggler)) == 6


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.sampled_from(["poll", "poll", "apply", "checkpoint", "merge", "merge", "restart"]),
        min_size=8,
        max_size=30,
    )
)
def test_any_order_of_polls_merges_and_restarts_counts_every_event_once(
    tmp_path_factory: pytest.TempPathFactory, records: dict[str, pa.Table], steps: list[str]
) -> None:
    """Polls stored, applied, checkpointed, merged (and folded, an hour and more later each time)
    and restarts from whatever was saved, in any order: the tables and the lake end equal to one
    pass over the same records."""
    pipeline = _pipeline()
    root = open_root(str(tmp_path_factory.mktemp("steps")))
    cuts = {s: [i * t.num_rows // 8 for i in range(9)] for s, t in records.items()}
    polls = [
        {s: t.slice(cuts[s][i], cuts[s][i + 1] - cuts[s][i]) for s, t in records.items()} for i in range(8)
    ]
    clock = FixedClock(NOW.now_ms())
    tables, emitter = Tables.open(pipeline, root, clock=NOW), RowEmitter(pipeline, root)
    for step in [*steps, *["poll"] * POLLS, "apply"]:
        if step == "poll" and polls:
            _broker_batches(root, polls.pop(0), clock)
        elif step == "apply":
            tables.catch_up(persist=False)
            emitter.emit(tables)
        elif step == "checkpoint":
            tables.checkpoint()
        elif step == "merge":
            clock = FixedClock(clock.now_ms() + KEEP_REPLACED_MS + FOLD_AFTER_MS)
            compact_settled(pipeline, root, clock)
        elif step == "restart":  # what was not checkpointed is applied again from the lake
            tables, emitter = Tables.open(pipeline, root, clock=NOW), RowEmitter(pipeline, root)
    reference_root = open_root(str(tmp_path_factory.mktemp("reference")))
    _ingest(reference_root, records)
    reference = Tables.open(pipeline, reference_root, clock=NOW)
    reference.catch_up()
    _assert_same(tables, reference)
    lake = Lake(root, pipeline)
    assert {s: lake.count(s) for s in STREAMS} == {
        s: Lake(reference_root, pipeline).count(s) for s in STREAMS
    }


def test_merges_without_the_emitter_running_keep_its_saved_list_translatable(
    tmp_path: Path, records: dict[str, pa.Table]
) -> None:
    """Rows emitted by one run, then files merged by a run without rows (or the service): the
    next emitter must find its list translatable and emit what a run without merges would."""
    pipeline = _pipeline()
    halves = [{s: t.slice(0, t.num_rows // 2) for s, t in records.items()}]
    halves.append({s: t.slice(t.num_rows // 2) for s, t in records.items()})
    emitted = {}
    for name, merging in (("plain", False), ("merged", True)):
        root = open_root(str(tmp_path / name))
        tables = Tables.open(pipeline, root, clock=NOW)
        _broker_batches(root, halves[0], NOW)
        tables.catch_up()
        RowEmitter(pipeline, root).emit(tables)
        _broker_batches(root, halves[1], NOW)
        tables.catch_up()  # (checkpointed; no rows emitted for these files yet)
        if merging:
            assert compact_settled(pipeline, root, NOW)["merged"] > 0
        RowEmitter(pipeline, root).emit(tables)
        rows = root.read_parquet(root.list_files("rows", suffix=".parquet"))
        emitted[name] = rows.sort_by([("event_id", "ascending"), ("correction", "ascending")])
    assert emitted["merged"].num_rows == emitted["plain"].num_rows > 1000
    assert emitted["merged"].equals(emitted["plain"])


def test_a_storage_error_while_merging_is_reported_and_the_loop_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import clickwise.engine as engine_module
    from clickwise.engine import run_loop
    from clickwise.errors import StorageError

    def failing(*args: object) -> dict[str, int]:
        raise StorageError("the object store timed out")

    monkeypatch.setattr(engine_module, "compact_settled", failing)
    generate(tmp_path / "in", users=50, hours=1, seed=3, start_ms=START_MS, fmt="jsonl")
    root = open_root(str(tmp_path / "root"))
    folders = [str(tmp_path / "in" / stream) for stream in STREAMS]  # (not truth/)
    passes = list(run_loop(_pipeline(), root, watch=folders, once=True, rows=False))
    assert passes[0]["lake_compaction"] is None and sum(passes[0]["tables"]["events"].values()) > 0
    assert "merging small lake files failed" in capsys.readouterr().err
