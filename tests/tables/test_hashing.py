"""The compiled key hash against its plain-Python definition, for every way texts arrive (string,
large string and string view arrays, sliced, chunked, with nulls), and pinned to fixed values so
that state written by one version keeps its keys in the next."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.tables.hashing import hash_text, hash_texts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0x877E2011D918DD23),
        ("u123", 0xD8FC791159755697),
        ("abcdefghijkl", 0x315E3245FFD839B5),  # 12 bytes: the most a string view holds inline
        ("abcdefghijklm", 0xE185E0AB3C2CE7),
        ("\u4e2d\u00e9-0123456789abcdef", 0xBC269804D4C97BE1),
    ],
)
def test_the_hash_of_a_text_does_not_change(text: str, expected: int) -> None:
    assert hash_text(text) == expected
    for kind in (pa.string(), pa.large_string(), pa.string_view()):
        assert int(hash_texts(pa.array([text], kind))[0]) == expected


@settings(max_examples=80, deadline=None)
@given(
    texts=st.lists(st.none() | st.text(alphabet="ab\u00e9\u4e2d\U0001f600", max_size=30), max_size=60),
    skip=st.integers(0, 3),
    cut=st.integers(0, 60),
    kind=st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]),
)
def test_compiled_hashes_equal_the_definition(
    texts: list[str | None], skip: int, cut: int, kind: pa.DataType
) -> None:
    """Every text hashes as :func:`hash_text` says, nulls as the empty text, wherever its bytes
    start in the buffer (the array is a slice of a longer one) and however the array is chunked."""
    whole = pa.array(["x" * 7] * skip + texts, kind).slice(skip)
    expected = np.array([hash_text(t or "") for t in texts], dtype=np.uint64)
    assert np.array_equal(hash_texts(whole), expected)
    cut = min(cut, len(texts))
    chunked = pa.chunked_array([whole.slice(0, cut), whole.slice(cut)], kind)
    assert np.array_equal(hash_texts(chunked), expected)


def test_polars_string_views_hash_like_their_texts() -> None:
    """Polars hands its strings over as views with many data buffers, without a copy."""
    texts = [f"user-{i:012d}" if i % 3 else f"u{i}" for i in range(5_000)]
    frame = pl.concat([pl.DataFrame({"t": texts[:2_500]}), pl.DataFrame({"t": texts[2_500:]})], rechunk=False)
    views = frame.get_column("t").to_arrow(compat_level=pl.CompatLevel.newest())
    assert pa.types.is_string_view(views.type)
    assert np.array_equal(hash_texts(views), np.array([hash_text(t) for t in texts], dtype=np.uint64))
