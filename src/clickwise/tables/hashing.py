"""A stable 64-bit hash of key texts: compiled for batches, plain Python for one key.

Keys of a table are located by this hash. It is defined here (not borrowed from a library whose
hash may change between versions) so that state written by one version reads the same in another:
the UTF-8 bytes are read as little-endian 64-bit words (zero-padded), each word is mixed into the
state, and a final avalanche spreads the bits.

>>> hash_text("u123") == int(hash_texts(pa.array(["u123"]))[0])
True
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

_MASK = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_MULTIPLIER = 0xFF51AFD7ED558CCD


def hash_text(text: str) -> int:
    """The hash of one text."""
    data = text.encode("utf-8")
    state = (_SEED ^ (len(data) * _MULTIPLIER)) & _MASK
    for start in range(0, len(data), 8):
        word = int.from_bytes(data[start : start + 8], "little")
        state = ((state ^ word) * _MULTIPLIER) & _MASK
        state ^= state >> 29
    return _avalanche(state)


def _avalanche(state: int) -> int:
    state ^= state >> 33
    state = (state * 0xC4CEB9FE1A85EC53) & _MASK
    state ^= state >> 33
    return state


def hash_texts(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Hashes of many texts (nulls hash like the empty text), equal to :func:`hash_text` on each."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts.cast(pa.large_string()).fill_null("")
    count = len(texts)
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + count + 1]
    data = (
        np.frombuffer(texts.buffers()[2], dtype=np.uint8)
        if texts.buffers()[2] is not None
        else np.zeros(0, np.uint8)
    )
    return _hash_all(data, offsets)


@numba.njit(cache=True, nogil=True)
def _hash_all(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`hash_text` of each text ``data[offsets[i]:offsets[i + 1]]`` (UTF-8 bytes), compiled:
    one pass over the bytes (unsigned 64-bit arithmetic wraps as the mask does in Python)."""
    count = len(offsets) - 1
    out = np.empty(count, dtype=np.uint64)
    multiplier = np.uint64(_MULTIPLIER)
    for i in range(count):
        start = offsets[i]
        length = offsets[i + 1] - start
        state = np.uint64(_SEED) ^ (np.uint64(length) * multiplier)
        for word_start in range(0, length, 8):
            word = np.uint64(0)
            for byte in range(min(8, length - word_start)):
                word |= np.uint64(data[start + word_start + byte]) << np.uint64(8 * byte)
            state = (state ^ word) * multiplier
            state ^= state >> np.uint64(29)
        state ^= state >> np.uint64(33)
        state *= np.uint64(0xC4CEB9FE1A85EC53)
        state ^= state >> np.uint64(33)
        out[i] = state
    return out
