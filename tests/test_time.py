"""Time parsing: durations, instants, zones and vectorized column parsing (with an oracle)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickwise.errors import TimeFormatError
from clickwise.time import (
    check_time_format,
    floor_ms,
    format_duration_ms,
    format_ms,
    parse_duration_ms,
    parse_instant_ms,
    parse_time_column,
    parse_zone,
)

MOMENTS = st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999)  # 2000 .. 2099
ZONES = st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York", "Europe/Berlin", "+08:00", "-03:30"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", 250),
        ("90s", 90_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("7d", 604_800_000),
        ("2w", 1_209_600_000),
        (5, 5),
    ],
)
def test_durations(text: str | int, expected: int) -> None:
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("bad", ["", "15", "m", "1.5h", "-1h", "7 days", True, -1])
def test_bad_durations_name_the_value(bad: object) -> None:
    with pytest.raises(TimeFormatError, match=r"duration|negative"):
        parse_duration_ms(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=10**12))
def test_duration_text_round_trips(duration_ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(duration_ms)) == duration_ms


def test_instants() -> None:
    assert parse_instant_ms("2024-01-01T00:00:00Z") == 1_704_067_200_000
    assert parse_instant_ms("2024-01-01T08:00:00+08:00") == 1_704_067_200_000
    assert parse_instant_ms("1704067200000") == 1_704_067_200_000
    assert parse_instant_ms("2024-01-01T08:00:00", default_zone="Asia/Shanghai") == 1_704_067_200_000


def test_naive_instant_is_refused_with_a_fix() -> None:
    with pytest.raises(TimeFormatError, match=r"no time zone; add one \(e\.g\. 2024-01-01T00:00:00Z"):
        parse_instant_ms("2024-01-01T00:00:00")
    with pytest.raises(TimeFormatError, match="not a time"):
        parse_instant_ms("yesterday")


def test_unknown_zone() -> None:
    with pytest.raises(TimeFormatError, match="unknown time zone 'Mars/Olympus'"):
        parse_zone("Mars/Olympus")


@given(MOMENTS)
def test_format_round_trips(epoch_ms: int) -> None:
    assert parse_instant_ms(format_ms(epoch_ms)) == epoch_ms


@given(st.integers(min_value=-(10**15), max_value=10**15), st.integers(min_value=1, max_value=10**10))
def test_floor(value: int, step: int) -> None:
    floored = floor_ms(value, step)
    assert floored <= value < floored + step and floored % step == 0


def _oracle(epoch_ms: int, zone: str, pattern: str) -> str:
    """Independent path: the standard library renders the wall-clock text in the zone."""
    moment = dt.datetime.fromtimestamp(epoch_ms // 1000, tz=dt.UTC).astimezone(parse_zone(zone))
    return moment.strftime(pattern)


@given(st.lists(MOMENTS, min_size=1, max_size=20), ZONES)
def test_strptime_column_matches_the_standard_library(moments: list[int], zone: str) -> None:
    pattern = "%Y-%m-%d %H:%M:%S"
    texts = [_oracle(m, zone, pattern) for m in moments]
    parsed = parse_time_column(pl.Series("t", texts), pattern, zone).to_list()
    for text, value in zip(texts, parsed, strict=True):
        zone_info = parse_zone(zone)
        candidates = {
            int(dt.datetime.strptime(text, pattern).replace(tzinfo=zone_info, fold=fold).timestamp() * 1000)
            for fold in (0, 1)
        }
        assert value in candidates  # ambiguous local times (DST fall-back) may read either way


@given(st.lists(MOMENTS, min_size=1, max_size=20))
def test_iso_and_epoch_columns(moments: list[int]) -> None:
    iso = [format_ms(m) for m in moments]
    assert parse_time_column(pl.Series("t", iso), "iso", None).to_list() == moments
    assert parse_time_column(pl.Series("t", moments), "epoch_ms", None).to_list() == moments
    seconds = [m // 1000 for m in moments]
    assert parse_time_column(pl.Series("t", seconds), "epoch_s", None).to_list() == [
        s * 1000 for s in seconds
    ]
    assert parse_time_column(pl.Series("t", [str(m) for m in moments]), "epoch_ms", None).to_list() == moments


def test_bad_values_become_null() -> None:
    column = pl.Series("t", ["2017-11-07 09:30:38", "garbage", None, "2017-13-40 00:00:00", ""])
    parsed = parse_time_column(column, "%Y-%m-%d %H:%M:%S", "UTC").to_list()
    assert parsed == [1_510_047_038_000, None, None, None, None]
    assert parse_time_column(pl.Series("t", ["12", "x", "1e3"]), "epoch_s", None).to_list() == [
        12_000,
        None,
        1_000_000,
    ]


def test_iso_without_offset_needs_a_zone() -> None:
    column = pl.Series("t", ["2024-01-01T00:00:00", "2024-01-01T00:00:00+02:00"])
    assert parse_time_column(column, "iso", None).to_list() == [None, 1_704_060_000_000]
    assert parse_time_column(column, "iso", "Asia/Shanghai").to_list() == [
        1_704_038_400_000,
        1_704_060_000_000,
    ]


FRACTION_PATTERNS = st.sampled_from(
    ["%Y%m%d%H%M%S%f", "%Y-%m-%d %H:%M:%S.%f", "%d/%b/%Y:%H:%M:%S,%f", "%f %Y-%m-%dT%H:%M:%S"]
)


def _python_ms(text: str, pattern: str, zone: str) -> set[int]:
    """The standard library's reading of ``text``, floored to the millisecond (both folds)."""
    wall = dt.datetime.strptime(text, pattern).replace(tzinfo=dt.UTC)  # the zone is set just below
    return {
        int(wall.replace(tzinfo=parse_zone(zone), fold=fold).timestamp()) * 1000 + wall.microsecond // 1000
        for fold in (0, 1)
    }


