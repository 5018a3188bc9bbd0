"""Time inside clickwise: int64 milliseconds since the Unix epoch, UTC.

Everything that crosses a boundary (input files, the CLI, the HTTP API) is converted here, once.
Names carry the unit (``event_ms``, ``horizon_ms``); there are no naive datetimes anywhere.

>>> parse_duration_ms("15m")
900000
>>> parse_instant_ms("2024-01-01T00:00:00Z")
1704067200000
>>> format_ms(1704067200000)
'2024-01-01T00:00:00.000Z'
"""

from __future__ import annotations

import datetime as dt
import re
import time as _time
import zoneinfo
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from clickwise.errors import TimeFormatError

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60 * MS_PER_SECOND
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR

_UNITS_MS = {
    "ms": 1,
    "s": MS_PER_SECOND,
    "m": MS_PER_MINUTE,
    "min": MS_PER_MINUTE,
    "h": MS_PER_HOUR,
    "d": MS_PER_DAY,
    "w": 7 * MS_PER_DAY,
}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min|m|h|d|w)\s*$")

# Formats a stream may declare for its event-time field. Anything else is a strptime pattern.
EPOCH_FORMATS = {
    "epoch_ms": (1, 1),
    "epoch_s": (MS_PER_SECOND, 1),
    "epoch_us": (1, 1000),
    "epoch_ns": (1, 1_000_000),
}
"""Epoch formats and how to reach milliseconds from them: (multiply by, then floor-divide by)."""
TEXT_FORMATS = {"iso"}


class Clock(Protocol):
    """Where "now" comes from. Inject a :class:`FixedClock` in tests."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The machine's wall clock, in UTC milliseconds."""

    def now_ms(self) -> int:
        return _time.time_ns() // 1_000_000


@dataclass
class FixedClock:
    """A clock that only moves when told to.

    >>> clock = FixedClock(1_000)
    >>> clock.advance(500); clock.now_ms()
    1500
    """

    current_ms: int = 0

    def now_ms(self) -> int:
        return self.current_ms

    def advance(self, delta_ms: int) -> None:
        self.current_ms += delta_ms


def parse_duration_ms(text: str | int) -> int:
    """Parse ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` or ``"250ms"`` into milliseconds.

    A bare integer is taken as milliseconds. Negative or unitless text is refused.
    """
    if isinstance(text, bool):
        raise TimeFormatError(f"{text!r} is not a duration; use a number with a unit, e.g. 15m, 24h, 7d")
    if isinstance(text, int):
        if text < 0:
            raise TimeFormatError(f"duration {text!r} is negative")
        return text
    match = _DURATION.match(str(text))
    if match is None:
        raise TimeFormatError(
            f"{text!r} is not a duration; use a whole number with a unit ms, s, m, h, d or w "
            "(e.g. 15m, 24h, 7d)"
        )
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def format_duration_ms(duration_ms: int) -> str:
    """The shortest exact text for a duration: ``format_duration_ms(86_400_000) == "1d"``."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if duration_ms and duration_ms % size == 0:
            return f"{duration_ms // size}{unit}"
    return f"{duration_ms}ms"


def parse_zone(name: str) -> dt.tzinfo:
    """A time zone from an IANA name (``Asia/Shanghai``), ``UTC``/``Z``, or an offset (``+08:00``)."""
    text = name.strip()
    if text in ("UTC", "Z", "utc", "z"):
        return dt.UTC
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        delta = dt.timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        return dt.timezone(sign * delta)
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeFormatError(
            f"unknown time zone {name!r}; use an IANA name like 'Asia/Shanghai', 'UTC', "
            "or an offset like '+08:00'"
        ) from exc


def parse_instant_ms(text: str | int, *, default_zone: str | None = None) -> int:
    """Parse a moment given as epoch milliseconds or ISO-8601 text with a zone.

    Text without a zone is refused unless ``default_zone`` says how to read it: a naive time is
    ambiguous, and guessing would silently shift every answer by hours.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    value = str(text).strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    try:
        moment = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise TimeFormatError(
            f"{text!r} is not a time; use ISO-8601 with a zone (2024-05-01T12:00:00Z, "
            "2024-05-01T20:00:00+08:00) or epoch milliseconds"
        ) from exc
    if moment.tzinfo is None:
        if default_zone is None:
            raise TimeFormatError(f"{text!r} has no time zone; add one (e.g. {value}Z or {value}+08:00)")
        moment = moment.replace(tzinfo=parse_zone(default_zone))
    return datetime_to_ms(moment)


