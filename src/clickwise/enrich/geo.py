"""Country of an IP address, for a whole column at once or for one value.

:class:`GeoResolver` is the one implementation used by batch ingest, streaming and the online
decision path: :meth:`~GeoResolver.country_many` and :meth:`~GeoResolver.country_one` give the same
answer for the same text, so a model never sees a country at training time that serving would not
compute.

The default data is the GeoLite2 country data bundled with geoip2fast (IPv4 file, plus its IPv6 file
loaded on the first IPv6 address). It is read once per process into a flat numpy table; IPv4 text is
parsed and resolved with numpy, without a Python loop per row. A user's own MaxMind ``.mmdb`` file can
be used instead (``mmdb_path``); it is read with ``maxminddb``, one lookup per distinct address.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import ipaddress
import itertools
import pickle
import threading
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from clickwise.errors import EnrichmentError

__all__ = ["GeoResolver"]

_WHITESPACE = " \t\n\v\f\r"
"""ASCII whitespace, stripped around an address (other Unicode spaces make the value invalid)."""

_NONE = -1
"""Code index meaning "no country" (null, invalid, private, reserved or unknown address)."""

_MIXED = -2
"""Marks a /24 block that holds more than one answer; such addresses are resolved by binary search."""

_WIDTH = 16
"""Bytes per row in the parse matrix: the longest dotted quad has 15 characters."""

_ZERO_COLUMN = _WIDTH - 1
"""Column of the parse matrix that always holds the character ``0`` (left padding of short octets)."""

_ROWS_PER_STEP = 1 << 18
"""Rows parsed per numpy step; bounds the temporary memory to a few tens of MB."""

_SAMPLE_ROWS = 1 << 14
"""Rows sampled from a large column to decide whether to resolve it once per distinct value."""

_SAMPLE_MAX_DISTINCT = 0.5
"""Share of distinct values in the sample below which the column is dictionary-encoded first.

Encoding 5M addresses costs about 0.6x of parsing them, so it pays when most rows repeat; the
distinct share of a small sample overstates that of the whole column, so this errs toward parsing.
"""

_SLOW_CACHE_SIZE = 1 << 16
"""Distinct non-IPv4 texts (IPv6, padded, garbage) whose answer is remembered per resolver."""

_BITS_OF_BYTES = np.uint64(0x0102040810204080)
"""Multiplier that gathers the low bit of each of 8 bytes into the top byte of a uint64."""


# ---------------------------------------------------------------------------------------------------
# Parsing dotted quads


def _parse_ipv4_one(text: str) -> int | None:
    """Return the address of a strict dotted quad (``*`` counts as 0), else None."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if part == "*":
            octet = 0
        elif 0 < len(part) <= 3 and part.isascii() and part.isdigit():
            octet = int(part)
            if octet > 255:
                return None
        else:
            return None
        value = value << 8 | octet
    return value


@dataclass(frozen=True)
class _Layouts:
    """The 81 shapes of a dotted quad (each octet 1 to 3 characters), as lookup tables.

    ``by_key[dot_bits | length << 15]`` is the layout number or -1; ``star_bits[layout]`` says where a
    lone ``*`` may stand; ``gather[layout]`` lists, per octet, 3 column numbers that right-align its
    digits (``_ZERO_COLUMN`` pads on the left).
    """

    by_key: np.ndarray
    star_bits: np.ndarray
    gather: np.ndarray


@functools.cache
def _layouts() -> _Layouts:
    by_key = np.full(16 << 15, -1, dtype=np.int8)
    star_bits = np.zeros(81, dtype=np.int32)
    gather = np.zeros((81, 12), dtype=np.intp)
    for layout, lengths in enumerate(itertools.product((1, 2, 3), repeat=4)):
        starts = [sum(lengths[:k]) + k for k in range(4)]
        dots = sum(1 << (start + length) for start, length in zip(starts[:3], lengths[:3], strict=True))
        by_key[dots | (starts[3] + lengths[3]) << 15] = layout
        star_bits[layout] = sum(1 << s for s, n in zip(starts, lengths, strict=True) if n == 1)
        columns = [
            [_ZERO_COLUMN] * (3 - n) + list(range(s, s + n)) for s, n in zip(starts, lengths, strict=True)
        ]
        gather[layout] = list(itertools.chain.from_iterable(columns))
    return _Layouts(by_key, star_bits, gather)


