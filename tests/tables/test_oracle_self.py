"""The oracle itself, on tiny streams whose answers are computed by hand (no engine needed)."""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest
from tables_oracle import (
    ARRIVAL_MS,
    EVENT_MS,
    Oracle,
    diff_row,
    fixed_point_total,
    hll_estimate,
    matches,
    same_value,
    window_start_ms,
)

from clickwise.spec import FilterDef, Pipeline, parse_pipeline

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary, so a multiple of every hop here
W = 600_000  # 10m
H = 120_000  # 2m

PIPELINE = """
version: 1
name: oracle_self
streams:
  imps:
    fields:
      imp_id: string
      user: {type: string, required: false}
      country: {type: string, required: false}
      price: {type: float, required: false}
      qty: {type: int, required: false}
      tag: {type: string, required: false}
      ts: int
    time: {field: ts, format: epoch_ms}
    event_id: imp_id
  clicks:
    fields:
      click_id: string
      imp_id: {type: string, required: false}
      user: {type: string, required: false}
      ts: int
    time: {field: ts, format: epoch_ms}
    event_id: click_id
    joins:
      - {table: imp_country, key: {imp_id: imp_id}, take: {country: country}}
tables:
  user:
    key: [user]
    aggregations:
      n_10m: {stream: imps, op: count, window: 10m, hop: 2m}
      n_total: {stream: imps, op: count, window: lifetime}
      qty_sum: {stream: imps, op: sum, field: qty, window: 10m, hop: 2m}
      price_sum: {stream: imps, op: sum, field: price, window: 10m, hop: 2m}
      price_mean: {stream: imps, op: mean, field: price, window: 10m, hop: 2m}
      qty_mean: {stream: imps, op: mean, field: qty, window: lifetime}
      price_min: {stream: imps, op: min, field: price, window: lifetime}
      price_max: {stream: imps, op: max, field: price, window: lifetime}
      tag_first: {stream: imps, op: first, field: tag, window: lifetime}
      tag_last: {stream: imps, op: last, field: tag, window: lifetime}
      qty_first: {stream: imps, op: first, field: qty, window: lifetime}
      qty_last: {stream: imps, op: last, field: qty, window: lifetime}
      tags: {stream: imps, op: distinct_count, field: tag, window: lifetime, exact_up_to: 3}
      big: {stream: imps, op: count, window: lifetime, filter: {field: qty, op: ge, value: 5}}
      not_x: {stream: imps, op: count, window: lifetime, filter: {field: tag, op: ne, value: x}}
      null_tag: {stream: imps, op: count, window: lifetime, filter: {field: tag, op: is_null}}
      tag_in: {stream: imps, op: count, window: lifetime, filter: {field: tag, op: in, value: [x, y]}}
      tag_not_in: {stream: imps, op: count, window: lifetime, filter: {field: tag, op: not_in, value: [x]}}
      since: {stream: imps, op: time_since_last, window: lifetime}
      since_big_10m:
        {stream: imps, op: time_since_last, window: 10m, hop: 2m, filter: {field: qty, op: ge, value: 5}}
      clicks_10m: {stream: clicks, op: count, window: 10m, hop: 2m}
      ctr: {op: ratio, numerator: clicks_10m, denominator: n_10m}
      ctr_prior: {op: ratio, numerator: clicks_10m, denominator: n_10m, prior: {value: 0.5, weight: 2}}
  user_country:
    key: [user, country]
    aggregations:
      n_total: {stream: imps, op: count, window: lifetime}
      clicks_total: {stream: clicks, op: count, window: lifetime}
  imp_country:
    key: [imp_id]
    aggregations:
      country: {stream: imps, op: last, field: country, window: lifetime}
  country:
    key: [country]
    aggregations:
      imps: {stream: imps, op: count, window: lifetime}
      clicks: {stream: clicks, op: count, window: lifetime}
      ctr: {op: ratio, numerator: clicks, denominator: imps}
  everything:
    key: []
    aggregations:
      imps: {stream: imps, op: count, window: lifetime}
      clicks: {stream: clicks, op: count, window: lifetime}
"""

_counter = iter(range(1_000_000))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return parse_pipeline(PIPELINE, source="test_oracle_self")


