"""Load on the HTTP service: decisions, lookups and event ingest, against the HTTP stack's own floor.

Prepares (or reuses, with ``--workdir``) a root whose tables hold ``--hours`` of ``--users``
generated users' traffic ending about now, and a model trained on a backfill of the first
``--train-hours``; starts ``clickwise serve`` as a separate process (its startup time is printed);
then, from this process, over ``--connections`` keep-alive connections (httpx.AsyncClient on
asyncio), measures:

- (a) ``POST /v1/decide``, one opportunity per request, open loop at ``--decide-rate`` requests/s
  for ``--seconds``: client-side p50/p99/max and errors, and the service's own p99 for the route
  from its ``/metrics`` histogram (a bucket bound: the p99 is at or below it);
- (b) batched decisions (``--batch`` opportunities a request, two requests in flight): opportunities/s;
- (c) ``GET /v1/tables/user/{key}`` open loop at ``--lookup-rate`` requests/s: p99;
- (d) ``POST /v1/events/impressions`` in batches of ``--ingest-batch`` events, back to back, while
  (a)'s decisions run: events/s, with a read-your-writes check after every batch.

With ``--soak SECONDS`` it runs only a soak instead: ``POST /v1/decide`` at ``--decide-rate`` for
that long, sampling the service's resident memory every 5 s; it reports errors, latency per
minute and the memory growth from the end of the first minute to the end (target: < 10%).

The reference, measured in the same run, is ``GET /healthz`` at the same rates: the latency of the
HTTP stack and this client with no work behind it. Open-loop latencies count from the moment a
request was due, so a client or service that falls behind shows it. This process shares the
machine's cores with the service: its own CPU use is printed, with the service's.

    python benchmarks/bench_serve.py --users 50000 --seconds 10
    python benchmarks/bench_serve.py --users 1000000 --seconds 60 --workdir /tmp/cw-bench-serve
    python benchmarks/bench_serve.py --users 1000000 --soak 600 --workdir /tmp/cw-bench-serve

Targets (issue 5): decide p99 <= 10 ms at 1,000 req/s with 0 errors and the service's p99 <= 2 ms;
batched >= 20,000 opportunities/s; lookups p99 <= 5 ms at 2,000 req/s; ingest >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import polars as pl

from clickwise.dataset import backfill
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.model import train
from clickwise.serve import add_key
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.time import MS_PER_HOUR, SystemClock

STREAMS = ("impressions", "clicks", "predictions")
QUICK_MODEL = "params: {num_leaves: 31, learning_rate: 0.1, n_estimators: 60}"
OPPORTUNITY_FIELDS = ("user_id", "campaign_id", "domain", "ip", "user_agent", "cost")
POOL = 20_000  # opportunities sampled from the generated impressions
IDLE_S = 3.0  # a connection idle this long is opened again (uvicorn closes them after 5 s)


# --- preparing the root ---------------------------------------------------------------------------


@dataclass
class Prepared:
    workdir: Path
    pipeline_file: Path
    root: Path
    models: Path
    keys_file: Path
    keys: dict[str, str]
    opportunities: list[dict[str, Any]]


def prepare(workdir: Path, users: int, hours: float, train_hours: float) -> Prepared:
    """Generate, ingest, update the tables and train once; a later run with the same sizes reuses it."""
    marker = workdir / "prepared.json"
    wanted = {"users": users, "hours": hours, "train_hours": train_hours}
    pipeline_file = workdir / "pipeline.yaml"
    root, models, keys_file = workdir / "root", workdir / "models", workdir / "keys.json"
    if not (marker.exists() and orjson.loads(marker.read_bytes()).get("sizes") == wanted):
        for stale in (workdir / "in", root, models, workdir / "training"):
            shutil.rmtree(stale, ignore_errors=True)
        keys_file.unlink(missing_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        text = example_path("adclick").read_text()
        start = text.index("params:", text.index("model:"))
        pipeline_file.write_text(text[:start] + QUICK_MODEL + text[text.index("\n", start) :])
        pipeline = load_pipeline(pipeline_file)
        end_ms = SystemClock().now_ms() // MS_PER_HOUR * MS_PER_HOUR
        start_ms = end_ms - int(hours * MS_PER_HOUR)
        step = time.perf_counter()
        summary = generate(workdir / "in", users=users, hours=hours, seed=17, start_ms=start_ms)
        print(f"  generated {sum(summary.counts.values()):,} rows in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        storage = open_root(root)
        Ingestor(pipeline, storage).ingest_files([str(workdir / "in" / s) for s in STREAMS])
        tables = Tables.open(pipeline, storage)
        tables.catch_up()
        print(f"  ingested and updated the tables in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        train_end = start_ms + int(train_hours * MS_PER_HOUR)
        backfill(pipeline, storage, str(workdir / "training"), start_ms, train_end, tables=tables)
        train(pipeline, str(workdir / "training"), str(models))
        print(f"  backfilled {train_hours:g} h and trained in {time.perf_counter() - step:.1f} s")
        keys = {name: add_key(keys_file, scopes, name=name)[0]
                for name, scopes in {"writer": ["read", "write"], "reader": ["read"]}.items()}  # fmt: skip
        marker.write_bytes(orjson.dumps({"sizes": wanted, "keys": keys}))
    keys = orjson.loads(marker.read_bytes())["keys"]
    impressions = pl.scan_parquet(workdir / "in" / "impressions" / "*.parquet").select(OPPORTUNITY_FIELDS)
    sample = impressions.head(POOL * 20).collect().sample(min(POOL, users * 2), seed=3, with_replacement=True)
    return Prepared(workdir, pipeline_file, root, models, keys_file, keys, sample.to_dicts())


# --- the service as a process ---------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_s: float
    loaded_s: float | None

    def rss_bytes(self) -> int:
        """The service process's resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def cpu_s(self) -> float:
        """CPU seconds the service process has used (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(prepared: Prepared) -> Server:
    port = free_port()
    log = prepared.workdir / "serve.log"
    command = [sys.executable, "-m", "clickwise.cli", "serve", "-p", str(prepared.pipeline_file),
               "--root", str(prepared.root), "--models", str(prepared.models),
               "--api-keys", str(prepared.keys_file), "--port", str(port)]  # fmt: skip
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"clickwise serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.perf_counter() - started > 900:
            process.kill()
            raise SystemExit(f"clickwise serve not ready after 900 s:\n{log.read_text()}")
        time.sleep(0.1)
    ready_s = time.perf_counter() - started
    found = re.search(r"state\s+loaded\s+in\s+([\d.]+)\s+s", log.read_text().replace("\n", " "))
    return Server(url, process, log, ready_s, float(found.group(1)) if found else None)


# --- load ----------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection written by hand (a few microseconds of CPU a request);
    the service answers every request with a Content-Length. A connection idle for longer than
    the server keeps it (uvicorn: 5 s) is opened again before use."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        address = httpx.URL(url)
        self.host, self.port = address.host, address.port or 80
        self.headers: dict[str | None, bytes] = {
            None: b"",
            **{who: f"authorization: Bearer {key}\r\n".encode() for who, key in keys.items()},
        }
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def call(
        self, method: str, path: str, body: bytes = b"", who: str | None = None
    ) -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n").encode() + self.headers[who] + b"\r\n"  # fmt: skip
        now = time.monotonic()
        if now - self.used > IDLE_S:
            await self.close()
        self.used = now
        try:
            if self.writer is None or self.reader is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(head + body)
            answer = await self.reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(answer)
            if length is None:
                raise ValueError("an answer without content-length")
            return int(answer[9:12]), await self.reader.readexactly(int(length.group(1)))
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxConnection:
    """The same through a shared httpx.AsyncClient (``--client httpx``)."""

    def __init__(self, client: httpx.AsyncClient, keys: dict[str, str]) -> None:
        self.client = client
        self.headers: dict[str | None, dict[str, str]] = {
            None: {},
            **{who: {"authorization": f"Bearer {key}"} for who, key in keys.items()},
        }

    async def call(
        self, method: str, path: str, body: bytes = b"", who: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"content-type": "application/json", **self.headers[who]}
        try:
            response = await self.client.request(method, path, content=body or None, headers=headers)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code, response.content

    async def close(self) -> None:
        pass


_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
Conn = Connection | HttpxConnection
Request = Callable[[Conn, int], Awaitable[tuple[int, bytes]]]


@dataclass
class Load:
    """Latencies (ms) and errors of one load phase."""

    name: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    abandoned: int = 0  # requests never sent: still waiting --max-backlog seconds after they were due
    items: int = 0  # opportunities or events handled
    client_cpu_s: float = 0.0
    service_cpu_s: float = 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    async def send(self, request: Request, connection: Conn, number: int, since: float) -> bool:
        """Send one request and record its latency from ``since`` (loop time); True when it was a 200."""
        loop = asyncio.get_running_loop()
        try:
            status, body = await request(connection, number)
        except ConnectionError as exc:
            self.fail(str(exc))
            return False
        self.latencies_ms.append((loop.time() - since) * 1000.0)
        if status != 200:
            self.fail(f"HTTP {status}: {body[:120]!r}")
        return status == 200

    def fail(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    @property
    def failed(self) -> int:
        return self.errors + self.abandoned

    def describe(self) -> str:
        done = len(self.latencies_ms)
        text = (
            f"{done:,} answers ({done / self.seconds:,.0f}/s): p50 {self.percentile(50):7.2f} ms  "
            f"p99 {self.percentile(99):7.2f} ms  max {max(self.latencies_ms, default=float('nan')):8.2f} ms  "
            f"errors {self.errors}"
        )
        if self.first_error:
            text += f" (first: {self.first_error})"
        if self.abandoned:
            text += f", {self.abandoned:,} dropped unsent (waited over the backlog limit)"
        return text


async def open_loop(
    connect: Callable[[], Conn], name: str, request: Request, rate: float, seconds: float, workers: int,
    max_backlog_s: float,
) -> Load:  # fmt: skip
    """``rate`` requests/s for ``seconds``: each request is due at its moment whatever the earlier
    ones are doing, and is sent by the first of ``workers`` free connections; latency counts from
    the moment it was due. A request still waiting ``max_backlog_s`` after it was due is dropped
    (counted as never sent), so a service slower than ``rate`` sees the most it can take."""
    print(f"  {name}: {rate:,.0f} requests/s for {seconds:g} s", flush=True)
    load = Load(name)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def worker() -> None:
        connection = connect()
        while (item := await due.get()) is not None:
            number, moment = item
            if loop.time() - moment > max_backlog_s:
                load.abandoned += 1
                continue
            await load.send(request, connection, number, moment)
        await connection.close()

    running = [asyncio.create_task(worker()) for _ in range(workers)]
    for number in range(int(rate * seconds)):
        moment = start + number / rate
        delay = moment - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((number, moment))
    for _ in running:
        due.put_nowait(None)
    await asyncio.gather(*running)
    load.seconds = loop.time() - start
    return load


async def closed_loop(
    connect: Callable[[], Conn], name: str, request: Request, workers: int, seconds: float, items: int
) -> Load:
    """``workers`` requests in flight, each sent as soon as the previous answer came."""
    print(f"  {name}: {workers} in flight for {seconds:g} s", flush=True)
    load = Load(name)
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        connection = connect()
        while loop.time() < stop:
            if await load.send(request, connection, next(counter), loop.time()):
                load.items += items
        await connection.close()

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    load.seconds = loop.time() - started
    return load


async def measured(server: Server, phase: Awaitable[Load]) -> Load:
    """Run a phase, noting the CPU both processes used."""
    client_before, service_before = time.process_time(), server.cpu_s()
    load = await phase
    load.client_cpu_s = time.process_time() - client_before
    load.service_cpu_s = server.cpu_s() - service_before
    return load


# --- the service's own view: /metrics ------------------------------------------------------------

_BUCKET = re.compile(r"^clickwise_request_seconds_bucket\{(?P<labels>.*)\} (?P<count>\S+)$", re.M)


async def route_buckets(connection: Conn, route: str, method: str) -> dict[float, float]:
    """Cumulative counts per bucket bound of a route's answered-200 latency histogram."""
    _, text = await connection.call("GET", "/metrics")
    counts: dict[float, float] = {}
    for found in _BUCKET.finditer(text.decode()):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group("labels")))
        if (labels.get("route"), labels.get("method"), labels.get("status")) == (route, method, "200"):
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            counts[bound] = float(found.group("count"))
    return counts


