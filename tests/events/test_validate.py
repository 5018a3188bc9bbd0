"""Validation against stream schemas: each bad record is rejected with the right reason."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.events.validate import ARRIVAL_MS, EVENT_MS, validate, validate_one
from clickwise.examples import example_path
from clickwise.spec import StreamDef, load_pipeline
from clickwise.testing import small_pipeline

NOW_MS = 1_800_000_000_000
VIEWS = small_pipeline().streams["views"]
CLICKS = small_pipeline().streams["clicks"]


def _views(**columns: list[object]) -> pa.Table:
    base: dict[str, list[object]] = {
        "view_id": ["v1"], "user_id": ["u1"], "price": [0.5], "ts": [1_700_000_000_000],
    }  # fmt: skip
    base.update(columns)
    return pa.table(base)


def test_a_clean_record_is_typed_and_timed() -> None:
    good, rejected = validate(_views(), VIEWS, now_ms=NOW_MS)
    assert len(rejected.rows) == 0
    assert good.to_pylist() == [
        {"view_id": "v1", "user_id": "u1", "price": 0.5, "ts": 1_700_000_000_000,
         EVENT_MS: 1_700_000_000_000, ARRIVAL_MS: NOW_MS}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("price", "cheap", "wrong type for 'price': got 'cheap'"),
        ("price", -1.0, "'price' is below its minimum: -1.0"),
        ("price", float("nan"), "'price' is not a finite number"),
        ("view_id", None, "missing required field 'view_id'"),
        ("view_id", "x" * 33, "'view_id' is too long: 33 bytes"),
        ("ts", "soon", "wrong type for 'ts': got 'soon'"),
        ("ts", 12, "impossible time in 'ts': 12"),
        ("ts", NOW_MS + 3 * 86_400_000, "impossible time in 'ts'"),
        ("ts", 1.7e12 + 0.5, "wrong type for 'ts'"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(column: str, value: object, reason: str) -> None:
    good, rejected = validate(_views(**{column: [value]}), VIEWS, now_ms=NOW_MS)
    assert good.num_rows == 0
    assert rejected.rows.tolist() == [0]
    assert reason in rejected.reasons[0]


def test_a_list_or_an_object_where_a_time_belongs_is_rejected_not_a_crash() -> None:
    table = pa.Table.from_pylist(
        [
            {"view_id": "a", "user_id": "u", "price": 1.0, "ts": []},
            {"view_id": "b", "user_id": "u", "price": 1.0, "ts": [5]},
        ]
    )
    good, rejected = validate(table, VIEWS, now_ms=NOW_MS)
    assert good.num_rows == 0 and rejected.rows.tolist() == [0, 1]
    objects = pa.Table.from_pylist([{"view_id": "a", "user_id": "u", "price": 1.0, "ts": {"at": 1}}])
    assert validate(objects, VIEWS, now_ms=NOW_MS)[1].rows.tolist() == [0]


def test_lenient_casts_accept_text_numbers() -> None:
    good, rejected = validate(_views(price=["0.25"], ts=["1700000000000"]), VIEWS, now_ms=NOW_MS)
    assert len(rejected.rows) == 0
    assert good.column("price").to_pylist() == [0.25] and good.column(EVENT_MS).to_pylist() == [
        1_700_000_000_000
    ]


def test_a_missing_column_rejects_every_row() -> None:
    table = pa.table({"view_id": ["a", "b"], "price": [1.0, 2.0], "ts": [1_700_000_000_000] * 2})
    good, rejected = validate(table, VIEWS, now_ms=NOW_MS)
    assert good.num_rows == 0 and set(rejected.reasons) == {"missing required field 'user_id'"}


def test_iso_times_and_unreadable_ones() -> None:
    table = pa.table({"view_id": ["a", "b"], "user_id": ["u", "u"], "when": ["2024-01-01T00:00:00Z", "nope"]})
    good, rejected = validate(table, CLICKS, now_ms=NOW_MS)
    assert good.column(EVENT_MS).to_pylist() == [1_704_067_200_000]
    assert rejected.reasons == ["unreadable time in 'when': 'nope'"]


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(max_size=40)),
            st.one_of(st.none(), st.floats(allow_nan=True), st.just("1.5"), st.just("x")),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_every_row_is_either_kept_or_rejected(rows: list[tuple[str | None, object]]) -> None:
    ids = [r[0] for r in rows]
    prices = [None if r[1] is None else str(r[1]) for r in rows]
    table = pa.table(
        {"view_id": ids, "user_id": ["u"] * len(rows), "price": prices, "ts": [1_700_000_000_000] * len(rows)}
    )
    good, rejected = validate(table, VIEWS, now_ms=NOW_MS)
    assert good.num_rows + len(rejected.rows) == len(rows)
    expected_good = 0
    for view_id, price in zip(ids, prices, strict=True):
        try:
            number = float(price) if price is not None else None
        except ValueError:
            number = None
        ok = (
            view_id is not None
            and len(view_id.encode()) <= 32
            and number is not None
            and number == number
            and abs(number) != float("inf")
            and number >= 0
        )
        expected_good += ok
    assert good.num_rows == expected_good


def _fraction_stream(time: dict[str, str]) -> StreamDef:
    return StreamDef.model_validate(
        {
            "fields": {"bid_id": "string", "ts": "string"},
            "time": {"field": "ts", **time},
            "event_id": "bid_id",
        }
    )


@pytest.mark.parametrize(
    ("time", "texts"),
    [
        ({"format": "%Y%m%d%H%M%S%f", "timezone": "Asia/Shanghai"}, ["20170613000004123", "20170613000004"]),
        ({"format": "%Y%m%d%H%M%S%f", "timezone": "+08:00"}, ["20170613000004123", "20170613000004"]),
        (
            {"format": "%Y-%m-%d %H:%M:%S.%f%z"},
            ["2017-06-13 00:00:04.123+0800", "2017-06-13 00:00:00.4+0800"],
        ),
    ],
)
def test_percent_f_keeps_the_milliseconds_of_http_and_broker_records(
    time: dict[str, str], texts: list[str]
) -> None:
    records = pa.Table.from_pylist([{"bid_id": f"b{i}", "ts": text} for i, text in enumerate(texts)])
    good, rejected = validate(records, _fraction_stream(time), now_ms=NOW_MS)
    assert len(rejected.rows) == 0
    assert good.column(EVENT_MS).to_pylist() == [1_497_283_204_123, 1_497_283_200_400]


def test_a_percent_f_pattern_that_cannot_be_read_is_refused_naming_one_that_can() -> None:
    with pytest.raises(ValueError, match=r"'%T' cannot be combined with %f.*'%Y-%m-%d %H:%M:%S\.%f'"):
        _fraction_stream({"format": "%Y-%m-%d %T.%f", "timezone": "UTC"})


# --- the one-record form -----------------------------------------------------------------------

IMPRESSIONS = load_pipeline(example_path("adclick")).streams["impressions"]
MIXED = StreamDef.model_validate(
    {
        "fields": {
            "name": {"type": "string", "max_length": 6, "required": False},
            "flag": {"type": "bool", "required": False},
            "count": {"type": "int", "min": -5, "max": 2**60},
            "share": {"type": "float", "min": 0, "max": 1, "required": False},
            "at": "int",
            "seen": {"type": "int", "required": False},
        },
        "time": {"field": "at", "format": "epoch_s"},
        "arrival_time": {"field": "seen", "format": "epoch_us"},
    }
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -5, -6, 2**53 - 1, 2**53, 2**60, 1_700_000_000, 1_700_000_000_000]),
    st.sampled_from([1_899_000_000_000, 1_700_000_000_000_000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.0, 3.0]),
    st.text(max_size=8),
    st.sampled_from(["7", " 8 ", "true", "1.0", "\x00json:[1]", "é" * 4, "2024-01-01T00:00:00Z"]),
)


PLAIN = {
    "string": st.text(max_size=8),
    "bool": st.booleans(),
    "int": st.sampled_from([1_700_000_000, 1_700_000_000_000, 1_700_000_000_000_000, 0, 7]),
    "float": st.one_of(st.integers(0, 2), st.floats(0, 1)),
}


EPOCH_SCALE = {"epoch_s": 1, "epoch_ms": 1000, "epoch_us": 1_000_000}


def _record(stream: StreamDef, draw: st.DrawFn) -> dict[str, object]:
    """Mostly values of the field's own type (so the fast path answers often), some anything."""
    times = {t.field: t.format for t in (stream.time, stream.arrival_time) if t is not None}
    record: dict[str, object] = {}
    for name, spec in stream.fields.items():
        choice = draw(st.integers(0, 9))
        plain = PLAIN[spec.type]
        if name in times:
            good = 1_700_000_000 * EPOCH_SCALE[times[name]]
            plain = st.sampled_from([good, good + 1, good - 999, 0, 2**53 + 1])
        if choice:
            record[name] = draw(plain if choice > 1 else VALUES)
    record["extra"] = draw(VALUES)
    return record


