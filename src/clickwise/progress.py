"""Progress as plain lines, for output that goes to a pipe or a log instead of a terminal.

A terminal gets a live bar (the CLI uses rich for that); a pipe cannot redraw one, so a bar there prints
nothing until the end. ``PlainProgress`` prints one line when a phase starts and then one every few
seconds, each with the phase, its count and the time since the start; commands that finish within
``quiet_s`` print nothing.

>>> import io
>>> lines = io.StringIO()
>>> clock = iter([0.0, 0.0, 1.5, 1.6, 9.0]).__next__  # the start, then one reading an update
>>> progress = PlainProgress("demo", lines, quiet_s=1.0, every_s=5.0, clock=clock)
>>> progress.update(1, 4, "generating")      # at 0.0 s: still quiet
>>> progress.update(2, 4, "ingesting")       # at 1.5 s: a new phase
>>> progress.update(3, 4, "ingesting")       # at 1.6 s: same phase, too soon
>>> progress.update(40, 400, "training")     # at 9.0 s
>>> print(lines.getvalue(), end="")
demo: ingesting 2/4 (1.5 s)
demo: training 40/400 (9.0 s)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

QUIET_S = 1.0
"""Commands that finish sooner print no progress at all."""


class PlainProgress:
    """``update(done, total, phase=None)`` prints a line on a new phase, else at most every ``every_s``."""

    def __init__(
        self,
        description: str,
        stream: TextIO,
        *,
        unit_bytes: bool = False,
        quiet_s: float | None = None,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._description = description
        self._stream = stream
        self._unit_bytes = unit_bytes
        self._quiet_s = QUIET_S if quiet_s is None else quiet_s
        self._every_s = every_s
        self._clock = clock
        self._started = clock()
        self._phase: str | None = None
        self._printed_phase: str | None = None
        self._printed_at = float("-inf")

    def update(self, done: int, total: int, phase: str | None = None) -> None:
        now = self._clock()
        if phase is not None:
            self._phase = phase
        elapsed = now - self._started
        new_phase = self._phase != self._printed_phase
        if elapsed < self._quiet_s or (not new_phase and now - self._printed_at < self._every_s):
            return
        label = self._description if self._phase is None else f"{self._description}: {self._phase}"
        self._stream.write(f"{label} {self._count(done, total)} ({elapsed:.1f} s)\n")
        self._stream.flush()
        self._printed_phase, self._printed_at = self._phase, now

    def _count(self, done: int, total: int) -> str:
        if self._unit_bytes:
            return f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
        return f"{done:,}/{total:,}" if total else f"{done:,}"
