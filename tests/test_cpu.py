"""Threads for training follow the cores that are idle, so a busy machine slows a fit down gracefully."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from clickwise.cpu import CpuSample, allowed_cores, sample, usable_cores
from clickwise.model.backends import Matrix, Schedule
from clickwise.model.backends.lgbm import LightGBMLearner


def _samples(*values: CpuSample | None) -> Iterator[CpuSample | None]:
    yield from values


def _usable(first: CpuSample | None, second: CpuSample | None, cores: int) -> int:
    samples = _samples(first, second)
    return usable_cores(0.0, read=lambda: next(samples), sleep=lambda _: None, machine_cores=cores)


def test_idle_machine_offers_every_allowed_core() -> None:
    cores = allowed_cores()
    assert _usable(CpuSample(0.0, 100.0, 1.0), CpuSample(1.0, 100.0, 1.0), cores) == cores


def test_own_work_is_not_counted_as_busy() -> None:
    cores = allowed_cores()
    # the machine was busy for 1 s of CPU, all of it this process
    assert _usable(CpuSample(0.0, 100.0, 1.0), CpuSample(1.0, 101.0, 2.0), cores) == cores


def test_cores_busy_with_other_processes_are_left_out() -> None:
    cores = allowed_cores()
    busy = CpuSample(1.0, 100.0 + cores, 1.0)  # every core busy for the whole second, none of it ours
    assert _usable(CpuSample(0.0, 100.0, 1.0), busy, cores) == 1
    if cores >= 2:
        one_busy = CpuSample(1.0, 101.0, 1.0)
        assert _usable(CpuSample(0.0, 100.0, 1.0), one_busy, cores) == cores - 1


def test_without_proc_stat_every_allowed_core_counts() -> None:
    assert _usable(None, None, 64) == allowed_cores()


def test_sample_reads_the_machine() -> None:
    first = sample()
    assert first is not None  # Linux
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    second = sample()
    assert second is not None
    assert second.own_s > first.own_s and second.machine_busy_s > first.machine_busy_s


@contextmanager
def _burners(count: int) -> Iterator[None]:
    """``count`` processes that keep a core busy each, stopped by their process ids."""
    loop = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]
    try:
        time.sleep(0.3)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _fit(params: dict[str, object]) -> dict[str, object]:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(400, 3))
    labels = (values[:, 0] + rng.normal(size=400) > 0).astype(np.float64)
    matrix = Matrix(values, ["a", "b", "c"], [])
    _, effective = LightGBMLearner().fit((matrix, labels), None, Schedule(5, 0), params)
    return effective


def test_a_fit_beside_busy_cores_asks_for_one_thread() -> None:
    with _burners(allowed_cores()):
        assert usable_cores(0.2) == 1
        assert _fit({"num_leaves": 3})["num_threads"] == 1


def test_threads_named_in_the_params_are_kept() -> None:
    with _burners(allowed_cores()):
        effective = _fit({"num_leaves": 3, "n_jobs": 2})
    assert effective["n_jobs"] == 2 and "num_threads" not in effective