def imp(
    ts: int, user: str | None = "a", *, arrival: int | None = None, **fields: object
) -> dict[str, object]:
    event: dict[str, object] = {
        "imp_id": fields.pop("imp_id", f"i{next(_counter)}"),
        "user": user,
        "country": None,
        "price": None,
        "qty": None,
        "tag": None,
        "ts": ts,
    }
    event.update(fields)
    event[EVENT_MS] = ts
    event[ARRIVAL_MS] = ts if arrival is None else arrival
    return event


def click(ts: int, imp_id: str | None, user: str | None = "a") -> dict[str, object]:
    return {
        "click_id": f"c{next(_counter)}",
        "imp_id": imp_id,
        "user": user,
        "ts": ts,
        EVENT_MS: ts,
        ARRIVAL_MS: ts,
    }


# --- windows ----------------------------------------------------------------------------------


def test_window_start_is_floor_of_T_minus_w_to_the_hop() -> None:
    assert window_start_ms(T0 + 700_000, W, H) == T0
    assert window_start_ms(T0 + 720_000, W, H) == T0 + 120_000
    assert window_start_ms(T0 + 719_999, W, H) == T0
    assert window_start_ms(1_000_007, 600_000, 120_000) == 360_000
    assert window_start_ms(100, 600, 120) == -600  # floor, not truncation


def test_window_includes_its_floor_edge_and_excludes_T(pipeline: Pipeline) -> None:
    times = [T0 - 1, T0, T0 + 100_000, T0 + 120_000, T0 + 699_999, T0 + 700_000]
    oracle = Oracle(pipeline, {"imps": [imp(t) for t in times]})
    n = {as_of: oracle.value("user", "a", "n_10m", as_of) for as_of in (T0, T0 + 700_000)}
    assert n == {T0: 1, T0 + 700_000: 4}  # [T0 - 10m, T0) holds T0 - 1; [T0, T0 + 700000) holds 4
    assert oracle.value("user", "a", "n_10m", T0 + 719_999) == 5  # start still floors to T0
    assert oracle.value("user", "a", "n_10m", T0 + 720_000) == 3  # start moves to T0 + 120000
    assert oracle.value("user", "a", "n_10m", T0 + 700_001) == 5  # the event at T0 + 700000 is in now
    assert oracle.value("user", "a", "n_total", T0 + 700_000) == 5
    assert oracle.value("user", "a", "n_total", T0 - 1) == 0
    assert oracle.value("user", "a", "since", T0 + 700_000) == 1
    assert oracle.value("user", "a", "since", T0 + 710_000) == 10_000


def test_time_since_last_honours_window_and_filter(pipeline: Pipeline) -> None:
    events = [imp(T0, qty=7), imp(T0 + 60_000, qty=1), imp(T0 + 300_000, qty=5), imp(T0 + 400_000, qty=2)]
    oracle = Oracle(pipeline, {"imps": events})
    assert oracle.value("user", "a", "since_big_10m", T0 + 300_000) == 300_000  # T0 (qty 7)
    assert oracle.value("user", "a", "since_big_10m", T0 + 300_001) == 1  # T0 + 300000 (qty 5)
    assert oracle.value("user", "a", "since_big_10m", T0 + 900_000) == 600_000
    assert oracle.value("user", "a", "since_big_10m", T0 + 1_020_000) is None  # window starts T0 + 420000
    assert oracle.value("user", "a", "since", T0 + 1_020_000) == 620_000


# --- ties, empty windows, filters -------------------------------------------------------------


def test_first_last_ties_break_by_arrival_then_value(pipeline: Pipeline) -> None:
    t = T0 + 5_000
    events = [
        imp(t, arrival=t + 5, tag="m", qty=4),
        imp(t, arrival=t + 3, tag="z", qty=7),
        imp(t, arrival=t + 3, tag="b", qty=2),
        imp(t, arrival=t + 5, tag="a", qty=None),
        imp(t, arrival=t + 1, tag=None, qty=None),
        imp(t + 1, arrival=t + 1, tag=None, qty=None),  # latest event, null values: skipped
    ]
    random.Random(3).shuffle(events)
    row = Oracle(pipeline, {"imps": events}).row("user", "a", t + 2)
    assert (row["tag_first"], row["tag_last"]) == ("b", "m")
    assert (row["qty_first"], row["qty_last"]) == (2, 4)
    before = Oracle(pipeline, {"imps": events}).row("user", "a", t)
    assert before["tag_first"] is None and before["n_total"] == 0