def bucket_p99_ms(before: dict[float, float], after: dict[float, float]) -> tuple[float, int]:
    """The smallest bucket bound holding 99% of the requests between two scrapes (ms), and their count."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if total and count >= 0.99 * total:
            return bound * 1000.0, int(total)
    return float("nan"), int(total)


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Ingest:
    """A request of ``batch`` new impressions (ids never sent before) of known users, one of them
    for a marker user; after each answer, the marker user's count must have grown by one."""

    marker: str
    batch: int
    pool: list[dict[str, Any]]
    sent: int = 0  # batches
    accepted: int = 0  # events
    marked: int = 0  # the marker user's accepted impressions
    checked: int = 0
    failed: int = 0

    async def __call__(self, connection: Conn, number: int) -> tuple[int, bytes]:
        serial, self.sent = self.sent, self.sent + 1
        now = int(time.time() * 1000)
        first = serial * self.batch
        events = [{**self.pool[(first + i) % len(self.pool)], "impression_id": f"{self.marker}-{serial}-{i}",
                   "ts": now - random.randrange(5_000)} for i in range(self.batch - 1)]  # fmt: skip
        events.append({**events[0], "impression_id": f"{self.marker}-{serial}-mark", "user_id": self.marker})
        status, body = await connection.call("POST", "/v1/events/impressions", orjson.dumps(events), "writer")
        if status == 200:
            accepted = int(orjson.loads(body)["accepted"])
            self.accepted += accepted
            self.marked += 1 if accepted == len(events) else 0
            seen, values = await connection.call("GET", f"/v1/tables/user/{self.marker}", b"", "reader")
            self.checked += 1
            count = orjson.loads(values)["values"]["impressions_total"] if seen == 200 else None
            if accepted != len(events) or count != self.marked:
                self.failed += 1
        return status, body


