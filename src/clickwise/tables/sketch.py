"""Distinct counts: exact up to a bound, then a deterministic HyperLogLog estimate.

Values are hashed with BLAKE2b (8 bytes, big-endian) of their text, so the estimate depends only on
the set of distinct values: the same on every run, machine, tiling and merge order. With p = 14
(16,384 registers) the standard error is about 0.8%.

>>> estimate_distinct(np.array([value_hash(str(i)) for i in range(5)], dtype=np.uint64), 10)
5
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np

P = 14
REGISTERS = 1 << P
ALPHA = 0.7213 / (1 + 1.079 / REGISTERS)
REST_BITS = 64 - P
RANKS = REST_BITS + 2
"""Register values run from 0 (empty) to REST_BITS + 1."""
LINEAR_LIMIT = 2.5 * REGISTERS
"""Raw estimates up to this use linear counting (from the number of empty registers)."""
LINEAR_COUNTS = np.array(
    [0] + [round(REGISTERS * math.log(REGISTERS / zeros)) for zeros in range(1, REGISTERS + 1)]
)
"""Linear counting's estimate for each number of empty registers (computed once: the same answer
wherever it is used)."""


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
    return estimate_from_histogram(np.bincount(regs, minlength=RANKS))


def estimate_from_histogram(histogram: np.ndarray) -> int:
    """The estimate from how many registers hold each rank (``histogram[0]``: empty registers).

    The harmonic sum ``sum(2 ** -register)`` is computed exactly (integers in units of 2 ** -64)
    and rounded once, so the estimate does not depend on summation order.
    """
    counts = [int(c) for c in histogram]
    zeros = counts[0]
    scaled = sum(count << (64 - rank) for rank, count in enumerate(counts))
    raw = ALPHA * REGISTERS * REGISTERS / (scaled / (1 << 64))
    if raw <= LINEAR_LIMIT and zeros > 0:
        return int(LINEAR_COUNTS[zeros])
    return int(round(raw))


def estimate_distinct(distinct_hashes: np.ndarray, exact_up_to: int) -> int:
    """Exact count when there are at most ``exact_up_to`` distinct hashes, else the estimate."""
    unique = np.unique(distinct_hashes)
    if len(unique) <= exact_up_to:
        return len(unique)
    return estimate_from_registers(registers(unique))