def datetime_to_ms(moment: dt.datetime) -> int:
    """Milliseconds since the epoch for a zone-aware datetime."""
    if moment.tzinfo is None:
        raise TimeFormatError(f"{moment!r} is a naive datetime; attach a zone first")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_to_datetime(epoch_ms: int) -> dt.datetime:
    """A UTC datetime for epoch milliseconds."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=epoch_ms)


def format_ms(epoch_ms: int) -> str:
    """ISO-8601 text in UTC with milliseconds and a ``Z``."""
    return ms_to_datetime(epoch_ms).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def floor_ms(value_ms: int, step_ms: int) -> int:
    """Round down to a multiple of ``step_ms`` (also for negative values).

    >>> floor_ms(125, 60), floor_ms(-1, 60)
    (120, -60)
    """
    return (value_ms // step_ms) * step_ms


def check_time_format(fmt: str, zone: str | None) -> None:
    """Refuse a format/zone pair that could never parse, before any data is read."""
    if fmt in EPOCH_FORMATS:
        return
    if zone is not None:
        parse_zone(zone)
    if fmt in TEXT_FORMATS:
        return
    if "%" not in fmt:
        raise TimeFormatError(
            f"unknown time format {fmt!r}; use epoch_ms, epoch_s, epoch_us, epoch_ns, iso, "
            "or a strptime pattern such as '%Y-%m-%d %H:%M:%S'"
        )
    has_zone = "%z" in fmt or "%Z" in fmt
    if not has_zone and zone is None:
        raise TimeFormatError(
            f"time format {fmt!r} has no zone; declare the zone the text is written in "
            "(timezone: UTC, or e.g. Asia/Shanghai)"
        )
    if _FRACTION in _directives(fmt):
        _fraction_pattern(fmt)  # refuses what it cannot read


def parse_time_column(values: pl.Series, fmt: str, zone: str | None) -> pl.Series:
    """Convert a column of raw times to int64 epoch ms; a value that cannot be read becomes null.

    ``fmt`` is ``epoch_ms``/``epoch_s``/``epoch_us``/``epoch_ns`` (numbers or digit strings),
    ``iso`` (ISO-8601; ``zone`` applies to text without an offset), or a strptime pattern read in
    ``zone``. Callers compare the null mask before and after to find the bad values.
    """
    if fmt in EPOCH_FORMATS:
        return _parse_epoch(values, fmt)
    text = values.cast(pl.String, strict=False).str.strip_chars()
    if fmt == "iso":
        return _parse_iso(text, zone)
    if _FRACTION in _directives(fmt):
        return _parse_fraction(text, fmt, zone)
    if "%z" in fmt:
        parsed = text.str.to_datetime(format=fmt, strict=False, time_unit="ms", time_zone="UTC")
        return parsed.dt.epoch("ms").cast(pl.Int64)
    wall = pl.DataFrame({"w": text.str.strptime(pl.Datetime("ms"), fmt, strict=False)})
    return wall.select(_local_to_ms(pl.col("w"), zone).alias(text.name)).to_series()


def _parse_epoch(values: pl.Series, fmt: str) -> pl.Series:
    if values.dtype == pl.String:
        stripped = values.str.strip_chars()
        as_int = stripped.cast(pl.Int64, strict=False)
        as_float = stripped.cast(pl.Float64, strict=False)
    elif values.dtype.is_float():
        as_int = pl.Series(values.name, [None] * len(values), dtype=pl.Int64)
        as_float = values.cast(pl.Float64)
    else:
        as_int = values.cast(pl.Int64, strict=False)
        as_float = pl.Series(values.name, [None] * len(values), dtype=pl.Float64)
    frame = pl.DataFrame({"i": as_int, "f": as_float})
    mul, div = EPOCH_FORMATS[fmt]
    float_ok = pl.col("f").is_finite() & (pl.col("f").abs() < 9e15)
    out = frame.select(
        pl.when(pl.col("i").is_not_null())
        .then((pl.col("i") * mul) // div)
        .when(float_ok)
        .then((pl.col("f") * mul / div).floor().cast(pl.Int64))
        .otherwise(None)
        .alias(values.name)
    )
    return out.to_series()


_ISO_BODY_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def _parse_iso(text: pl.Series, zone: str | None) -> pl.Series:
    """ISO-8601: the offset (``Z``, ``+08:00``, ``+0800``) is split off and applied by hand.

    Values without an offset are read in ``zone``; with no zone they are bad values (null).
    """
    frame = pl.DataFrame({"t": text}).with_columns(
        pl.col("t").str.extract(r"^(.*?)(?:[Zz]|[+-]\d{2}:?\d{2})?$", 1).alias("body"),
        pl.col("t").str.extract(r"([Zz]|[+-]\d{2}:?\d{2})$", 1).alias("off"),
    )
    wall = pl.coalesce(
        [
            pl.col("body").str.strptime(pl.Datetime("ms"), f, strict=False, exact=True)
            for f in _ISO_BODY_FORMATS
        ]
    )
    sign = pl.when(pl.col("off").str.starts_with("-")).then(-1).otherwise(1)
    digits = pl.col("off").str.replace_all(r"[^0-9]", "")
    offset_ms = (
        pl.when(pl.col("off").str.to_uppercase() == "Z")
        .then(0)
        .otherwise(
            sign
            * (
                digits.str.slice(0, 2).cast(pl.Int64, strict=False) * MS_PER_HOUR
                + digits.str.slice(2, 2).cast(pl.Int64, strict=False) * MS_PER_MINUTE
            )
        )
    )
    frame = frame.with_columns(wall.alias("wall"), offset_ms.alias("offset_ms"))
    aware = pl.col("wall").dt.epoch("ms") - pl.col("offset_ms")
    naive = _local_to_ms(pl.col("wall"), zone)
    result = pl.when(pl.col("off").is_not_null()).then(aware).otherwise(naive).cast(pl.Int64)
    return frame.select(result.alias(text.name)).to_series()


def _local_to_ms(wall: pl.Expr, zone: str | None) -> pl.Expr:
    """Epoch ms of wall-clock datetimes read in ``zone`` (null without a zone).

    Fixed offsets are applied by hand (polars accepts only IANA names); in a zone with daylight
    saving, an ambiguous wall time takes the earlier instant and a non-existent one is null.
    """
    if zone is None:
        return pl.lit(None, dtype=pl.Int64)
    tz = parse_zone(zone)
    if isinstance(tz, zoneinfo.ZoneInfo):
        return wall.dt.replace_time_zone(tz.key, ambiguous="earliest", non_existent="null").dt.epoch("ms")
    offset = tz.utcoffset(None) or dt.timedelta(0)
    return wall.dt.epoch("ms") - int(offset.total_seconds() * 1000)


# --- Python's %f ------------------------------------------------------------------------------
# polars parses with chrono, whose %f is a count of nanoseconds: "%S%f" reads "04123" as 4 s and
# 123 ns. Python's %f is 1 to 6 digits of fraction of a second (".123" is 123 ms), which is what a
# pipeline file means. So a pattern with %f is split with the regular expression Python's strptime
# would build: the fraction digits are read here, the rest of the text by polars without them.

_FRACTION = "%f"
_DIRECTIVE = re.compile(r"%.|[^%]+|%$", re.DOTALL)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_PY_DIRECTIVES = {  # as CPython's _strptime.TimeRE builds them (English names)
    "%d": r"3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9]",
    "%H": r"2[0-3]|[0-1]\d|\d",
    "%I": r"1[0-2]|0[1-9]|[1-9]",
    "%j": r"36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9]",
    "%m": r"1[0-2]|0[1-9]|[1-9]",
    "%M": r"[0-5]\d|\d",
    "%S": r"6[0-1]|[0-5]\d|\d",
    "%y": r"\d\d",
    "%Y": r"\d\d\d\d",
    "%z": r"[+-]\d\d:?[0-5]\d(?::?[0-5]\d(?:\.\d{1,6})?)?|(?-i:Z)",
    "%b": "|".join(month[:3] for month in _MONTHS.split("|")),
    "%B": _MONTHS,
    "%a": "|".join(day[:3] for day in _DAYS.split("|")),
    "%A": _DAYS,
    "%p": "am|pm",
    "%%": "%",
}
_REGEX_CHARS = re.compile(r"([\\.^$*+?(){}\[\]|])")
_WORKS = "'%Y%m%d%H%M%S%f' or '%Y-%m-%d %H:%M:%S.%f'"


def _directives(fmt: str) -> list[str]:
    """The pieces of a strptime pattern: directives (``%Y``) and literal text between them."""
    return _DIRECTIVE.findall(fmt)


def _fraction_pattern(fmt: str) -> tuple[str, str]:
    """The regular expression that splits text written in ``fmt`` around its ``%f`` digits (groups
    ``pre``, ``frac``, ``post``), and ``fmt`` without its ``%f``.

    >>> _fraction_pattern("%S.%f")[1]
    '%S.'
    """
    pieces = _directives(fmt)
    if pieces.count(_FRACTION) > 1:
        raise TimeFormatError(f"time format {fmt!r} has %f more than once; use it once, e.g. {_WORKS}")
    parts: list[list[str]] = [[], []]
    side = 0
    for piece in pieces:
        if piece == _FRACTION:
            side = 1
        elif piece.startswith("%"):
            if piece not in _PY_DIRECTIVES:
                raise TimeFormatError(
                    f"time format {fmt!r}: {piece!r} cannot be combined with %f (Python's fraction of a "
                    f"second); use only {' '.join(d for d in _PY_DIRECTIVES if d != '%%')} with it, "
                    f"e.g. {_WORKS}"
                )
            parts[side].append(f"(?:{_PY_DIRECTIVES[piece]})")
        else:
            parts[side].append(re.sub(r"\s+", r"\\s+", _REGEX_CHARS.sub(r"\\\1", piece)))
    if all(piece == _FRACTION or not piece.startswith("%") for piece in pieces):
        raise TimeFormatError(f"time format {fmt!r} has no date or time besides %f; use e.g. {_WORKS}")
    pre, post = ("".join(side_parts) for side_parts in parts)
    regex = f"(?i)^(?P<pre>{pre})(?P<frac>[0-9]{{1,6}})(?P<post>{post})$"
    return regex, "".join(piece for piece in pieces if piece != _FRACTION)


def _parse_fraction(text: pl.Series, fmt: str, zone: str | None) -> pl.Series:
    """A pattern with Python's ``%f``: 1 to 6 digits of fraction of a second, read down to the
    millisecond (``"20170613000004123"`` in ``%Y%m%d%H%M%S%f`` is 00:00:04.123)."""
    regex, rest_fmt = _fraction_pattern(fmt)
    parts = pl.DataFrame({"t": text}).select(pl.col("t").str.extract_groups(regex).struct.unnest())
    rest = parts.select(pl.concat_str("pre", "post").alias(text.name)).to_series()
    frac_ms = parts.select(pl.col("frac").str.pad_end(6, "0").str.slice(0, 3).cast(pl.Int64)).to_series()
    return (parse_time_column(rest, rest_fmt, zone) + frac_ms).alias(text.name)