async def soak(args: argparse.Namespace, prepared: Prepared, server: Server) -> None:
    """Decisions at ``--decide-rate`` for ``--soak`` seconds; memory sampled every 5 s."""
    bodies = [orjson.dumps(o) for o in prepared.opportunities]

    async def decide_one(connection: Conn, number: int) -> tuple[int, bytes]:
        return await connection.call("POST", "/v1/decide", bodies[number % len(bodies)], "reader")

    def connect() -> Conn:
        return Connection(server.url, prepared.keys)

    await closed_loop(connect, "warm-up", decide_one, 2, 2.0, 1)
    samples: list[tuple[float, int]] = []

    async def sample_memory() -> None:
        started = time.monotonic()
        while True:
            samples.append((time.monotonic() - started, server.rss_bytes()))
            await asyncio.sleep(5.0)

    sampler = asyncio.create_task(sample_memory())
    rate, workers = args.decide_rate, args.connections
    load = await measured(
        server, open_loop(connect, "soak", decide_one, rate, args.soak, workers, args.max_backlog)
    )
    sampler.cancel()
    samples.append((args.soak, server.rss_bytes()))
    after_minute = next((rss for moment, rss in samples if moment >= 60.0), samples[0][1])
    end = samples[-1][1]
    growth = (end - after_minute) / after_minute
    print()
    print(f"soak: POST /v1/decide, 1 opportunity a request, {args.decide_rate:,.0f} req/s open loop, "
          f"{args.soak:g} s")  # fmt: skip
    print(f"    {load.describe()}; {cpu(load)}")
    per_minute = [load.latencies_ms[i : i + int(args.decide_rate * 60)]
                  for i in range(0, len(load.latencies_ms), int(args.decide_rate * 60))]  # fmt: skip
    print("    p99 per minute (ms): " + " ".join(f"{np.percentile(m, 99):.1f}" for m in per_minute if m))
    print("    service RSS (MiB) every minute: "
          + " ".join(f"{rss / 2**20:,.0f}" for moment, rss in samples if moment % 60 < 5))  # fmt: skip
    print(f"    memory growth from minute 1 to the end: {growth:+.1%} (target < 10%): "
          f"{check(growth < 0.10)}; errors {load.failed} (target 0): {check(load.failed == 0)}")  # fmt: skip


