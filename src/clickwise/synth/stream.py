"""The event stream in arrival order: the one source both the files and a live producer read.

``iter_event_batches`` draws the population, then walks event time chunk by chunk; after each chunk
every event that arrived before the chunk's end is known, so it is released, sorted by ``arrival_ts``.
Events that arrive after the last chunk (late ones, and clicks hours after their impression) come in a
final batch. Memory stays bounded by one chunk plus the still-pending late events and clicks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from clickwise.synth.arrival import ArrivalBuffer
from clickwise.synth.config import SynthConfig
from clickwise.synth.errors import SynthConfigError
from clickwise.synth.events import draw_chunk
from clickwise.synth.population import Population, build_population
from clickwise.synth.schema import click_table, impression_tables, prediction_table

_MAX_CHUNKS = 1 << 26


@dataclass(frozen=True, slots=True)
class Plan:
    """Validated generation arguments; ``chunks`` event-time steps cover ``[start_ms, end_ms)``."""

    users: int
    seed: int
    start_ms: int
    end_ms: int
    config: SynthConfig = field(default_factory=SynthConfig)

    @property
    def chunks(self) -> int:
        """Number of event-time chunks (the last may be shorter)."""
        return -(-(self.end_ms - self.start_ms) // self.config.chunk_ms)


@dataclass(frozen=True, slots=True)
class Window:
    """The batches released after step ``index`` of ``total`` (the last step flushes what is left)."""

    index: int
    total: int
    batches: list[tuple[str, pa.Table]]


def make_plan(users: int, hours: float, seed: int, start_ms: int, config: SynthConfig | None) -> Plan:
    """Check the arguments and fix the event-time range (``hours`` rounded to whole milliseconds)."""
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise SynthConfigError(f"users must be a positive integer, got {users!r}")
    if (
        isinstance(hours, bool)
        or not isinstance(hours, int | float)
        or not math.isfinite(hours)
        or hours <= 0
    ):
        raise SynthConfigError(f"hours must be a positive number, got {hours!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SynthConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(start_ms, bool) or not isinstance(start_ms, int) or not 0 <= start_ms < 2**62:
        raise SynthConfigError(
            f"start_ms must be epoch milliseconds (a non-negative integer), got {start_ms!r}"
        )
    plan = Plan(users, seed, start_ms, start_ms + max(1, round(hours * 3_600_000)), config or SynthConfig())
    if plan.chunks > _MAX_CHUNKS:
        raise SynthConfigError(f"hours={hours!r} with chunk_ms={plan.config.chunk_ms} gives too many chunks")
    return plan


def iter_windows(plan: Plan) -> Iterator[Window]:
    """Yield the arrival-ordered batches step by step (``plan.chunks + 1`` windows)."""
    pop = build_population(plan.users, plan.seed, plan.config)
    buffer = ArrivalBuffer()
    total = plan.chunks + 1
    for index in range(plan.chunks):
        start = plan.start_ms + index * plan.config.chunk_ms
        end = min(start + plan.config.chunk_ms, plan.end_ms)
        chunk = draw_chunk(pop, plan.config, plan.seed, index, start, end)
        buffer.add("impressions", chunk.impressions)
        buffer.add("clicks", chunk.clicks)
        buffer.add("predictions", chunk.predictions)
        yield Window(index, total, _release(pop, buffer, end))
    yield Window(plan.chunks, total, _release(pop, buffer, None))


def _release(pop: Population, buffer: ArrivalBuffer, before_ms: int | None) -> list[tuple[str, pa.Table]]:
    batches: list[tuple[str, pa.Table]] = []
    impressions = buffer.release("impressions", before_ms)
    if impressions is not None and impressions["ts"].size:
        imp_table, truth_table = impression_tables(pop, impressions)
        batches += [("impressions", imp_table), ("truth", truth_table)]
    clicks = buffer.release("clicks", before_ms)
    if clicks is not None and clicks["ts"].size:
        batches.append(("clicks", click_table(pop, clicks)))
    predictions = buffer.release("predictions", before_ms)
    if predictions is not None and predictions["ts"].size:
        batches.append(("predictions", prediction_table(pop, predictions)))
    return batches


def iter_event_batches(
    *,
    users: int,
    hours: float,
    seed: int,
    start_ms: int,
    config: SynthConfig | None = None,
) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``(stream, table)`` batches in arrival order, exactly the rows :func:`generate` writes.

    Streams are ``impressions``, ``truth`` (same rows and order as the impressions batch just before
    it), ``clicks`` and ``predictions``. Within a batch rows are sorted by ``arrival_ts``; batches of
    one stream follow each other in arrival order. A live producer should skip ``truth``.

    >>> batches = list(iter_event_batches(users=300, hours=1, seed=1, start_ms=1_699_999_200_000))
    >>> sorted({name for name, _ in batches})
    ['clicks', 'impressions', 'predictions', 'truth']
    >>> [name for name, _ in batches][:4]
    ['impressions', 'truth', 'clicks', 'predictions']
    """
    plan = make_plan(users, hours, seed, start_ms, config)
    for window in iter_windows(plan):
        yield from window.batches
