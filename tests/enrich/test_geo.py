"""GeoResolver: known countries, bad input, all input types, and the geoip2fast oracle."""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path

import pyarrow as pa
import pytest
from geoip2fast import GeoIP2Fast
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.enrich import GeoResolver
from clickwise.enrich import geo as geo_module
from clickwise.errors import EnrichmentError

KNOWN = {
    "8.8.8.8": "US",
    "1.1.1.1": "AU",
    "81.2.69.142": "GB",
    "202.108.22.5": "CN",
    "193.0.6.139": "NL",
    "200.147.67.142": "BR",
    "133.242.0.3": "JP",
    "77.88.8.8": "RU",
    "41.203.18.183": "ZA",
    "5.62.60.6": "AD",  # geoip2fast 1.2.2 itself answers "--" (it mistakes Andorra for a private range)
    "117.36.25.*": "CN",
    "117.36.*.*": "CN",
    " 8.8.8.8 ": "US",
    "\t8.8.8.8\n": "US",
    "008.008.008.008": "US",  # leading zeros are decimal, never octal
    "2001:4860:4860::8888": "US",
    "2a00:1450:4001:81c::200e": "DE",
    "2a02:6b8::2:242": "RU",
    "2001:250::1": "CN",
    " 2c0f:fb50:4003::1 ": "KE",
    "::ffff:8.8.8.8": "US",
}

NO_COUNTRY = [
    None,
    "",
    " ",
    "abc",
    "1.2.3",
    "256.1.1.1",
    "1.2.3.4.5",
    "1.2.3.",
    ".1.2.3",
    "1..2.3",
    "1.2.3.4 x",
    "0x8.8.8.8",
    "+8.8.8.8",
    "8.8.8.-8",
    "8.8.8.8/24",
    "8.8.8.8:80",
    "1*.2.3.4",
    "1.2.3.**",
    "8.8.8.0008",
    "８.8.8.8",  # fullwidth digit
    "\u00a08.8.8.8",  # no-break space is not ASCII whitespace
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "127.0.0.1",
    "100.64.0.1",
    "169.254.1.1",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "10.*.*.*",
    "::1",
    "::",
    "fe80::1",
    "fd00::1",
    "2001:db8::1",
    "2001:db8::*",
    "gggg::1",
]


@functools.cache
def geo() -> GeoResolver:
    return GeoResolver()


@functools.cache
def _geoip2fast() -> GeoIP2Fast:
    return GeoIP2Fast()


def oracle(ip: str) -> str | None:
    """geoip2fast's own answer, as an ISO code or None."""
    result = _geoip2fast().lookup(ip)
    if result.country_name == "Andorra":  # geoip2fast 1.2.2 counts Andorra among its private ranges
        return "AD"
    code = str(result.country_code)
    return code if len(code) == 2 and code.isalpha() else None


