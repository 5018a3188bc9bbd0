"""Building blocks: ids, addresses, weighted sampling, the arrival buffer, and the modules' doctests."""

from __future__ import annotations

import doctest
import importlib
import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.synth.arrival import ArrivalBuffer, arrival_lag_ms
from clickwise.synth.ids import dotted_ipv4, hex_ids, mix64
from clickwise.synth.sampling import AliasTable

MODULES = ["arrival", "catalog", "config", "ids", "rhythm", "sampling", "stream", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module("clickwise.synth" if name == "__init__" else f"clickwise.synth.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0


@given(st.lists(st.integers(0, 2**64 - 1), unique=True, max_size=200), st.integers(0, 2**40))
def test_mixed_ids_are_unique_and_hex(keys: list[int], salt: int) -> None:
    ids = hex_ids(mix64(np.array(keys, dtype=np.uint64), salt), prefix="u").to_pylist()
    assert len(set(ids)) == len(keys)
    assert all(len(i) == 17 and i[0] == "u" and int(i[1:], 16) >= 0 for i in ids)


@given(st.lists(st.integers(0, 2**32 - 1), max_size=100))
def test_dotted_ipv4_matches_ipaddress(addresses: list[int]) -> None:
    assert dotted_ipv4(np.array(addresses, dtype=np.int64)).to_pylist() == [
        str(ipaddress.IPv4Address(a)) for a in addresses
    ]


@settings(deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=30).filter(lambda w: sum(w) > 0.1))
def test_alias_sampling_follows_the_weights(weights: list[float]) -> None:
    w = np.array(weights)
    table = AliasTable.build(w)
    draws = table.sample(np.random.default_rng(0), 40_000)
    freq = np.bincount(draws, minlength=w.size) / draws.size
    assert np.all(freq[w == 0] == 0)
    assert np.abs(freq - w / w.sum()).max() < 0.02


@given(st.lists(st.lists(st.integers(0, 50), max_size=20), min_size=1, max_size=8))
def test_arrival_buffer_releases_everything_once_in_order(chunks: list[list[int]]) -> None:
    buffer = ArrivalBuffer()
    released: list[int] = []
    for index, chunk in enumerate(chunks):
        start = index * 10  # an event of chunk i arrives at or after its chunk start
        buffer.add("s", {"arrival_ts": np.array([start + lag for lag in chunk], dtype=np.int64)})
        out = buffer.release("s", before_ms=start + 10)
        if out is not None:
            assert (out["arrival_ts"] < start + 10).all()
            released += out["arrival_ts"].tolist()
    rest = buffer.release("s", before_ms=None)
    if rest is not None:
        released += rest["arrival_ts"].tolist()
    expected = sorted(i * 10 + lag for i, chunk in enumerate(chunks) for lag in chunk)
    assert released == expected


def test_arrival_lag_late_share() -> None:
    lag = arrival_lag_ms(np.random.default_rng(0), 200_000, 0.05)
    assert (lag > 0).all()
    assert abs((lag >= 60_000).mean() - 0.05) < 0.003
