"""How many cores this process can use now: its own cores less those other processes keep busy.

OpenMP libraries (LightGBM, XGBoost) start one thread per core, and their threads wait for each other
at every step of a tree, spinning while they wait. On a machine where other processes keep the cores
busy, each step then waits for a descheduled thread: on 2 cores under a load of 9 the demo's training
took 345 s with two threads and 70 s with one. ``usable_cores`` measures
the machine's idle time over a short interval (less this process's own use) so that a fit asks for only
as many threads as there are cores to run them.

>>> 1 <= usable_cores(interval_s=0.01) <= allowed_cores()
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

STAT = "/proc/stat"


@dataclass(frozen=True)
class CpuSample:
    """Seconds of CPU the whole machine spent busy and this process used, at a monotonic moment."""

    at_s: float
    machine_busy_s: float
    own_s: float


def allowed_cores() -> int:
    """Cores this process may run on (its affinity mask, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def sample() -> CpuSample | None:
    """The machine's busy CPU time from ``/proc/stat`` (None where there is none, as on macOS)."""
    try:
        with open(STAT, encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]  # steal counts as busy: another guest had the core
    times = os.times()
    return CpuSample(time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), times.user + times.system)


def usable_cores(
    interval_s: float = 0.1,
    *,
    read: Callable[[], CpuSample | None] = sample,
    sleep: Callable[[float], None] = time.sleep,
    machine_cores: int | None = None,
) -> int:
    """Cores this process can keep busy now: between 1 and :func:`allowed_cores`.

    Idle cores are the machine's cores less the busy time other processes used over ``interval_s``
    (rounded to the nearest core); without ``/proc/stat`` every allowed core counts.
    """
    allowed = allowed_cores()
    first = read()
    sleep(interval_s)
    second = read()
    if first is None or second is None or second.at_s <= first.at_s:
        return allowed
    elapsed = second.at_s - first.at_s
    others = max(0.0, (second.machine_busy_s - first.machine_busy_s) - (second.own_s - first.own_s))
    idle = (machine_cores or os.cpu_count() or allowed) - others / elapsed
    return max(1, min(allowed, round(idle)))