def dotted(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def test_known_countries() -> None:
    ips = list(KNOWN)
    assert geo().country_many(pa.array(ips)).to_pylist() == list(KNOWN.values())
    assert [geo().country_one(ip) for ip in ips] == list(KNOWN.values())


def test_no_country_for_bad_private_and_reserved_input() -> None:
    assert geo().country_many(pa.array(NO_COUNTRY, pa.string())).to_pylist() == [None] * len(NO_COUNTRY)
    assert [geo().country_one(ip) for ip in NO_COUNTRY] == [None] * len(NO_COUNTRY)


def test_result_is_a_string_array_of_the_same_length() -> None:
    result = geo().country_many(pa.array(["8.8.8.8", None, "x"]))
    assert isinstance(result, pa.Array)
    assert result.type == pa.string()
    assert len(result) == 3


@pytest.mark.parametrize(
    "column",
    [
        pa.chunked_array([["8.8.8.8", None], [], ["1.1.1.1", "bad", "10.0.0.1"]]),
        pa.array(["8.8.8.8", None, "1.1.1.1", "bad", "10.0.0.1"], pa.large_string()),
        pa.array(["8.8.8.8", None, "1.1.1.1", "bad", "10.0.0.1"], pa.string_view()),
        pa.array(["8.8.8.8", None, "1.1.1.1", "bad", "10.0.0.1"]).dictionary_encode(),
        pa.array(["0.0.0.0", "8.8.8.8", None, "1.1.1.1", "bad", "10.0.0.1", "9.9.9.9"])[1:6],
    ],
    ids=["chunked", "large_string", "string_view", "dictionary", "sliced"],
)
def test_every_string_layout_gives_the_same_answers(column: pa.Array | pa.ChunkedArray) -> None:
    assert geo().country_many(column).to_pylist() == ["US", None, "AU", None, None]


def test_empty_and_all_null_columns() -> None:
    assert geo().country_many(pa.array([], pa.string())).to_pylist() == []
    assert geo().country_many(pa.chunked_array([], pa.string())).to_pylist() == []
    assert geo().country_many(pa.nulls(3)).to_pylist() == [None] * 3
    assert geo().country_many(pa.array([None, None], pa.string())).to_pylist() == [None, None]


def test_a_wrong_type_is_an_error_that_names_it() -> None:
    with pytest.raises(EnrichmentError, match="int64"):
        geo().country_many(pa.array([1, 2]))
    with pytest.raises(EnrichmentError, match="int"):
        geo().country_one(134744072)  # type: ignore[arg-type]


def test_long_column_crosses_parse_steps_and_the_end_of_the_data_buffer() -> None:
    ips = [dotted(value) for value in range(0x08080000, 0x08080000 + 900_000, 3)] + ["8.8.8.8", "1.1.1.1"]
    result = geo().country_many(pa.array(ips)).to_pylist()
    assert result[-2:] == ["US", "AU"]
    sample = list(range(0, len(ips), 997))
    assert [result[i] for i in sample] == [geo().country_one(ips[i]) for i in sample]


def test_a_large_repetitive_column_is_resolved_per_distinct_value_with_the_same_answers() -> None:
    distinct = [dotted(value) for value in range(0x51024500, 0x51024500 + 2_000, 7)] + [" 1.1.1.1", "x", None]
    ips = distinct * 300
    assert geo_module._mostly_repeated(pa.array(ips))
    assert geo().country_many(pa.array(ips)).to_pylist() == [geo().country_one(ip) for ip in distinct] * 300


addresses = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(addresses, min_size=1, max_size=300))
def test_ipv4_matches_geoip2fast_one_by_one_and_vectorized(values: list[int]) -> None:
    ips = [dotted(value) for value in values]
    expected = [oracle(ip) for ip in ips]
    assert [geo().country_one(ip) for ip in ips] == expected
    assert geo().country_many(pa.array(ips)).to_pylist() == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(addresses, st.integers(min_value=1, max_value=3)), min_size=1, max_size=100))
def test_masked_ipv4_is_its_network(masked: list[tuple[int, int]]) -> None:
    ips, expected = [], []
    for value, stars in masked:
        parts = dotted(value).split(".")
        ips.append(".".join(parts[: 4 - stars] + ["*"] * stars))
        expected.append(oracle(".".join(parts[: 4 - stars] + ["0"] * stars)))
    assert [geo().country_one(ip) for ip in ips] == expected
    assert geo().country_many(pa.array(ips)).to_pylist() == expected


def test_run_boundaries_match_geoip2fast() -> None:
    """Addresses on both sides of every 50th run boundary, including those inside mixed /24 blocks."""
    starts = geo_module._ipv4_table().starts[1::50].astype(int)
    ips = [
        dotted(value + delta) for value in starts.tolist() for delta in (-1, 0, 1) if value + delta < 1 << 32
    ]
    expected = [oracle(ip) for ip in ips]
    assert geo().country_many(pa.array(ips)).to_pylist() == expected
    assert [geo().country_one(ip) for ip in ips] == expected


ip_like_text = st.text(alphabet="0123456789.*: \tabf\u00a0", max_size=24)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), ip_like_text), max_size=50))
def test_vectorized_equals_one_by_one_on_any_text(texts: list[str | None]) -> None:
    column = pa.array(texts, pa.string())
    assert geo().country_many(column).to_pylist() == [geo().country_one(text) for text in texts]


# --- a user's own .mmdb -------------------------------------------------------------------------


class _Uint(int):
    """An unsigned int with an explicit MaxMind type (5: uint16, 6: uint32, 9: uint64)."""

    kind = 6


class _Uint16(_Uint):
    kind = 5


class _Uint64(_Uint):
    kind = 9


