"""A declared event id that is not unique in the data: an exact re-delivery is a duplicate, a record
whose id was stored with different content is a conflict (dead letters, counted apart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clickwise import cli
from clickwise.cli import app
from clickwise.events import DeadLetters, Ingestor
from clickwise.spec import parse_pipeline
from clickwise.storage import open_root
from clickwise.testing import SMALL_PIPELINE, FixedClock, small_pipeline, write_jsonl
from clickwise.time import format_ms

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
NOW = FixedClock(T0 + 30 * 86_400_000)
# views with an arrival time taken from the data, and clicks with an id and ISO times
PIPELINE = SMALL_PIPELINE.replace(
    "      ts: int\n    time: {field: ts, format: epoch_ms}\n",
    "      ts: int\n      arrived: {type: int, required: false}\n"
    "    time: {field: ts, format: epoch_ms}\n    arrival_time: {field: arrived, format: epoch_ms}\n",
).replace("      when: string\n    time: {field: when, format: iso}\n",
          "      when: string\n    time: {field: when, format: iso}\n    event_id: view_id\n")  # fmt: skip


def _view(view_id: str, user: str = "u1", ts: int = T0, **more: Any) -> dict[str, Any]:
    return {"view_id": view_id, "user_id": user, "price": 0.5, "ts": ts, **more}


def _ingest(ingestor: Ingestor, records: list[dict[str, Any]], tag: str, stream: str = "views") -> Any:
    return ingestor.ingest_table(pa.Table.from_pylist(records), stream, tag=tag)


@pytest.fixture
def ingestor(tmp_path: Path) -> Ingestor:
    return Ingestor(parse_pipeline(PIPELINE, source="test"), open_root(tmp_path / "root"), clock=NOW)


def test_within_one_batch_a_redelivery_is_a_duplicate_and_a_different_record_a_conflict(
    ingestor: Ingestor,
) -> None:
    records = [
        _view("a", arrived=T0 + 5),
        _view("a", arrived=T0 + 9_000),  # the same record, delivered again later
        _view("a", user="u2", ts=T0 + 61_000),  # another record with the same id
        _view("b"),
    ]
    counts = _ingest(ingestor, records, "b1")
    assert (counts.accepted, counts.duplicates, counts.conflicts, counts.rejected) == (2, 1, 1, 0)
    assert counts.problems == [
        (2, f"conflicting duplicate: event id 'a' is stored with different content (the stored "
            f"record's event time is {format_ms(T0)})", "view_id"),
    ]  # fmt: skip
    stored = ingestor.lake.read_all("views")
    assert stored.column("user_id").to_pylist() == ["u1", "u1"]
    dead = DeadLetters(ingestor.lake.root).read("views")
    assert dead.column("reason").to_pylist()[0].startswith("conflicting duplicate: event id 'a'")
    assert orjson.loads(dead.column("raw")[0].as_py())["user_id"] == "u2"
    assert dead.column("row").to_pylist() == [2] and dead.column("field").to_pylist() == ["view_id"]


@pytest.mark.parametrize("restart", [False, True], ids=["same process", "after a restart"])
def test_across_batches_the_stored_record_decides(tmp_path: Path, ingestor: Ingestor, restart: bool) -> None:
    _ingest(ingestor, [_view("a", arrived=T0 + 5), _view("b", ts=T0 + 2 * HOUR)], "b1")
    if restart:  # the first copies are only in the lake: their content is read back from it
        ingestor = Ingestor(ingestor.pipeline, open_root(tmp_path / "root"), clock=NOW)
    again = [
        _view("b", ts=T0 + 2 * HOUR, arrived=T0 + 3 * HOUR),  # re-delivered
        _view("a", user="u9", ts=T0 + 7),  # conflicts
        _view("a", arrived=T0 + HOUR),  # re-delivered
        _view("c"),
    ]
    counts = _ingest(ingestor, again, "b2")
    assert (counts.accepted, counts.duplicates, counts.conflicts, counts.rejected) == (1, 2, 1, 0)
    assert [row for row, _, _ in counts.problems] == [1]
    assert f"the stored record's event time is {format_ms(T0)}" in counts.problems[0][1]
    assert ingestor.lake.read_all("views").column("view_id").to_pylist() == ["a", "c", "b"]


def test_a_time_written_another_way_is_the_same_record(ingestor: Ingestor) -> None:
    clicks = [
        {"view_id": "a", "user_id": "u", "when": "2023-11-01T08:00:00+08:00"},
        {"view_id": "a", "user_id": "u", "when": "2023-11-01T00:00:00Z"},
        {"view_id": "a", "user_id": "u", "when": "2023-11-01T00:00:00.001Z"},
    ]
    counts = _ingest(ingestor, clicks, "c1", stream="clicks")
    assert (counts.accepted, counts.duplicates, counts.conflicts) == (1, 1, 1)


def test_files_and_the_cli_count_conflicts_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline_file = tmp_path / "pipeline.yaml"
    pipeline_file.write_text(PIPELINE)
    first = write_jsonl(tmp_path / "in" / "views.jsonl", [_view("a"), _view("a"), _view("a", user="x")])
    second = write_jsonl(tmp_path / "in2" / "views.jsonl", [_view("a", ts=T0 + 1), _view("b")])
    root = str(tmp_path / "root")
    result = CliRunner().invoke(
        app, ["ingest", "-p", str(pipeline_file), "--root", root, str(first), str(second), "--json"]
    )
    assert result.exit_code == 0, result.output
    views = orjson.loads(result.output)["views"]
    assert (views["accepted"], views["duplicates"], views["conflicts"], views["rejected"]) == (2, 1, 2, 0)
    dead = DeadLetters(open_root(root)).read("views")
    assert dead.num_rows == 2 and dead.column("source").to_pylist() == [str(first), str(second)]
    monkeypatch.setattr(cli.out, "width", 200)
    third = write_jsonl(tmp_path / "in3" / "views.jsonl", [_view("b", user="y"), _view("d")])
    printed = CliRunner().invoke(app, ["ingest", "-p", str(pipeline_file), "--root", root, str(third)])
    assert printed.exit_code == 0, printed.output
    header, row = (line for line in printed.output.splitlines() if "accepted" in line or "views" in line)
    assert [cell.strip() for cell in header.split("┃")[1:6]] == [
        "stream", "accepted", "rejected", "duplicates", "conflicts"
    ]  # fmt: skip
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["views", "1", "0", "0", "1"]


RECORDS = st.lists(
    st.tuples(st.sampled_from("abcd"), st.sampled_from(["u1", "u2"]), st.integers(0, 1), st.integers(0, 3)),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(RECORDS, st.lists(st.integers(1, 6), min_size=1, max_size=6), st.lists(st.booleans(), max_size=6))
def test_random_batches_match_a_brute_force_oracle(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[str, str, int, int]], sizes: list[int],
    restarts: list[bool],
) -> None:  # fmt: skip
    """Whatever the batching and restarts: the first record of each id is stored, a later one with
    equal content (the arrival time may differ) is a duplicate, any other a conflict naming the
    stored record's time."""
    root = tmp_path_factory.mktemp("root")
    pipeline = parse_pipeline(PIPELINE, source="test")
    ingestor = Ingestor(pipeline, open_root(root), clock=NOW)
    views = [_view(i, user, T0 + HOUR * hour, arrived=T0 + 10 * HOUR + n) for n, (i, user, hour, _) in
             enumerate(records)]  # fmt: skip
    for n, (_, _, _, price) in enumerate(records):
        views[n]["price"] = float(price % 2)
    first: dict[str, dict[str, Any]] = {}
    expected = {"accepted": 0, "duplicates": 0, "conflicts": 0}
    expected_reasons = []
    for view in views:
        stored = first.setdefault(str(view["view_id"]), view)
        if stored is view:
            expected["accepted"] += 1
        elif all(stored[k] == view[k] for k in ("user_id", "price", "ts")):
            expected["duplicates"] += 1
        else:
            expected["conflicts"] += 1
            expected_reasons.append(f"event time is {format_ms(int(stored['ts']))})")
    got = {"accepted": 0, "duplicates": 0, "conflicts": 0}
    reasons = []
    start = 0
    for number, size in enumerate([*sizes, len(views)]):
        batch = views[start : start + size]
        start += size
        if not batch:
            continue
        counts = _ingest(ingestor, batch, f"b{number}")
        for name in got:
            got[name] += getattr(counts, name)
        reasons += [reason.rsplit("(the stored record's ", 1)[1] for _, reason, _ in counts.problems]
        if number < len(restarts) and restarts[number]:
            ingestor = Ingestor(pipeline, open_root(root), clock=NOW)
    assert got == expected
    assert reasons == expected_reasons
    stored_ids = sorted(ingestor.lake.read_all("views").column("view_id").to_pylist()) if first else []
    assert stored_ids == sorted(first)


def test_a_stream_without_event_id_keeps_everything(tmp_path: Path) -> None:
    ingestor = Ingestor(small_pipeline(), open_root(tmp_path / "root"), clock=NOW)
    clicks = [{"view_id": "a", "user_id": "u", "when": "2023-11-01T00:00:00Z"}] * 2
    counts = _ingest(ingestor, clicks, "c1", stream="clicks")
    assert (counts.accepted, counts.duplicates, counts.conflicts) == (2, 0, 0)


def test_the_http_answer_counts_conflicts_apart(tmp_path: Path) -> None:
    from clickwise.serve import Service

    service = Service(parse_pipeline(PIPELINE, source="test"), open_root(tmp_path / "root"), clock=NOW)
    try:
        service.ingest("views", [_view("a"), _view("b")])
        answer = service.ingest("views", [_view("a", arrived=T0 + 1), _view("b", user="u7"), _view("c")])
    finally:
        service.close()
    body = answer.to_json()
    assert (body["accepted"], body["rejected"], body["duplicates"], body["conflicts"]) == (1, 0, 1, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "view_id")]
    assert body["errors"][0]["reason"].startswith("conflicting duplicate: event id 'b'")
