"""Prometheus metrics of the service: latency per route, decisions, events, watermark, late events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from clickwise.serve.service import Service

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """One registry per service (so tests can run several)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "clickwise_request_seconds",
            "Time to answer a request, by route.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "clickwise_decisions_total", "Decisions by outcome.", ["decision"], registry=self.registry
        )
        self.ingested = Counter(
            "clickwise_events_ingested_total", "Events stored, by stream.", ["stream"], registry=self.registry
        )
        self.rejected = Counter(
            "clickwise_events_rejected_total",
            "Events refused, by stream.",
            ["stream"],
            registry=self.registry,
        )
        self.watermark = Gauge(
            "clickwise_watermark_ms",
            "Newest event time applied minus the allowed lateness.",
            registry=self.registry,
        )
        self.late = Gauge(
            "clickwise_late_events", "Events applied behind the watermark.", registry=self.registry
        )

        self.source_position = Gauge(
            "clickwise_source_position",
            "Next offset to store, by stream, topic and partition.",
            ["stream", "topic", "partition"],
            registry=self.registry,
        )
        self.source_lag = Gauge(
            "clickwise_source_lag", "Messages behind the broker (as it reports them).", ["stream"],
            registry=self.registry,
        )  # fmt: skip
        self.source_behind = Gauge(
            "clickwise_source_behind_ms", "How far reads are behind the newest record (Kinesis).", ["stream"],
            registry=self.registry,
        )  # fmt: skip
        self.source_rate = Gauge(
            "clickwise_source_events_per_second", "Events stored from sources over the last minute.",
            registry=self.registry,
        )  # fmt: skip
        self.source_dead = Gauge(
            "clickwise_source_dead_letters", "Source messages sent to dead letters.", registry=self.registry
        )
        self.consumed = Gauge(
            "clickwise_source_events_total", "Events stored from sources, by stream.", ["stream"],
            registry=self.registry,
        )  # fmt: skip

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route, method, str(status)).observe(seconds)

    def decision(self, outcome: str) -> None:
        self.decisions.labels(outcome).inc()

    def events(self, stream: str, accepted: int, rejected: int) -> None:
        self.ingested.labels(stream).inc(accepted)
        self.rejected.labels(stream).inc(rejected)

    def render(self) -> bytes:
        counters = self.service.tables.counters()
        watermark = self.service.tables.watermark_ms
        if watermark is not None:
            self.watermark.set(watermark)
        self.late.set(counters.get("late_events", 0))
        statuses = self.service.source_status()
        if statuses:
            self.source_rate.set(sum(status["events_per_s"] for status in statuses))
            self.source_dead.set(sum(status["dead_letters"] for status in statuses))
        for status in statuses:
            for stream, state in status["streams"].items():
                for key, offset in state["positions"].items():
                    if status["kind"] != "kafka":
                        continue  # (Kinesis sequence numbers are too long for a gauge)
                    topic, partition = key.rsplit(":", 1)
                    self.source_position.labels(stream, topic, partition).set(offset)
                if state["lag"] is not None:
                    self.source_lag.labels(stream).set(state["lag"])
                if state.get("behind_ms") is not None:
                    self.source_behind.labels(stream).set(state["behind_ms"])
        for stream, count in self.service.consumed.items():
            self.consumed.labels(stream).set(count)
        return generate_latest(self.registry)