async def measure(args: argparse.Namespace, prepared: Prepared, server: Server) -> None:
    bodies = [orjson.dumps(o) for o in prepared.opportunities]
    users = list({o["user_id"] for o in prepared.opportunities})
    batches = [orjson.dumps(prepared.opportunities[i : i + args.batch])
               for i in range(0, len(prepared.opportunities) - args.batch + 1, args.batch)]  # fmt: skip

    async def health(connection: Conn, number: int) -> tuple[int, bytes]:
        return await connection.call("GET", "/healthz")

    async def decide_one(connection: Conn, number: int) -> tuple[int, bytes]:
        return await connection.call("POST", "/v1/decide", bodies[number % len(bodies)], "reader")

    async def decide_many(connection: Conn, number: int) -> tuple[int, bytes]:
        return await connection.call("POST", "/v1/decide", batches[number % len(batches)], "reader")

    async def lookup(connection: Conn, number: int) -> tuple[int, bytes]:
        return await connection.call("GET", f"/v1/tables/user/{users[number % len(users)]}", b"", "reader")

    ingest = Ingest(f"bench-{uuid.uuid4().hex[:8]}", args.ingest_batch, prepared.opportunities)

    seconds, workers, backlog = args.seconds, args.connections, args.max_backlog
    async with httpx.AsyncClient(
        base_url=server.url,
        limits=httpx.Limits(max_connections=workers + 4, max_keepalive_connections=workers + 4),
        timeout=httpx.Timeout(60.0),
    ) as shared:

        def connect() -> Conn:
            if args.client == "httpx":
                return HttpxConnection(shared, prepared.keys)
            return Connection(server.url, prepared.keys)

        scrape = connect()
        await closed_loop(connect, "warm-up", decide_one, 2, 2.0, 1)  # caches warm
        await closed_loop(connect, "warm-up", lookup, 2, 1.0, 1)

        floor_decide = await measured(
            server, open_loop(connect, "healthz", health, args.decide_rate, seconds, workers, backlog)
        )
        before = await route_buckets(scrape, "/v1/decide", "POST")
        decide = await measured(
            server, open_loop(connect, "decide", decide_one, args.decide_rate, seconds, workers, backlog)
        )
        service_p99, counted = bucket_p99_ms(before, await route_buckets(scrape, "/v1/decide", "POST"))

        batched = await measured(
            server, closed_loop(connect, "batched decide", decide_many, 2, min(seconds, 20.0), args.batch)
        )

        floor_lookup = await measured(
            server, open_loop(connect, "healthz", health, args.lookup_rate, seconds, workers, backlog)
        )
        route = "/v1/tables/{table}/{key}"
        before_lookup = await route_buckets(scrape, route, "GET")
        lookups = await measured(
            server, open_loop(connect, "lookup", lookup, args.lookup_rate, seconds, workers, backlog)
        )
        lookup_p99, _ = bucket_p99_ms(before_lookup, await route_buckets(scrape, route, "GET"))

        accepted_before = ingest.accepted
        alone = await measured(server, closed_loop(connect, "ingest alone", ingest, 1, min(seconds, 20.0), 0))
        alone.items = ingest.accepted - accepted_before
        before_mixed = await route_buckets(scrape, "/v1/decide", "POST")
        mixed_decide, ingested = await asyncio.gather(
            measured(
                server,
                open_loop(
                    connect, "decide during ingest", decide_one, args.decide_rate, seconds, workers, backlog
                ),  # fmt: skip
            ),
            closed_loop(connect, "ingest", ingest, 1, seconds, 0),
        )
        ingested.items = ingest.accepted - accepted_before - alone.items
        mixed_p99, _ = bucket_p99_ms(before_mixed, await route_buckets(scrape, "/v1/decide", "POST"))
        await scrape.close()

    report = Report(args, server, ingest)
    report.print(floor_decide, decide, service_p99, counted, batched, floor_lookup, lookups, lookup_p99,
                 alone, mixed_decide, ingested, mixed_p99)  # fmt: skip


