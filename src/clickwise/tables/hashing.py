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
    """Hashes of many texts (nulls hash like the empty text), equal to :func:`hash_text` on each.
    String, large string and string view arrays are read as they are (views: no conversion)."""
    if isinstance(texts, pa.ChunkedArray):
        if texts.num_chunks != 1:
            return np.concatenate([np.zeros(0, np.uint64), *(hash_texts(chunk) for chunk in texts.chunks)])
        texts = texts.chunk(0)
    if len(texts) == 0:
        return np.zeros(0, dtype=np.uint64)
    if texts.null_count:  # (rare: a copy that hashes like the empty text)
        texts = texts.cast(pa.large_string()).fill_null("")
    if pa.types.is_string_view(texts.type):
        return _hash_views(texts)
    if not pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.large_string())
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    return _hash_all(_bytes_of(buffers[2]), offsets)


def _bytes_of(buffer: pa.Buffer | None) -> np.ndarray:
    """A buffer's bytes (no copy), starting at an 8-byte boundary so that whole words can be read."""
    if buffer is None or buffer.size == 0:
        data = np.zeros(0, dtype=np.uint8)
    else:
        data = np.frombuffer(buffer, dtype=np.uint8)
        if buffer.address % 8:  # (Arrow aligns its buffers: no copy)
            data = data.copy()
    return data


def _hash_views(texts: pa.Array) -> np.ndarray:
    """Hashes of a string view array: each 16-byte view holds a length and the text itself (12
    bytes or fewer) or its place in one of the data buffers (which are read as one)."""
    buffers = texts.buffers()
    rows = slice(texts.offset, texts.offset + len(texts))
    words = np.frombuffer(buffers[1], dtype=np.uint64).reshape(-1, 2)[rows]
    fields = np.frombuffer(buffers[1], dtype=np.int32).reshape(-1, 4)[rows]  # length, prefix, buffer, offset
    parts = [_bytes_of(buffer) for buffer in buffers[2:]]
    starts = np.cumsum([0, *(len(part) for part in parts)], dtype=np.int64)
    data = np.concatenate([np.zeros(0, np.uint8), *parts]) if len(parts) != 1 else parts[0]
    return _hash_viewed(words, fields, data, starts)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(state: np.uint64, word: np.uint64) -> np.uint64:
    state = (state ^ word) * np.uint64(_MULTIPLIER)
    return state ^ (state >> np.uint64(29))


@numba.njit(cache=True, nogil=True, inline="always")
def _start(length: int | np.int64) -> np.uint64:
    return np.uint64(_SEED) ^ (np.uint64(length) * np.uint64(_MULTIPLIER))


@numba.njit(cache=True, nogil=True, inline="always")
def _finish(state: np.uint64) -> np.uint64:
    state ^= state >> np.uint64(33)
    state *= np.uint64(0xC4CEB9FE1A85EC53)
    return state ^ (state >> np.uint64(33))


@numba.njit(cache=True, nogil=True, inline="always")
def _low_bytes(word: np.uint64, count: int | np.int64) -> np.uint64:
    """The ``count`` (0 to 8) low bytes of ``word``."""
    if count >= 8:
        return word
    return word & ((np.uint64(1) << np.uint64(8 * count)) - np.uint64(1))


@numba.njit(cache=True, nogil=True, inline="always")
def _hash_at(data: np.ndarray, words: np.ndarray, start: int | np.int64, length: int | np.int64) -> np.uint64:
    """The hash of the ``length`` bytes of ``data`` at ``start`` (``words``: the same bytes as
    64-bit words): each 8 bytes are two aligned word reads and shifts, except at the buffer's end,
    which is read byte by byte."""
    state = _start(length)
    shift = np.uint64((start & 7) * 8)
    index = np.int64(start >> 3)
    for done in range(0, length, 8):
        if index + 1 < len(words):
            word = words[index] >> shift
            if shift:
                word |= words[index + 1] << (np.uint64(64) - shift)
        else:
            word = np.uint64(0)
            for byte in range(min(8, length - done)):
                word |= np.uint64(data[start + done + byte]) << np.uint64(8 * byte)
        state = _mix(state, _low_bytes(word, length - done))
        index += 1
    return _finish(state)


@numba.njit(cache=True, nogil=True)
def _hash_all(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`hash_text` of each text, bytes ``[offsets[i], offsets[i + 1])`` of ``data`` (UTF-8),
    compiled (unsigned 64-bit arithmetic wraps as the mask does in Python)."""
    count = len(offsets) - 1
    out = np.empty(count, dtype=np.uint64)
    words = data[: len(data) // 8 * 8].view(np.uint64)
    for i in range(count):
        out[i] = _hash_at(data, words, offsets[i], offsets[i + 1] - offsets[i])
    return out


@numba.njit(cache=True, nogil=True)
def _hash_viewed(views: np.ndarray, fields: np.ndarray, data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """:func:`hash_text` of each view: a text of 12 bytes or fewer sits in the view after its
    4-byte length; a longer one is at (buffer, offset), the view's last two 4-byte fields."""
    out = np.empty(len(views), dtype=np.uint64)
    words = data[: len(data) // 8 * 8].view(np.uint64)
    for i in range(len(views)):
        length = np.int64(fields[i, 0])
        if length <= 12:
            low, high = views[i, 0], views[i, 1]
            state = _start(length)
            if length > 0:
                state = _mix(state, _low_bytes((low >> np.uint64(32)) | (high << np.uint64(32)), length))
            if length > 8:
                state = _mix(state, _low_bytes(high >> np.uint64(32), length - 8))
            out[i] = _finish(state)
        else:
            out[i] = _hash_at(data, words, starts[fields[i, 2]] + fields[i, 3], length)
    return out