def _control(kind: int, size: int) -> bytes:
    head, extra = (size, b"") if size < 29 else (29, bytes([size - 29]))
    return bytes([kind << 5 | head]) + extra if kind <= 7 else bytes([head, kind - 7]) + extra


def _encode(value: object) -> bytes:
    """MaxMind DB data encoding of str, int, dict and list values."""
    if isinstance(value, str):
        return _control(2, len(value.encode())) + value.encode()
    if isinstance(value, int):
        payload = value.to_bytes(8, "big").lstrip(b"\0")
        return _control(value.kind if isinstance(value, _Uint) else 6, len(payload)) + payload
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(_encode(k) + _encode(v) for k, v in value.items())
    assert isinstance(value, list)
    return _control(11, len(value)) + b"".join(_encode(item) for item in value)


def write_mmdb(path: Path, networks: dict[str, dict[str, object]]) -> None:
    """Write a minimal IPv6 MaxMind DB (24-bit records) mapping each network to its record."""
    data = b""
    nodes: list[list[int | None]] = [[None, None]]  # a child is a node number, or ~offset of a record
    for cidr, record in networks.items():
        network = ipaddress.ip_network(cidr)
        bits = int(network.network_address)  # an IPv4 network lives at ::a.b.c.d/96+n
        length = network.prefixlen + (96 if network.version == 4 else 0)
        node = 0
        for depth in range(length - 1):
            bit = bits >> (127 - depth) & 1
            child = nodes[node][bit]
            if child is None:
                nodes.append([None, None])
                child = nodes[node][bit] = len(nodes) - 1
            node = child
        nodes[node][bits >> (128 - length) & 1] = ~len(data)
        data += _encode(record)
    count = len(nodes)

    def record_value(child: int | None) -> int:
        if child is None:
            return count
        return child if child >= 0 else count + 16 + ~child

    tree = b"".join(record_value(child).to_bytes(3, "big") for node in nodes for child in node)
    metadata = {
        "node_count": _Uint(count),
        "record_size": _Uint16(24),
        "ip_version": _Uint16(6),
        "database_type": "Test-Country",
        "languages": ["en"],
        "binary_format_major_version": _Uint16(2),
        "binary_format_minor_version": _Uint16(0),
        "build_epoch": _Uint64(1_700_000_000),
        "description": {"en": "clickwise test database"},
    }
    path.write_bytes(tree + b"\0" * 16 + data + b"\xab\xcd\xefMaxMind.com" + _encode(metadata))


@pytest.fixture
def mmdb(tmp_path: Path) -> str:
    path = tmp_path / "test-country.mmdb"
    write_mmdb(
        path,
        {
            "8.8.8.0/24": {"country": {"iso_code": "NZ"}},
            "81.2.69.0/24": {"country": {"iso_code": "GB"}, "registered_country": {"iso_code": "FR"}},
            "2.3.0.0/16": {"registered_country": {"iso_code": "FR"}},
            "9.9.9.0/24": {"continent": {"code": "EU"}},
            "2001:db8::/32": {"country": {"iso_code": "SE"}},
        },
    )
    return str(path)


def test_mmdb_answers_from_the_users_file(mmdb: str) -> None:
    resolver = GeoResolver(mmdb_path=mmdb)
    answers = {
        "8.8.8.8": "NZ",
        "8.8.8.*": "NZ",
        "81.2.69.142": "GB",  # the country wins over the registered country
        "2.3.4.5": "FR",  # no country: the registered country
        "9.9.9.9": None,  # a record without any country
        "1.1.1.1": None,  # not in the file
        "2001:db8::1": "SE",
        "::ffff:8.8.8.8": "NZ",
    }
    ips, expected = list(answers), list(answers.values())
    assert resolver.country_many(pa.array(ips + [None, "bad"])).to_pylist() == expected + [None, None]
    assert [resolver.country_one(ip) for ip in ips] == expected


def test_missing_mmdb_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.mmdb")
    with pytest.raises(EnrichmentError, match="nowhere.mmdb"):
        GeoResolver(mmdb_path=missing)


def test_unreadable_mmdb_is_an_error_naming_the_path(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a maxmind database")
    with pytest.raises(EnrichmentError, match="garbage.mmdb"):
        GeoResolver(mmdb_path=str(garbage))
