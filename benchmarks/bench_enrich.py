"""Benchmark the enrichment layer: country from IP and browser/device/bot from user agent.

Builds realistic columns (a few hundred thousand distinct public IPv4 addresses and a few hundred
distinct user agents, repeated with a skewed popularity), then times the vectorized and one-record
APIs. Every figure is printed beside a reference measured in the same run on the same data, because
these machines are shared and noisy: ``pyarrow.compute.utf8_length`` over the same column for the
vectorized APIs, the standard library's ``ipaddress.IPv4Address`` / a plain dict lookup for the
one-record APIs.

    .venv/bin/python benchmarks/bench_enrich.py --rows 5000000
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickwise.enrich import AgentParser, GeoResolver

_PRIVATE_V4 = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
]

_BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{v} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 16_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.{v} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 1{v}; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{v}.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S91{v}B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:1{v}.0) Gecko/20100101 Firefox/1{v}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{v}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.{v}.51",
    "Mozilla/5.0 (compatible; Googlebot/2.{v}; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/12{v}.0.0.0 "
    "Safari/537.36",
    "python-requests/2.{v}.0",
    "curl/8.{v}.0",
]


def best_seconds(action: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def public_ipv4(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct random unicast addresses outside the private and loopback ranges."""
    values = np.unique(rng.integers(1 << 24, 224 << 24, 2 * count + 1000, dtype=np.int64))
    for cidr in _PRIVATE_V4:
        network = ipaddress.IPv4Network(cidr)
        values = values[(values & int(network.netmask)) != int(network.network_address)]
    chosen = rng.permutation(values)[:count].tolist()
    return [f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" for v in chosen]


def distinct_ipv4_column(rng: np.random.Generator, rows: int) -> pa.Array:
    """``rows`` distinct random addresses (private ones included), built with Arrow compute."""
    values = np.unique(rng.integers(0, 1 << 32, rows + rows // 8 + 16, dtype=np.int64))
    values = rng.permutation(values)[:rows]
    octets = [pc.cast(pa.array((values >> shift) & 255), pa.string()) for shift in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


def user_agents(count: int) -> list[str]:
    """``count`` distinct agents: the templates above with varying version numbers."""
    return [_BROWSERS[i % len(_BROWSERS)].format(v=i // len(_BROWSERS)) for i in range(count)]


def repeated(rng: np.random.Generator, values: list[str], rows: int) -> pa.Array:
    """A column of ``rows`` values drawn with a Zipf-like popularity (rank r has weight 1/r)."""
    weights = 1.0 / np.arange(1, len(values) + 1)
    picks = rng.choice(len(values), size=rows, p=weights / weights.sum())
    return pa.array(values).take(pa.array(picks))


def report(name: str, rows: int, seconds: float, reference_seconds: float) -> None:
    print(
        f"{name:<34} {rows / seconds / 1e6:8.2f} M rows/s  {seconds * 1e3:9.1f} ms  "
        f"x{seconds / reference_seconds:6.1f} reference"
    )


def report_one(name: str, seconds: float, reference_seconds: float) -> None:
    print(f"{name:<34} {seconds * 1e6:8.2f} µs/call   x{seconds / reference_seconds:6.1f} reference")


def bench_geo(rng: np.random.Generator, rows: int, distinct: int, repeat: int) -> None:
    values = public_ipv4(rng, distinct)
    column = repeated(rng, values, rows)
    reference = best_seconds(lambda: pc.utf8_length(column), repeat)
    report("reference: pc.utf8_length(ips)", rows, reference, reference)
    started = time.perf_counter()
    geo = GeoResolver()
    print(f"{'GeoResolver() first build':<34} {(time.perf_counter() - started) * 1e3:8.1f} ms")
    report(
        "country_many (string column)",
        rows,
        best_seconds(lambda: geo.country_many(column), repeat),
        reference,
    )
    both = best_seconds(lambda: geo.country_many(column.dictionary_encode()), repeat)
    report("dictionary_encode + country_many", rows, both, reference)
    encoded = column.dictionary_encode()
    report(
        "country_many (already dictionary)",
        rows,
        best_seconds(lambda: geo.country_many(encoded), repeat),
        reference,
    )
    unique_column = distinct_ipv4_column(rng, rows)
    unique_reference = best_seconds(lambda: pc.utf8_length(unique_column), repeat)
    report(
        "country_many (every row distinct)",
        rows,
        best_seconds(lambda: geo.country_many(unique_column), repeat),
        unique_reference,
    )
    sample = values[:20_000]
    one = best_seconds(lambda: [geo.country_one(ip) for ip in sample], repeat) / len(sample)
    stdlib = best_seconds(lambda: [ipaddress.IPv4Address(ip) for ip in sample], repeat) / len(sample)
    report_one("reference: ipaddress.IPv4Address", stdlib, stdlib)
    report_one("country_one", one, stdlib)


def bench_agent(rng: np.random.Generator, rows: int, distinct: int, repeat: int) -> None:
    values = user_agents(distinct)
    column = repeated(rng, values, rows)
    reference = best_seconds(lambda: pc.utf8_length(column), repeat)
    report("reference: pc.utf8_length(agents)", rows, reference, reference)
    parser = AgentParser()
    started = time.perf_counter()
    parser.parse_many(column)
    report("parse_many, cold cache", rows, time.perf_counter() - started, reference)
    report("parse_many, warm cache", rows, best_seconds(lambda: parser.parse_many(column), repeat), reference)
    table = {agent: parser.parse_one(agent) for agent in values}
    sample = [values[i % len(values)] for i in range(20_000)]
    one = best_seconds(lambda: [parser.parse_one(agent) for agent in sample], repeat) / len(sample)
    plain = best_seconds(lambda: [dict(table[agent]) for agent in sample], repeat) / len(sample)
    report_one("reference: dict lookup + copy", plain, plain)
    report_one("parse_one, cached", one, plain)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows per column (default 5,000,000)")
    parser.add_argument("--distinct-ips", type=int, default=300_000, help="distinct IPv4 addresses")
    parser.add_argument("--distinct-agents", type=int, default=300, help="distinct user agents")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest is shown")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the generated columns")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"rows={args.rows:,} distinct ips={args.distinct_ips:,} distinct agents={args.distinct_agents:,}")
    bench_geo(rng, args.rows, args.distinct_ips, args.repeat)
    bench_agent(rng, args.rows, args.distinct_agents, args.repeat)


if __name__ == "__main__":
    main()
