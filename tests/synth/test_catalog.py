"""The shipped reference data is real: IP ranges resolve to their country, user agents parse as labelled."""

from __future__ import annotations

import csv
import ipaddress
from importlib import resources

import geoip2fast
import numpy as np
import pytest
from crawlerdetect import CrawlerDetect
from ua_parser import parse

from clickwise.synth import SynthConfig
from clickwise.synth.catalog import bot_user_agents, countries, domain_words, ip_ranges, user_agents
from clickwise.synth.population import build_population

CLOUDS = {"Amazon Web Services", "Google Cloud", "DigitalOcean", "Hetzner Online", "OVH"}


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("clickwise.synth").joinpath("data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t" if name.endswith(".tsv") else ","))


@pytest.fixture(scope="module")
def geo() -> geoip2fast.GeoIP2Fast:
    return geoip2fast.GeoIP2Fast(verbose=False)


def test_every_range_resolves_to_its_country(geo: geoip2fast.GeoIP2Fast) -> None:
    rng = np.random.default_rng(0)
    ranges = ip_ranges()
    wrong = []
    for code, first, size in zip(
        ranges.country_codes, ranges.first.tolist(), ranges.size.tolist(), strict=True
    ):
        hosts = [first + 1, first + size - 2, *(first + rng.integers(1, size - 1, 40)).tolist()]
        for host in hosts:
            address = str(ipaddress.IPv4Address(host))
            if geo.lookup(address).country_code != code:
                wrong.append((code, address))
    assert wrong == []


def test_ranges_are_valid_public_blocks_of_named_operators() -> None:
    rows = _data_rows("ip_ranges.csv")
    assert len(rows) >= 90
    for row in rows:
        net = ipaddress.IPv4Network(row["cidr"])  # strict: raises on host bits
        assert net.is_global and net.prefixlen <= 17, row
        assert row["kind"] in {"residential", "datacenter"} and row["operator"]
    assert {r["operator"] for r in rows if r["kind"] == "datacenter"} == CLOUDS


def test_every_country_has_residential_ranges() -> None:
    ranges = ip_ranges()
    residential = {c for c, dc in zip(ranges.country_codes, ranges.is_datacenter, strict=True) if not dc}
    assert set(countries().codes) <= residential
    assert len(countries().codes) == 30


def test_user_ips_resolve_to_the_users_country(geo: geoip2fast.GeoIP2Fast) -> None:
    pop = build_population(400, 4, SynthConfig())
    ips = pop.ips.to_pylist()
    for user in range(pop.size):
        for slot in range(int(pop.n_ips[user])):
            code = geo.lookup(ips[user * 3 + slot]).country_code
            assert code == pop.country_codes[pop.country[user]], (user, ips[user * 3 + slot])


def test_human_agents_parse_to_their_label_and_are_not_crawlers() -> None:
    detector = CrawlerDetect()
    rows = _data_rows("user_agents.tsv")
    assert 100 <= len(rows) <= 300 and len({r["user_agent"] for r in rows}) == len(rows)
    assert {r["device"] for r in rows} == {"desktop", "mobile", "tablet"}
    assert {"Chrome", "Edge", "Firefox", "Safari", "Mobile Safari", "Samsung Internet"} <= {
        r["browser"] for r in rows
    }
    for row in rows:
        parsed = parse(row["user_agent"])
        assert parsed.user_agent is not None and parsed.os is not None
        assert (parsed.user_agent.family, parsed.os.family) == (row["browser"], row["os"]), row
        assert not detector.isCrawler(row["user_agent"]), row
    assert len(user_agents().strings) == len(rows)


def test_bot_agents_are_detected_as_bots() -> None:
    detector = CrawlerDetect()
    agents = bot_user_agents().strings
    assert len(agents) >= 30
    assert all(detector.isCrawler(agent) for agent in agents)
    assert any("HeadlessChrome" in a for a in agents) and any(a.startswith("python-requests") for a in agents)
    assert any("Googlebot" in a for a in agents) and any(a.startswith("curl/") for a in agents)


def test_domains_are_distinct_and_zipf_popular() -> None:
    pop = build_population(10, 1, SynthConfig())
    names = pop.domains.names.to_pylist()
    assert len(names) == 2_000 and len(set(names)) == 2_000
    assert all("." in n and " " not in n for n in names)
    keep = pop.domains.traffic.keep
    assert keep.size == 2_000
    draws = pop.domains.traffic.sample(np.random.default_rng(1), 200_000)
    top = np.sort(np.bincount(draws, minlength=2_000))[::-1]
    assert top[:20].sum() > 0.3 * top.sum()


def test_more_domains_than_word_pairs_stay_distinct() -> None:
    words = domain_words()
    count = len(words.first) * len(words.second) + 50
    pop = build_population(10, 1, SynthConfig(domains=count))
    assert len(set(pop.domains.names.to_pylist())) == count