def _row_bits(flags: np.ndarray) -> np.ndarray:
    """Pack a (rows, 16) bool matrix into one int32 bit mask per row (column i -> bit i)."""
    words = flags.view(np.uint64)
    packed = ((words * _BITS_OF_BYTES) >> np.uint64(56)).astype(np.int32)
    return packed[:, 0] | packed[:, 1] << 8


def _byte_matrix(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Copy the 16 bytes from each start into a (rows, 16) uint8 row, and put ``0`` in column 15.

    Bytes past a string's end belong to the next strings; :func:`_parse_matrix` masks them out.
    ``starts`` ascend (Arrow offsets do), so the rows too close to the end of ``data`` for a full
    window are the last few; they are read from a zero-padded copy of the tail.
    """
    inside = int(np.searchsorted(starts, len(data) - _WIDTH, side="right"))
    windows = sliding_window_view(data, _WIDTH) if inside else np.zeros((0, _WIDTH), np.uint8)
    if inside == len(starts):
        matrix = windows[starts]
    else:
        matrix = np.empty((len(starts), _WIDTH), dtype=np.uint8)
        matrix[:inside] = windows[starts[:inside]]
        tail_from = max(0, len(data) - 2 * _WIDTH)
        tail = np.zeros(3 * _WIDTH, dtype=np.uint8)
        tail[: len(data) - tail_from] = data[tail_from:]
        matrix[inside:] = sliding_window_view(tail, _WIDTH)[starts[inside:] - tail_from]
    matrix[:, _ZERO_COLUMN] = ord("0")
    return matrix


def _parse_matrix(matrix: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse rows of :func:`_byte_matrix` (strings of 7 to 15 bytes): (uint32 address, bool valid)."""
    tables = _layouts()
    inside = (1 << lengths) - 1
    dots = _row_bits(matrix == ord(".")) & inside
    stars = _row_bits(matrix == ord("*")) & inside
    digits = _row_bits((matrix - np.uint8(ord("0"))) < 10) & inside
    layout = tables.by_key[dots | lengths << 15]
    valid = (layout >= 0) & ((digits | dots | stars) == inside) & ((stars & ~tables.star_bits[layout]) == 0)
    columns = tables.gather[layout]
    columns += (np.arange(len(matrix), dtype=np.intp) * _WIDTH)[:, None]
    numbers = matrix.reshape(-1)[columns] - np.uint8(ord("0"))
    numbers *= numbers < 10  # a lone "*" counts as 0
    numbers = numbers.astype(np.uint16).reshape(-1, 4, 3)
    octets = numbers[:, :, 0] * 100 + numbers[:, :, 1] * 10 + numbers[:, :, 2]
    valid &= (octets[:, 0] | octets[:, 1] | octets[:, 2] | octets[:, 3]) < 256
    octets = octets.astype(np.uint32)
    address = octets[:, 0] << 24 | octets[:, 1] << 16 | octets[:, 2] << 8 | octets[:, 3]
    return address, valid


def _parse_ipv4_many(offsets: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse Arrow string offsets + bytes as strict dotted quads: (uint32 address, bool valid).

    Same rules as :func:`_parse_ipv4_one`: 4 parts of 1-3 ASCII digits (0-255) or a lone ``*``;
    anything else (whitespace included) is not valid here.
    """
    starts = offsets[:-1]
    lengths = (offsets[1:] - starts).astype(np.int32)
    address = np.zeros(len(starts), dtype=np.uint32)
    valid = np.zeros(len(starts), dtype=bool)
    rows = np.flatnonzero((lengths >= 7) & (lengths <= 15))
    for first in range(0, len(rows), _ROWS_PER_STEP):
        step = rows[first : first + _ROWS_PER_STEP]
        matrix = _byte_matrix(data, starts[step])
        address[step], valid[step] = _parse_matrix(matrix, lengths[step])
    return address, valid


def _string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and bytes of a string or large_string array, without copying."""
    offset_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return offsets, data


# ---------------------------------------------------------------------------------------------------
# Country codes


def _iso_code(code: object) -> str | None:
    """``code`` if it looks like an ISO 3166 alpha-2 code, else None (private ranges, ``ASIA``...)."""
    if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha() and code.isupper():
        return code
    return None


class _CodeBook:
    """Country codes numbered in order of first sight; index -1 means no country. Thread-safe."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()
        for code in initial:
            self.intern(code)

    def intern(self, code: str | None) -> int:
        if code is None:
            return _NONE
        found = self._index.get(code)
        if found is not None:
            return found
        with self._lock:
            if code not in self._index:
                self._index[code] = len(self._names)
                self._names.append(code)
            return self._index[code]

    def name(self, index: int) -> str | None:
        return self._names[index] if index >= 0 else None

    def to_strings(self, codes: np.ndarray) -> pa.Array:
        """Turn code indices into a string array (null where the index is -1)."""
        dictionary = pa.array(list(self._names), type=pa.string())
        indices = pa.array(np.asarray(codes, dtype=np.int32), mask=codes < 0)
        return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


# ---------------------------------------------------------------------------------------------------
# Bundled geoip2fast data


def _read_geoip2fast(filename: str) -> tuple[list[int], list[int], list[int], list[str]]:
    """Flat (range starts, name numbers, prefix lengths, names) from a geoip2fast country .dat.gz."""
    import geoip2fast

    path = Path(geoip2fast.__file__).with_name(filename)
    try:
        with gzip.open(path, "rb") as stream:
            version, source, _, database = pickle.load(stream)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise EnrichmentError(
            f"cannot read geoip2fast data {str(path)!r}: {exc}; reinstall geoip2fast"
        ) from exc
    if version not in (120, 121) or not source.get("country") or source.get("asn") or len(database) != 5:
        raise EnrichmentError(f"geoip2fast data {str(path)!r} is not a country file of format 120/121")
    _, names, firsts, name_ids, prefixes = database
    flat = itertools.chain.from_iterable
    return list(flat(firsts)), list(flat(name_ids)), list(flat(prefixes)), list(names)


@dataclass(frozen=True)
class _Ipv4Table:
    """IPv4 answers: a direct table per /24 block, and sorted boundaries for mixed blocks."""

    names: tuple[str, ...]
    blocks: np.ndarray  # int16 per /24 block: code index, _NONE, or _MIXED
    starts: np.ndarray  # uint32, sorted: the first address of each run of equal answers
    codes: np.ndarray  # int16 code index of each run

    def codes_many(self, addresses: np.ndarray) -> np.ndarray:
        found = self.blocks[addresses >> 8].astype(np.int32)
        mixed = np.flatnonzero(found == _MIXED)
        if len(mixed):
            runs = np.searchsorted(self.starts, addresses[mixed], side="right") - 1
            found[mixed] = self.codes[runs]
        return found


@dataclass(frozen=True)
class _Ipv4Lookup:
    """The same table in Python containers, for a lookup in well under a microsecond."""

    blocks: memoryview
    starts: array[int]
    codes: list[int]

    def code_one(self, address: int) -> int:
        found = self.blocks[address >> 8]
        if found == _MIXED:
            found = self.codes[bisect.bisect_right(self.starts, address) - 1]
        return int(found)


def _runs(
    starts: np.ndarray, ends: np.ndarray, codes: np.ndarray, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cover [0, span) with runs of one answer: ranges, the gaps between them (-1), equal runs merged.

    Mirrors geoip2fast's lookup: an address belongs to the last range that starts at or before it, and
    has no answer if it lies past that range's end.
    """
    following = np.append(starts[1:], span)
    gap = ends + 1 < following
    run_starts = np.concatenate([[0], starts, ends[gap] + 1])
    run_codes = np.concatenate([[_NONE], codes, np.full(int(gap.sum()), _NONE)])
    order = np.argsort(run_starts, kind="stable")
    run_starts, run_codes = run_starts[order], run_codes[order]
    last_of_start = np.append(run_starts[1:] != run_starts[:-1], True)
    run_starts, run_codes = run_starts[last_of_start], run_codes[last_of_start]
    changes = np.concatenate([[True], run_codes[1:] != run_codes[:-1]])
    return run_starts[changes], run_codes[changes]


def _block_table(starts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One answer per /24 block (runs start at 0), or _MIXED if a run starts inside the block."""
    first_block = (starts + 255) >> 8
    counts = np.diff(np.append(first_block, 1 << 24))
    blocks = np.repeat(codes.astype(np.int16), counts)
    blocks[starts[(starts & 255) != 0] >> 8] = _MIXED
    return blocks


def _code_numbers(names: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct ISO codes of a geoip2fast name list, and the code index of each name (-1: none)."""
    codes = [_iso_code(name.split(":", 1)[0]) for name in names]
    distinct = tuple(sorted({code for code in codes if code is not None}))
    numbers = np.array([distinct.index(code) if code else _NONE for code in codes], dtype=np.int16)
    return distinct, numbers


@functools.cache
def _ipv4_table() -> _Ipv4Table:
    starts, name_ids, prefixes, names = _read_geoip2fast("geoip2fast.dat.gz")
    distinct, numbers = _code_numbers(names)
    first = np.array(starts, dtype=np.int64)
    ends = first + (np.int64(1) << (32 - np.array(prefixes, dtype=np.int64))) - 1
    run_starts, run_codes = _runs(first, ends, numbers[np.array(name_ids)], 1 << 32)
    blocks = _block_table(run_starts, run_codes)
    return _Ipv4Table(distinct, blocks, run_starts.astype(np.uint32), run_codes.astype(np.int16))


@functools.cache
def _ipv4_lookup() -> _Ipv4Lookup:
    table = _ipv4_table()
    return _Ipv4Lookup(table.blocks.data, array("I", table.starts.tobytes()), table.codes.tolist())


@dataclass(frozen=True)
class _Ipv6Table:
    """IPv6 ranges of geoip2fast's IPv6 file: sorted starts, inclusive ends, ISO code or None."""

    starts: list[int]
    ends: list[int]
    codes: list[str | None]

    def code_one(self, value: int) -> str | None:
        at = bisect.bisect_right(self.starts, value) - 1
        return self.codes[at] if at >= 0 and value <= self.ends[at] else None


@functools.cache
def _ipv6_table() -> _Ipv6Table:
    starts, name_ids, prefixes, names = _read_geoip2fast("geoip2fast-ipv6.dat.gz")
    codes = [_iso_code(name.split(":", 1)[0]) for name in names]
    keep = [i for i, start in enumerate(starts) if start > 1 << 32]  # the rest is the IPv4 part
    return _Ipv6Table(
        starts=[starts[i] for i in keep],
        ends=[starts[i] + (1 << (128 - prefixes[i])) - 1 for i in keep],
        codes=[codes[name_ids[i]] for i in keep],
    )


# ---------------------------------------------------------------------------------------------------
# Sources: where answers come from


class _Source(Protocol):
    """Where answers come from. Answers are code indices into ``book`` (-1: no country)."""

    book: _CodeBook

    def codes_many(self, addresses: np.ndarray) -> np.ndarray: ...

    def code_ipv4(self, address: int) -> int: ...

    def code_ipv6(self, value: int) -> int: ...


class _BundledSource:
    """geoip2fast's GeoLite2 country data; the book starts with the IPv4 table's codes, in order."""

    def __init__(self) -> None:
        self._table = _ipv4_table()
        self._lookup = _ipv4_lookup()
        self.book = _CodeBook(self._table.names)

    def codes_many(self, addresses: np.ndarray) -> np.ndarray:
        return self._table.codes_many(addresses)

    def code_ipv4(self, address: int) -> int:
        return self._lookup.code_one(address)

    def code_ipv6(self, value: int) -> int:
        return self.book.intern(_ipv6_table().code_one(value))


def _mmdb_country(record: object) -> str | None:
    """The record's country, else its registered country (as geoip2fast builds its data)."""
    if not isinstance(record, dict):
        return None
    for key in ("country", "registered_country"):
        entry = record.get(key)
        if isinstance(entry, dict) and _iso_code(entry.get("iso_code")):
            return str(entry["iso_code"])
    return None


class _MmdbSource:
    """A MaxMind .mmdb file read with ``maxminddb``; one cached lookup per distinct address."""

    def __init__(self, path: str) -> None:
        import maxminddb

        try:
            self._reader: Any = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise EnrichmentError(
                f"cannot open the MaxMind database {path!r}: {exc}. Give the path of a readable .mmdb "
                "file (GeoLite2/GeoIP2 Country or City), or mmdb_path=None for the bundled data"
            ) from exc
        self.book = _CodeBook()
        self.code_ipv4: Callable[[int], int] = functools.lru_cache(_SLOW_CACHE_SIZE)(self._ipv4)
        self.code_ipv6: Callable[[int], int] = functools.lru_cache(_SLOW_CACHE_SIZE)(self._ipv6)

    def codes_many(self, addresses: np.ndarray) -> np.ndarray:
        distinct, inverse = np.unique(addresses, return_inverse=True)
        codes = np.array([self.code_ipv4(int(address)) for address in distinct], dtype=np.int32)
        return codes[inverse.reshape(-1)]

    def _ipv4(self, address: int) -> int:
        return self._get(ipaddress.IPv4Address(address))

    def _ipv6(self, value: int) -> int:
        return self._get(ipaddress.IPv6Address(value))

    def _get(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        try:
            record = self._reader.get(address)
        except ValueError:  # an IPv6 address asked of an IPv4-only database
            return _NONE
        return self.book.intern(_mmdb_country(record))


def _mostly_repeated(strings: pa.Array) -> bool:
    """Whether a large column repeats so much that resolving its distinct values is cheaper.

    Looks at a fixed pseudo-random sample (same column, same decision), without replacement.
    """
    if len(strings) < 4 * _SAMPLE_ROWS:
        return False
    rows = np.random.default_rng(len(strings)).choice(len(strings), _SAMPLE_ROWS, replace=False)
    distinct = pc.count_distinct(strings.take(pa.array(rows))).as_py()
    return bool(distinct < _SAMPLE_MAX_DISTINCT * _SAMPLE_ROWS)


# ---------------------------------------------------------------------------------------------------
# The resolver


class GeoResolver:
    """Resolve IP addresses to ISO 3166 alpha-2 country codes, vectorized or one at a time.

    Accepted: dotted-quad IPv4 (octets 0-255, 1-3 digits; leading zeros are read as decimal, never
    octal), masked IPv4 where a whole octet is ``*`` (``117.36.*.*`` is resolved as its network
    ``117.36.0.0``), and IPv6 (IPv4-mapped ``::ffff:a.b.c.d`` is resolved as IPv4). Spaces, tabs and
    line breaks around the value are ignored. Everything else -- null, empty, garbage, private,
    reserved or unknown addresses -- gives null, never an error: bad records are data.

    With the bundled data, the IPv4 answer equals ``geoip2fast.GeoIP2Fast().lookup(ip).country_code``
    except where that is not an ISO code (``--`` for private ranges, ``ASIA``) and for Andorra, which
    geoip2fast 1.2.2 reports as a private network (an off-by-one in its IPv4 file handling).

    A resolver is safe to share between threads. The bundled tables are built once per process
    (~0.2 s, ~40 MB); the IPv6 table (~0.2 s, ~40 MB) only when the first IPv6 address is seen.

    Args:
        mmdb_path: a MaxMind ``.mmdb`` file (GeoLite2 or GeoIP2, Country or City) to use instead of the
            bundled GeoLite2 data of June 2024. The answer is the network's country, else its
            registered country. Raises :class:`~clickwise.errors.EnrichmentError` if it cannot be read.

    >>> import pyarrow as pa
    >>> geo = GeoResolver()
    >>> ips = pa.array(["8.8.8.8", " 1.1.1.1", "117.36.*.*", "10.0.0.1", "1.2.3", None])
    >>> geo.country_many(ips).to_pylist()
    ['US', 'AU', 'CN', None, None, None]
    >>> geo.country_one("8.8.8.8")
    'US'
    """

    def __init__(self, mmdb_path: str | None = None) -> None:
        self._source: _Source = _BundledSource() if mmdb_path is None else _MmdbSource(mmdb_path)
        self._book = self._source.book
        self._code_of_text: Callable[[str], int] = functools.lru_cache(_SLOW_CACHE_SIZE)(self._resolve_text)

    def country_one(self, ip: str | None) -> str | None:
        """The country of one address (same answer as :meth:`country_many`), or None.

        >>> GeoResolver().country_one("2001:4860:4860::8888")
        'US'
        """
        if ip is None:
            return None
        if not isinstance(ip, str):
            raise EnrichmentError(f"an IP address must be a str or None, got {type(ip).__name__}: {ip!r}")
        address = _parse_ipv4_one(ip)
        code = self._source.code_ipv4(address) if address is not None else self._code_of_text(ip)
        return self._book.name(code)

    def country_many(self, ips: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The country of each address as a ``pa.string()`` array of the same length (null: none).

        Accepts string, large_string, string_view or dictionary-encoded string arrays and chunked
        arrays of those; any other type raises :class:`~clickwise.errors.EnrichmentError`.

        Dotted quads are parsed and resolved with numpy, row by row (about 0.1 µs a row). A column
        that is already dictionary-encoded, or a large one where a sample shows that most rows repeat,
        is resolved once per distinct value instead. Other rows (IPv6, padded or bad text) are
        resolved once per distinct text in Python: a column of distinct IPv6 addresses costs about
        5 µs a row.
        """
        chunks = ips.chunks if isinstance(ips, pa.ChunkedArray) else [ips]
        parts = [self._country_chunk(chunk) for chunk in chunks]
        if not parts:
            return pa.array([], type=pa.string())
        return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)

    def _country_chunk(self, chunk: pa.Array) -> pa.Array:
        kind = chunk.type
        if pa.types.is_dictionary(kind):
            return self._country_chunk(chunk.dictionary).take(chunk.indices)
        if pa.types.is_null(kind):
            return pa.nulls(len(chunk), type=pa.string())
        if pa.types.is_string_view(kind):
            chunk = chunk.cast(pa.large_string())
        elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise EnrichmentError(f"IP addresses must be a string column, got type {kind}")
        if _mostly_repeated(chunk):
            return self._country_chunk(chunk.dictionary_encode())
        return self._book.to_strings(self._codes_of_strings(chunk))

    def _codes_of_strings(self, strings: pa.Array) -> np.ndarray:
        """Code index per row: dotted quads vectorized, the rest once per distinct text."""
        offsets, data = _string_buffers(strings)
        addresses, valid = _parse_ipv4_many(offsets, data)
        present = strings.is_valid().to_numpy(zero_copy_only=False)
        valid &= present
        codes = np.full(len(strings), _NONE, dtype=np.int32)
        codes[valid] = self._source.codes_many(addresses[valid])
        retry = np.flatnonzero(present & ~valid & (offsets[1:] > offsets[:-1]))
        if len(retry):
            codes[retry] = self._codes_per_distinct(strings.take(pa.array(retry)))
        return codes

    def _codes_per_distinct(self, strings: pa.Array) -> np.ndarray:
        encoded = strings.dictionary_encode()
        per_text = [self._code_of_text(text) for text in encoded.dictionary.to_pylist()]
        return np.array(per_text, dtype=np.int32)[encoded.indices.to_numpy()]

    def _resolve_text(self, text: str) -> int:
        """Code index of any text: padded IPv4, IPv6, or garbage (-1)."""
        text = text.strip(_WHITESPACE)
        address = _parse_ipv4_one(text)
        if address is not None:
            return self._source.code_ipv4(address)
        if ":" not in text:
            return _NONE
        try:
            ipv6 = ipaddress.IPv6Address(text)
        except ValueError:
            return _NONE
        if ipv6.ipv4_mapped is not None:
            return self._source.code_ipv4(int(ipv6.ipv4_mapped))
        return self._source.code_ipv6(int(ipv6))
