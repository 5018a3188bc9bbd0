"""The reference data shipped in ``synth/data/``: countries, IP ranges, user agents, domain words.

Each loader reads its file once (cached) and returns arrays ready for vectorized sampling. The files
are plain CSV/TSV so that a reviewer can check each row against a public source:

- ``countries.csv``: traffic share, CTR effect (logit) and UTC offset of 30 countries;
- ``ip_ranges.csv``: real allocated IPv4 blocks per country (consumer ISPs) and of cloud providers
  (``kind=datacenter``), each checked to resolve to its country with geoip2fast;
- ``user_agents.tsv``: 142 real browser user agents labelled with device, browser and OS;
- ``bot_user_agents.tsv``: crawler, headless-browser and scripted-client user agents;
- ``domain_words.csv``: words and TLDs from which publisher domain names are built.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pyarrow as pa

DEVICES = ("desktop", "mobile", "tablet")
BOT_KINDS = ("crawler", "headless", "script")


@dataclass(frozen=True, slots=True)
class Countries:
    """The countries users live in; index ``i`` is the same in every array."""

    codes: tuple[str, ...]
    traffic_weight: np.ndarray
    ctr_effect: np.ndarray
    utc_offset_ms: np.ndarray


@dataclass(frozen=True, slots=True)
class IpRanges:
    """IPv4 blocks as ``[first, first + size)`` integers, with their country and kind."""

    country_codes: tuple[str, ...]
    first: np.ndarray
    size: np.ndarray
    is_datacenter: np.ndarray
    operators: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserAgents:
    """Human browser user agents with device class (index into :data:`DEVICES`) and weight."""

    strings: tuple[str, ...]
    device: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True, slots=True)
class BotUserAgents:
    """Bot user agents with their kind (index into :data:`BOT_KINDS`)."""

    strings: tuple[str, ...]
    kind: np.ndarray


@dataclass(frozen=True, slots=True)
class DomainWords:
    """The parts publisher domains are made of: ``first + second + "." + tld``."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    tlds: tuple[str, ...]
    tld_weight: np.ndarray


def _rows(name: str, delimiter: str = ",") -> list[dict[str, str]]:
    text = resources.files("clickwise.synth").joinpath("data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


@cache
def countries() -> Countries:
    """Load ``countries.csv``.

    >>> countries().codes[:3]
    ('US', 'GB', 'DE')
    """
    rows = _rows("countries.csv")
    return Countries(
        codes=tuple(r["country_code"] for r in rows),
        traffic_weight=np.array([float(r["traffic_weight"]) for r in rows]),
        ctr_effect=np.array([float(r["ctr_effect"]) for r in rows]),
        utc_offset_ms=np.array([int(r["utc_offset_minutes"]) * 60_000 for r in rows], dtype=np.int64),
    )


@cache
def ip_ranges() -> IpRanges:
    """Load ``ip_ranges.csv``; every country of :func:`countries` has at least one residential block."""
    rows = _rows("ip_ranges.csv")
    nets = [ipaddress.IPv4Network(r["cidr"]) for r in rows]
    return IpRanges(
        country_codes=tuple(r["country_code"] for r in rows),
        first=np.array([int(n.network_address) for n in nets], dtype=np.int64),
        size=np.array([n.num_addresses for n in nets], dtype=np.int64),
        is_datacenter=np.array([r["kind"] == "datacenter" for r in rows]),
        operators=tuple(r["operator"] for r in rows),
    )


@cache
def user_agents() -> UserAgents:
    """Load ``user_agents.tsv``."""
    rows = _rows("user_agents.tsv", delimiter="\t")
    return UserAgents(
        strings=tuple(r["user_agent"] for r in rows),
        device=np.array([DEVICES.index(r["device"]) for r in rows], dtype=np.int8),
        weight=np.array([float(r["weight"]) for r in rows]),
    )


@cache
def bot_user_agents() -> BotUserAgents:
    """Load ``bot_user_agents.tsv``."""
    rows = _rows("bot_user_agents.tsv", delimiter="\t")
    return BotUserAgents(
        strings=tuple(r["user_agent"] for r in rows),
        kind=np.array([BOT_KINDS.index(r["kind"]) for r in rows], dtype=np.int8),
    )


@cache
def domain_words() -> DomainWords:
    """Load ``domain_words.csv``."""
    rows = _rows("domain_words.csv")
    tlds = [r for r in rows if r["part"] == "tld"]
    return DomainWords(
        first=tuple(r["word"] for r in rows if r["part"] == "first"),
        second=tuple(r["word"] for r in rows if r["part"] == "second"),
        tlds=tuple(r["word"] for r in tlds),
        tld_weight=np.array([float(r["weight"]) for r in tlds]),
    )


def string_array(values: tuple[str, ...] | list[str]) -> pa.StringArray:
    """The strings as a pyarrow array, to be gathered with ``take`` per event."""
    return pa.array(values, type=pa.string())
