"""A stable 64-bit hash of key texts: vectorized for batches, cheap for one key.

Keys of a table are located by this hash. It is defined here (not borrowed from a library whose
hash may change between versions) so that state written by one version reads the same in another:
the UTF-8 bytes are read as little-endian 64-bit words (zero-padded), each word is mixed into the
state, and a final avalanche spreads the bits.

>>> hash_text("u123") == int(hash_texts(pa.array(["u123"]))[0])
True
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_MASK = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_MULTIPLIER = 0xFF51AFD7ED558CCD
_WIDE = 64  # texts longer than this many bytes are hashed one by one (keys rarely are)


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
    lengths = np.diff(offsets)
    out = np.empty(count, dtype=np.uint64)
    wide = lengths > _WIDE
    narrow = np.flatnonzero(~wide)
    out[narrow] = _hash_narrow(data, offsets[narrow], lengths[narrow])
    for index in np.flatnonzero(wide).tolist():
        out[index] = hash_text(texts[index].as_py())
    return out


def _hash_narrow(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    words = max(1, int((lengths.max(initial=0) + 7) // 8))
    padded = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    # a uint64 read at every byte offset (unaligned, no copy): words start anywhere in the buffer
    words_at = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    multiplier = np.uint64(_MULTIPLIER)
    state = np.uint64(_SEED) ^ (lengths.astype(np.uint64) * multiplier)
    with np.errstate(over="ignore"):
        for word in range(words):
            remaining = lengths - word * 8
            if remaining.min() >= 8:  # every text has a whole word here: no masks, no gathers
                values = words_at[starts + word * 8]
                state = _mix(state, values, multiplier)
                continue
            active = np.flatnonzero(remaining > 0)
            if len(active) == 0:
                break
            values = words_at[np.minimum(starts[active] + word * 8, len(padded) - 8)]
            bits = np.minimum(remaining[active], 8).astype(np.uint64) * np.uint64(8)
            partial = bits < np.uint64(64)
            values[partial] &= (np.uint64(1) << bits[partial]) - np.uint64(1)
            state[active] = _mix(state[active], values, multiplier)
        state ^= state >> np.uint64(33)
        state *= np.uint64(0xC4CEB9FE1A85EC53)
        state ^= state >> np.uint64(33)
    return state


def _mix(state: np.ndarray, values: np.ndarray, multiplier: np.uint64) -> np.ndarray:
    mixed = (state ^ values) * multiplier
    mixed ^= mixed >> np.uint64(29)
    return mixed