def test_empty_window_values_and_types(pipeline: Pipeline) -> None:
    oracle = Oracle(pipeline, {"imps": [imp(T0 + 1_000, price=1.5, qty=3, tag="x")]})
    expected = {
        "n_10m": 0,
        "n_total": 0,
        "qty_sum": 0,
        "price_sum": 0.0,
        "price_mean": None,
        "qty_mean": None,
        "price_min": None,
        "price_max": None,
        "tag_first": None,
        "tag_last": None,
        "qty_first": None,
        "qty_last": None,
        "tags": 0,
        "big": 0,
        "not_x": 0,
        "null_tag": 0,
        "tag_in": 0,
        "tag_not_in": 0,
        "since": None,
        "since_big_10m": None,
        "clicks_10m": 0,
        "ctr": None,
        "ctr_prior": 0.5,  # (0 + 0.5 * 2) / (0 + 2)
    }
    for key, as_of in (("a", T0 + 1_000), ("nobody", T0 + 5_000)):
        row = oracle.row("user", key, as_of)
        assert diff_row(expected, row) == []
        assert type(row["qty_sum"]) is int and type(row["price_sum"]) is float
    windowed_out = oracle.row("user", "a", T0 + 1_000 + 30 * 60_000)
    assert windowed_out["qty_sum"] == 0 and type(windowed_out["qty_sum"]) is int
    assert windowed_out["price_sum"] == 0.0 and windowed_out["price_mean"] is None
    assert windowed_out["price_max"] == 1.5 and windowed_out["since"] == 30 * 60_000


def test_filters_never_match_null_except_is_null(pipeline: Pipeline) -> None:
    events = [
        imp(T0, qty=None, tag=None),
        imp(T0 + 1, qty=3, tag="x"),
        imp(T0 + 2, qty=5, tag="y"),
        imp(T0 + 3, qty=9, tag="z"),
    ]
    row = Oracle(pipeline, {"imps": events}).row("user", "a", T0 + HOUR)
    assert (row["big"], row["not_x"], row["null_tag"], row["tag_in"], row["tag_not_in"]) == (2, 2, 1, 2, 2)
    null_event = {"v": None}
    for op in ("eq", "ne", "gt", "ge", "lt", "le"):
        assert not matches(FilterDef(field="v", op=op, value=1), null_event)
    assert not matches(FilterDef(field="v", op="in", value=[1]), null_event)
    assert not matches(FilterDef(field="v", op="not_in", value=[1]), null_event)
    assert not matches(FilterDef(field="v", op="not_null"), null_event)
    assert matches(FilterDef(field="v", op="is_null"), null_event)
    assert matches(FilterDef(field="v", op="le", value=2), {"v": 2})
    assert not matches(FilterDef(field="v", op="lt", value=2), {"v": 2})


# --- sums and means -------------------------------------------------------------------------


def test_float_sum_is_fixed_point_and_order_free(pipeline: Pipeline) -> None:
    assert 0.1 + 0.2 != 0.3
    events = [imp(T0, price=0.1), imp(T0 + 1, price=0.2), imp(T0 + 2, price=None)]
    row = Oracle(pipeline, {"imps": events}).row("user", "a", T0 + 3)
    assert row["price_sum"] == 0.3 and row["price_mean"] == 0.15
    assert row["price_min"] == 0.1 and row["price_max"] == 0.2
    assert fixed_point_total([2.5e-9, 1.5e-9, 3.5e-9, 0.5e-9]) == 2 + 2 + 4 + 0  # half to even
    values = [random.Random(seed).uniform(0, 1000) for seed in range(200)]
    totals = {fixed_point_total(random.Random(seed).sample(values, len(values))) for seed in range(5)}
    assert len(totals) == 1


