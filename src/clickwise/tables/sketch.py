"""Distinct counts: exact up to a bound, then a deterministic HyperLogLog estimate.

Values are hashed with BLAKE2b (8 bytes, big-endian) of their text, so the estimate depends only on
the set of distinct values: the same on every run, machine, tiling and merge order. With p = 14
(16,384 registers) the standard error is about 0.8%.

>>> estimate_distinct(np.array([value_hash(str(i)) for i in range(5)], dtype=np.uint64), 10)
5
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

P = 14
REGISTERS = 1 << P
_ALPHA = 0.7213 / (1 + 1.079 / REGISTERS)
REST_BITS = 64 - P


def value_hash(value: object) -> int:
    """The 64-bit hash of a value's text (``str(value)``), stable across processes and machines."""
    return int.from_bytes(hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest(), "big")


def hash_values(values: Iterable[object]) -> np.ndarray:
    """Hashes of many values (callers pass distinct values: hashing costs about 1 µs each)."""
    return np.fromiter((value_hash(v) for v in values), dtype=np.uint64)


def registers(hashes: np.ndarray) -> np.ndarray:
    """HyperLogLog registers (uint8, length 2**14) of a set of hashes."""
    index = (hashes >> np.uint64(REST_BITS)).astype(np.int64)
    rest = hashes & np.uint64((1 << REST_BITS) - 1)
    # rank = leading zeros of the 50-bit remainder + 1 = 50 - bit_length(rest) + 1
    bit_length = np.zeros(len(rest), dtype=np.int64)
    nonzero = rest > 0
    bit_length[nonzero] = np.floor(np.log2(rest[nonzero].astype(np.float64))).astype(np.int64) + 1
    # float log2 can round up just below a power of two: fix with an exact check
    too_big = nonzero & (np.left_shift(np.uint64(1), (bit_length - 1).clip(0).astype(np.uint64)) > rest)
    bit_length[too_big] -= 1
    rank = (REST_BITS - bit_length + 1).astype(np.uint8)
    out = np.zeros(REGISTERS, dtype=np.uint8)
    np.maximum.at(out, index, rank)
    return out


def estimate_from_registers(regs: np.ndarray) -> int:
    """The HyperLogLog estimate, with linear counting for small cardinalities."""
    m = float(REGISTERS)
    raw = _ALPHA * m * m / float(np.sum(np.ldexp(1.0, -regs.astype(np.int64))))
    zeros = int(np.count_nonzero(regs == 0))
    if raw <= 2.5 * m and zeros > 0:
        raw = m * np.log(m / zeros)
    return int(round(raw))


def estimate_distinct(distinct_hashes: np.ndarray, exact_up_to: int) -> int:
    """Exact count when there are at most ``exact_up_to`` distinct hashes, else the estimate."""
    unique = np.unique(distinct_hashes)
    if len(unique) <= exact_up_to:
        return len(unique)
    return estimate_from_registers(registers(unique))