def check(ok: bool) -> str:
    return "ok" if ok else "MISS"


def cpu(load: Load) -> str:
    return (f"CPU: service {load.service_cpu_s / load.seconds:.0%}, "
            f"load generator {load.client_cpu_s / load.seconds:.0%} of a core")  # fmt: skip


@dataclass
class Report:
    args: argparse.Namespace
    server: Server
    ingest: Ingest

    def print(
        self, floor_decide: Load, decide: Load, service_p99: float, counted: int, batched: Load,
        floor_lookup: Load, lookups: Load, lookup_p99: float, alone: Load, mixed: Load, ingested: Load,
        mixed_p99: float,
    ) -> None:  # fmt: skip
        args, server = self.args, self.server
        print()
        print(f"machine: {os.cpu_count()} cores shared by the service, this load generator ({args.client} "
              f"client, {args.connections} connections) and any other work; load average "
              f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
        print(f"service startup: state loaded in {server.loaded_s} s (printed by the service); ready "
              f"{server.ready_s:.1f} s after launch (imports included)")  # fmt: skip
        print(f"(a) POST /v1/decide, 1 opportunity a request, {args.decide_rate:,.0f} req/s open loop, "
              f"{args.seconds:g} s")  # fmt: skip
        print(f"    decide   {decide.describe()}; {cpu(decide)}")
        print(f"    healthz  {floor_decide.describe()}; {cpu(floor_decide)}  <- reference")
        p99 = decide.percentile(99)
        print(f"    client p99 {p99:.2f} ms, {decide.failed} failed (target <= 10 ms, 0 errors): "
              f"{check(p99 <= 10 and decide.failed == 0)}; {p99 / floor_decide.percentile(99):.1f}x "
              f"the healthz p99")  # fmt: skip
        print(f"    service p99 (its /metrics histogram, {counted:,} answers): <= {service_p99:g} ms bucket "
              f"(target <= 2 ms): {check(service_p99 <= 2)}")  # fmt: skip
        rate = batched.items / batched.seconds
        print(f"(b) batched decide, {args.batch} opportunities a request, 2 in flight: {rate:,.0f} "
              f"opportunities/s (target >= 20,000): {check(rate >= 20_000)}")  # fmt: skip
        print(f"    requests {batched.describe()}; {cpu(batched)}")
        print(f"(c) GET /v1/tables/user/{{key}}, {args.lookup_rate:,.0f} req/s open loop, {args.seconds:g} s")
        print(f"    lookup   {lookups.describe()}; {cpu(lookups)}")
        print(f"    healthz  {floor_lookup.describe()}; {cpu(floor_lookup)}  <- reference")
        p99 = lookups.percentile(99)
        print(f"    client p99 {p99:.2f} ms, {lookups.failed} failed (target <= 5 ms): "
              f"{check(p99 <= 5 and lookups.failed == 0)}; {p99 / floor_lookup.percentile(99):.1f}x the "
              f"healthz p99; service p99 <= {lookup_p99:g} ms bucket")  # fmt: skip
        events = alone.items / alone.seconds
        print(f"(d) POST /v1/events/impressions, {args.ingest_batch:,} new events a request back to back, "
              f"alone: {events:,.0f} events/s accepted; requests {alone.describe()}; "
              f"{cpu(alone)}")  # fmt: skip
        events = ingested.items / ingested.seconds
        print(f"    POST /v1/events/impressions, {args.ingest_batch:,} events a request back to back, "
              f"while deciding at {args.decide_rate:,.0f} req/s")  # fmt: skip
        print(f"    ingest {events:,.0f} events/s accepted (target >= 20,000): {check(events >= 20_000)}; "
              f"requests {ingested.describe()}")  # fmt: skip
        checked, failed = self.ingest.checked, self.ingest.failed
        print(f"    read-your-writes after every batch (both runs): {checked} checked, {failed} failed: "
              f"{check(checked > 0 and failed == 0)}")  # fmt: skip
        print(f"    decide meanwhile {mixed.describe()}; service p99 <= {mixed_p99:g} ms bucket; "
              f"{cpu(mixed)} (the load generator builds the event batches too)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=3.0, help="Hours of traffic in the tables.")
    parser.add_argument(
        "--train-hours", type=float, default=1.5, help="Backfill range the model is trained on."
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of each open-loop phase.")
    parser.add_argument("--decide-rate", type=float, default=1_000.0)
    parser.add_argument("--lookup-rate", type=float, default=2_000.0)
    parser.add_argument("--batch", type=int, default=500, help="Opportunities per batched decision.")
    parser.add_argument("--ingest-batch", type=int, default=10_000, help="Events per ingest request.")
    parser.add_argument("--connections", type=int, default=16, help="Connections of the open-loop phases.")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw",
        help="raw: hand-written HTTP/1.1 on asyncio streams (cheap); httpx: httpx.AsyncClient.",
    )  # fmt: skip
    parser.add_argument(
        "--max-backlog", type=float, default=2.0,
        help="An open-loop request still waiting this long after it was due is dropped unsent.",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="Keep (and reuse) the prepared root here.")
    parser.add_argument("--soak", type=float, default=0.0, help="Run only a soak of decisions this long (s).")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cw-bench-serve-"))
    print(f"clickwise serve benchmark: {args.users:,} users x {args.hours:g} h, workdir {workdir}")
    started = time.perf_counter()
    prepared = prepare(workdir, args.users, args.hours, args.train_hours)
    print(f"  prepared in {time.perf_counter() - started:.1f} s")
    server = start_server(prepared)
    try:
        asyncio.run(soak(args, prepared, server) if args.soak else measure(args, prepared, server))
    finally:
        code = server.stop()
        print(f"service stopped by SIGTERM: exit {code}")
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