def test_int_sum_is_exact_and_mean_divides_by_non_null_count(pipeline: Pipeline) -> None:
    events = [imp(T0, qty=3), imp(T0 + 1, qty=None), imp(T0 + 2, qty=5), imp(T0 + 3, qty=9)]
    row = Oracle(pipeline, {"imps": events}).row("user", "a", T0 + 4)
    assert row["qty_sum"] == 17 and type(row["qty_sum"]) is int
    assert row["qty_mean"] == 17 / 3


# --- ratios -----------------------------------------------------------------------------------


def test_ratio_with_and_without_prior(pipeline: Pipeline) -> None:
    events = {
        "imps": [imp(T0 + i) for i in range(4)],
        "clicks": [click(T0 + 10, None)],
    }
    oracle = Oracle(pipeline, events)
    row = oracle.row("user", "a", T0 + 11)
    assert (row["ctr"], row["ctr_prior"]) == (0.25, (1 + 0.5 * 2) / (4 + 2))
    late = oracle.row("user", "a", T0 + 11 + HOUR)  # both windows empty
    assert (late["ctr"], late["ctr_prior"]) == (None, 0.5)
    clicks_only = Oracle(pipeline, {"clicks": [click(T0, None)]}).row("user", "a", T0 + 1)
    assert (clicks_only["ctr"], clicks_only["ctr_prior"]) == (None, 1.0)


# --- keys, joins, snapshots -----------------------------------------------------------------


def test_null_key_fields_leave_events_out_of_keyed_tables(pipeline: Pipeline) -> None:
    events = [
        imp(T0, user=None, country="DE"),
        imp(T0 + 1, user="a", country=None),
        imp(T0 + 2, country="DE"),
    ]
    oracle = Oracle(pipeline, {"imps": events})
    assert oracle.keys("user") == ["a"]
    assert oracle.value("user", "a", "n_total", T0 + 10) == 2
    assert oracle.keys("user_country") == [("a", "DE")]
    assert oracle.value("user_country", ("a", "DE"), "n_total", T0 + 10) == 1
    assert oracle.value("everything", None, "imps", T0 + 10) == 3
    assert oracle.keys("everything") == [None]
    with pytest.raises(ValueError, match="tuple"):
        oracle.value("user_country", "a", "n_total", T0)


def test_join_sees_its_source_up_to_and_including_the_event_time(pipeline: Pipeline) -> None:
    t = T0 + 50_000
    events = {
        "imps": [
            imp(t, imp_id="i1", country="DE"),
            imp(t + 100, imp_id="i2", country="FR", user="b"),
        ],
        "clicks": [
            click(t, "i1"),  # same millisecond as its impression: finds it
            click(t - 1, "i1"),  # before its impression: no country
            click(t + 99, "i2", user="b"),  # before its impression: no country
            click(t + 100, "i2", user="b"),  # same millisecond: FR
            click(t + 5, "nope"),
            click(t + 5, None),
        ],
    }
    oracle = Oracle(pipeline, events)
    assert [e["country"] for e in oracle.events("clicks")] == [None, "DE", None, None, None, "FR"]
    assert oracle.keys("country") == ["DE", "FR"]
    assert oracle.row("country", "DE", t + 1) == {"imps": 1, "clicks": 1, "ctr": 1.0}
    assert oracle.row("country", "FR", t + 100) == {"imps": 0, "clicks": 0, "ctr": None}
    assert oracle.row("country", "FR", t + 101) == {"imps": 1, "clicks": 1, "ctr": 1.0}
    assert oracle.value("user_country", ("a", "DE"), "clicks_total", t + 1) == 1
    assert oracle.value("everything", None, "clicks", t + 1_000) == 6


def test_join_takes_the_value_as_of_the_event_not_as_of_the_read(pipeline: Pipeline) -> None:
    t = T0 + 50_000
    events = {
        "imps": [
            imp(t, imp_id="i1", country="DE", arrival=t + 9),
            imp(t + 10, imp_id="i1", country="FR", arrival=t + 10),
            imp(t + 10, imp_id="i1", country="AT", arrival=t + 11),
        ],
        "clicks": [click(t + 5, "i1"), click(t + 10, "i1")],
    }
    oracle = Oracle(pipeline, events)
    assert [e["country"] for e in oracle.events("clicks")] == ["DE", "AT"]
    assert oracle.value("country", "DE", "clicks", t + HOUR) == 1
    assert oracle.value("country", "AT", "clicks", t + HOUR) == 1
    assert oracle.value("imp_country", "i1", "country", t + HOUR) == "AT"


