"""Validation against stream schemas: each bad record is rejected with the right reason."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickwise.events.validate import ARRIVAL_MS, EVENT_MS, validate
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
