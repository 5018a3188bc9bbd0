"""Arrival times, and the buffer that turns event-time chunks into arrival-ordered batches.

Most events reach the system within a second; ``late_fraction`` of them arrive minutes later (at
least one minute, median ~3.5 minutes, rarely over 20), out of order. Files and batches are ordered
by ``arrival_ts``, ties kept in generation order, so the same seed always gives the same order.
"""

from __future__ import annotations

import numpy as np

Columns = dict[str, np.ndarray]

LATE_MIN_MS = 60_000
LATE_MAX_MS = 2 * 3_600_000


def arrival_lag_ms(rng: np.random.Generator, n: int, late_fraction: float) -> np.ndarray:
    """Delay between event time and arrival: ~350 ms typically, 1-60+ minutes for the late ones."""
    normal = 5 + rng.lognormal(np.log(350.0), 0.9, n)
    late = LATE_MIN_MS + rng.lognormal(np.log(150_000.0), 0.8, n)
    lag = np.where(rng.random(n) < late_fraction, np.minimum(late, LATE_MAX_MS), normal)
    return lag.astype(np.int64)


def concat_columns(parts: list[Columns]) -> Columns:
    """Concatenate column dicts that share their keys (in order)."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def take_columns(columns: Columns, index: np.ndarray) -> Columns:
    """Rows ``index`` (integer positions or a boolean mask) of every column."""
    return {name: values[index] for name, values in columns.items()}


class ArrivalBuffer:
    """Holds events until their arrival window is complete, then releases them sorted by arrival.

    Events are added per event-time chunk; an event never arrives before its event time, so once the
    chunk ending at ``t`` is added, every event arriving before ``t`` is known and can be released.

    >>> buf = ArrivalBuffer()
    >>> buf.add("clicks", {"arrival_ts": np.array([50, 10, 30])})
    >>> buf.release("clicks", before_ms=40)["arrival_ts"].tolist()
    [10, 30]
    >>> buf.release("clicks", before_ms=None)["arrival_ts"].tolist()
    [50]
    """

    def __init__(self) -> None:
        self._pending: dict[str, list[Columns]] = {}

    def add(self, stream: str, columns: Columns) -> None:
        """Queue the rows of ``columns`` (must include ``arrival_ts``) behind those already queued."""
        self._pending.setdefault(stream, []).append(columns)

    def release(self, stream: str, before_ms: int | None) -> Columns | None:
        """Remove and return the rows arriving before ``before_ms`` (all if None), in arrival order."""
        parts = self._pending.get(stream)
        if not parts:
            return None
        pending = concat_columns(parts) if len(parts) > 1 else parts[0]
        arrival = pending["arrival_ts"]
        if before_ms is None:
            self._pending[stream] = []
            return take_columns(pending, np.argsort(arrival, kind="stable"))
        ready = np.flatnonzero(arrival < before_ms)
        rest = take_columns(pending, arrival >= before_ms)
        self._pending[stream] = [rest] if rest["arrival_ts"].size else []
        return take_columns(pending, ready[np.argsort(arrival[ready], kind="stable")])