ANSWERED: dict[str, int] = {}


@settings(max_examples=500, derandomize=True)  # the same examples each run: the count below is stable
@given(st.data())
def test_validate_one_equals_validate_whenever_it_answers(data: st.DataObject) -> None:
    for stream in (VIEWS, IMPRESSIONS, MIXED):
        record = _record(stream, data.draw)
        one = validate_one(record, stream, now_ms=NOW_MS)
        if one is None:
            continue  # not plainly valid: the column path judges it
        ANSWERED[stream.time.format] = ANSWERED.get(stream.time.format, 0) + 1
        good, rejected = validate(pa.Table.from_pylist([record]), stream, now_ms=NOW_MS)
        assert len(rejected.rows) == 0
        assert good.to_pylist() == [one]
        assert list(one) == list(good.column_names)


def test_validate_one_answers_for_plain_records_and_defers_the_rest() -> None:
    assert not ANSWERED or min(ANSWERED.values()) >= 5  # the property above compared real answers
    plain = {"view_id": "v1", "user_id": "u1", "price": 2, "ts": 1_700_000_000_000}
    row = validate_one(plain, VIEWS, now_ms=NOW_MS)
    assert row == {"view_id": "v1", "user_id": "u1", "price": 2.0, "ts": 1_700_000_000_000,
                   EVENT_MS: 1_700_000_000_000, ARRIVAL_MS: NOW_MS}  # fmt: skip
    assert type(row["price"]) is float
    mixed = {"name": "ab", "flag": False, "count": -5, "share": 1, "at": 1_700_000_000,
             "seen": 1_700_000_000_000_123}  # fmt: skip
    assert validate_one(mixed, MIXED, now_ms=NOW_MS) == {
        **mixed, "share": 1.0, EVENT_MS: 1_700_000_000_000, ARRIVAL_MS: 1_700_000_000_000,
    }  # fmt: skip
    bad_values = [{"price": "2"}, {"price": -1}, {"price": True}, {"ts": 12}, {"ts": None}]
    bad_values.append({"view_id": "x" * 33})
    for bad in bad_values:
        assert validate_one({**plain, **bad}, VIEWS, now_ms=NOW_MS) is None


def test_unknown_keys_are_ignored_even_those_polars_would_confuse_with_a_field() -> None:
    record = {"view_id": "v1", "user_id": "u", "price": 1.0, "ts": 1_700_000_000_000, "ts\x00": "x", "s": [1]}
    valid, rejected = validate(pa.Table.from_pylist([record]), VIEWS, now_ms=NOW_MS)
    assert valid.column("view_id").to_pylist() == ["v1"] and len(rejected.rows) == 0
    nothing_known = pa.Table.from_pylist([{"s\x00": 1, "s": 2}, {"other": 2}])
    valid, rejected = validate(nothing_known, VIEWS, now_ms=NOW_MS)
    assert valid.num_rows == 0 and rejected.rows.tolist() == [0, 1]