@given(
    st.lists(st.tuples(MOMENTS, st.integers(0, 999_999), st.integers(1, 6)), min_size=1, max_size=20),
    FRACTION_PATTERNS,
    ZONES,
)
def test_percent_f_means_what_it_means_in_python(
    moments: list[tuple[int, int, int]], pattern: str, zone: str
) -> None:
    texts = []
    for epoch_ms, micros, digits in moments:
        wall = _oracle(epoch_ms, zone, pattern.replace("%f", "{f}"))
        texts.append(wall.replace("{f}", f"{micros:06d}"[:digits]))
    parsed = parse_time_column(pl.Series("t", texts), pattern, zone).to_list()
    for text, value in zip(texts, parsed, strict=True):
        assert value in _python_ms(text, pattern, zone), text


def test_percent_f_reads_milliseconds_in_every_time_path() -> None:
    texts = pl.Series("t", ["20170613000004123", "20170613000004", "2017061300000412", "x", None])
    # Python reads the second as 00:00:00.4 (one digit of seconds, one of fraction): so do we
    expected = [1_497_283_204_123, 1_497_283_200_400, 1_497_283_204_120, None, None]
    assert parse_time_column(texts, "%Y%m%d%H%M%S%f", "Asia/Shanghai").to_list() == expected
    assert parse_time_column(texts, "%Y%m%d%H%M%S%f", "+08:00").to_list() == expected
    with_offset = pl.Series("t", ["2017-06-13 00:00:04.123 +0800", "2017-06-13 00:00:04.1234567 +0800"])
    assert parse_time_column(with_offset, "%Y-%m-%d %H:%M:%S.%f %z", None).to_list() == [
        1_497_283_204_123,
        None,  # 7 digits: Python refuses them too
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("%F %T.%f", r"'%F' cannot be combined with %f .*e\.g\. '%Y%m%d%H%M%S%f'"),
        ("%s%f", r"'%s' cannot be combined with %f"),
        ("%Y%m%d%H%M%S%f%f", "more than once"),
        ("%f", "no date or time besides %f"),
    ],
)
def test_percent_f_patterns_that_cannot_be_read_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(TimeFormatError, match=message):
        check_time_format(pattern, "UTC")
    check_time_format("%Y%m%d%H%M%S%f", "UTC")  # the pattern the message suggests
    check_time_format("%Y-%m-%d %H:%M:%S%.3f", "UTC")  # chrono's own fraction still passes as before


@pytest.mark.parametrize(
    "pattern",
    [
        "%y%m%d %H%M%S.%f",
        "%Y %j %H:%M:%S.%f",
        "%d %b %Y %I:%M:%S.%f %p",
        "%a %d %B %Y %H:%M:%S.%f",
        "%A, %d %b %Y %H:%M:%S.%f",
        "%Y-%m-%d %H:%M:%S.%f %%",
        "%Y-%m-%dT%H:%M:%S.%fZ",
    ],
)
def test_every_directive_allowed_beside_percent_f_reads_as_python_does(pattern: str) -> None:
    check_time_format(pattern, "UTC")
    text = dt.datetime(2017, 6, 13, 15, 22, 1, 7000, tzinfo=dt.UTC).strftime(pattern)
    assert parse_time_column(pl.Series("t", [text]), pattern, "UTC").to_list() == [1_497_367_321_007]