def test_snapshot_and_history(pipeline: Pipeline) -> None:
    events = {"imps": [imp(T0, user="a"), imp(T0 + 60_000, user="b"), imp(T0 + 60_000, user="c")]}
    oracle = Oracle(pipeline, events)
    assert list(oracle.snapshot("user", T0 + 60_000)) == ["a"]
    assert list(oracle.snapshot("user", T0 + 60_001)) == ["a", "b", "c"]
    assert oracle.snapshot("user", T0) == {}
    history = oracle.history("user", "a", T0 - 240_000, T0 + 480_000, 240_000)
    assert [(r["as_of_ms"], r["n_10m"]) for r in history] == [
        (T0 - 240_000, 0),
        (T0, 0),
        (T0 + 240_000, 1),
        (T0 + 480_000, 1),
    ]
    assert oracle.value("user", "a", "n_10m", T0 + 719_999) == 1  # the window starts at T0
    assert oracle.value("user", "a", "n_10m", T0 + 720_000) == 0  # the window starts at T0 + 2m


# --- distinct counts and the sketch ---------------------------------------------------------


def _hll_by_bit_strings(values: set[object]) -> int:
    """A second, independent reading of the sketch's definition: bit strings and numpy."""
    p, m = 14, 2**14
    registers = np.zeros(m, dtype=np.int64)
    for value in values:
        digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).hexdigest()
        bits = format(int(digest, 16), "064b")
        index, rest = int(bits[:p], 2), bits[p:]
        rank = rest.find("1") + 1 if "1" in rest else len(rest) + 1
        registers[index] = max(registers[index], rank)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -registers)))
    zeros = int(np.count_nonzero(registers == 0))
    if raw <= 2.5 * m and zeros:
        raw = m * math.log(m / zeros)
    return int(np.rint(raw))


@pytest.mark.parametrize("size", [1, 4, 37, 1_000, 20_000, 60_000])
def test_sketch_matches_a_second_implementation(size: int) -> None:
    rng = random.Random(size)
    values: set[object] = {f"domain-{rng.getrandbits(40)}.com" for _ in range(size // 2)}
    values |= {rng.getrandbits(50) for _ in range(size - len(values))}
    estimate = hll_estimate(values)
    assert estimate == _hll_by_bit_strings(values)
    assert abs(estimate - len(values)) <= max(1, 0.03 * len(values))


def test_distinct_count_is_exact_up_to_the_bound_then_the_sketch(pipeline: Pipeline) -> None:
    events = [imp(T0 + i, tag=tag) for i, tag in enumerate(["x", "y", "x", None, "z", "w", "v"])]
    oracle = Oracle(pipeline, {"imps": events})
    assert [oracle.value("user", "a", "tags", T0 + n) for n in (1, 2, 4, 5)] == [1, 2, 2, 3]
    over = [oracle.value("user", "a", "tags", T0 + n) for n in (6, 7)]
    assert over == [hll_estimate({"x", "y", "z", "w"}), hll_estimate({"x", "y", "z", "w", "v"})]
    assert over == [_hll_by_bit_strings({"x", "y", "z", "w"}), _hll_by_bit_strings({"x", "y", "z", "w", "v"})]


# --- the comparison helper ------------------------------------------------------------------


def test_same_value_is_strict_about_kind() -> None:
    assert same_value(3, np.int64(3)) and not same_value(3, 3.0) and not same_value(3, True)
    assert same_value(0.0, 0.0) and not same_value(0.0, 0) and not same_value(0.3, 0.1 + 0.2)
    assert same_value(None, None) and not same_value(None, 0) and not same_value(0, None)
    assert same_value("a", "a") and not same_value("a", "b")
    assert diff_row({"a": 1}, {"a": 1, "b": 2}) == ["columns differ: expected ['a'], got ['a', 'b']"]
