"""The time-based split of a training set into fit, early-stopping and validation rows.

Rows are sorted by ``event_ms``. **Validation** is the last ``validation_fraction`` of the *rows*
(not of the time range: traffic has a daily rhythm, so a share of the clock can hold very few rows),
moved back to the first row of its millisecond so that no millisecond straddles the cut.
**Purge**: a training row at ``t`` has a label window ``[t, t + horizon)``; rows whose window reaches
past the cut are dropped, because on the cut day those labels were not yet known and their clicks
belong to the validation period. The model therefore never sees anything from the validation period.

Early stopping needs its own held-out rows; using the validation rows would pick the number of trees
on the very rows that measure the model, and flatter it. The same rule splits the training part again:
its last ``EARLY_STOPPING_FRACTION`` of rows (purged likewise) decide when boosting stops.

>>> import numpy as np
>>> split = time_split(np.arange(0, 100_000, 1_000), 0.2, horizon_ms=5_000)
>>> split.cut_ms, split.validation, split.fit.stop - split.fit.start, split.early_stop
(80000, range(80, 100), 64, range(68, 76))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from clickwise.model.errors import TrainingDataError
from clickwise.time import format_duration_ms

EARLY_STOPPING_FRACTION = 0.1
"""Share of the training rows (the latest) that decides when boosting stops."""


@dataclass(frozen=True)
class TimeSplit:
    """Row ranges of a time-sorted table: ``fit`` rows train, ``early_stop`` rows (if any) stop the
    boosting, ``validation`` rows measure. Rows between the ranges are purged."""

    cut_ms: int
    horizon_ms: int
    fit: range
    early_stop: range | None
    validation: range

    @property
    def train(self) -> range:
        """Every row the learner may look at: fit and early-stopping rows."""
        stop = self.early_stop.stop if self.early_stop is not None else self.fit.stop
        return range(self.fit.start, stop)

    def describe(self, event_ms: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """The split as recorded in ``model.json``."""

        def part(rows: range | None) -> dict[str, Any] | None:
            if rows is None:
                return None
            return {
                "rows": len(rows),
                "positives": int(labels[rows.start : rows.stop].sum()),
                "from_ms": int(event_ms[rows.start]),
                "to_ms": int(event_ms[rows.stop - 1]),
            }

        purged = len(event_ms) - len(self.fit) - len(self.validation)
        purged -= len(self.early_stop) if self.early_stop is not None else 0
        return {
            "method": "time: the last validation_fraction of the rows; training rows whose label window "
            "reaches the cut are purged",
            "cut_ms": self.cut_ms,
            "horizon_ms": self.horizon_ms,
            "purged_rows": purged,
            "fit": part(self.fit),
            "early_stop": part(self.early_stop),
            "validation": part(self.validation),
        }


def time_split(
    event_ms: np.ndarray, validation_fraction: float, *, horizon_ms: int, early_stopping: bool = True
) -> TimeSplit:
    """Split rows sorted by ``event_ms`` (see the module docstring for the rules)."""
    n = len(event_ms)
    valid_start, cut_ms = _cut(event_ms, 0, n, validation_fraction, "validation")
    train_stop = min(_last_settled(event_ms, cut_ms, horizon_ms), valid_start)
    _need_rows(train_stop, n, event_ms, validation_fraction, horizon_ms)
    if not early_stopping:
        return TimeSplit(cut_ms, horizon_ms, range(0, train_stop), None, range(valid_start, n))
    stop_start, stop_cut_ms = _cut(event_ms, 0, train_stop, EARLY_STOPPING_FRACTION, "early-stopping")
    fit_stop = min(_last_settled(event_ms, stop_cut_ms, horizon_ms), stop_start)
    _need_rows(fit_stop, n, event_ms, validation_fraction, horizon_ms)
    return TimeSplit(
        cut_ms, horizon_ms, range(0, fit_stop), range(stop_start, train_stop), range(valid_start, n)
    )


def _cut(event_ms: np.ndarray, lo: int, hi: int, fraction: float, what: str) -> tuple[int, int]:
    """Index and time of the first row of the last ``fraction`` of rows ``[lo, hi)``, at a ms boundary."""
    wanted = hi - math.ceil(fraction * (hi - lo))
    if wanted <= lo or wanted >= hi:
        raise TrainingDataError(
            f"too few rows ({hi - lo}) to hold out {fraction:.0%} of them for {what}; use more data"
        )
    cut_ms = int(event_ms[wanted])
    start = int(np.searchsorted(event_ms[lo:hi], cut_ms, side="left")) + lo
    if start <= lo:
        raise TrainingDataError(
            f"every row has the same event time {cut_ms}; a time split needs a time range"
        )
    return start, cut_ms


def _last_settled(event_ms: np.ndarray, cut_ms: int, horizon_ms: int) -> int:
    """End of the rows whose label window ``[t, t + horizon)`` closes by ``cut_ms``."""
    return int(np.searchsorted(event_ms, cut_ms - horizon_ms, side="right"))


def _need_rows(stop: int, n: int, event_ms: np.ndarray, fraction: float, horizon_ms: int) -> None:
    if stop <= 0:
        span = format_duration_ms(int(event_ms[-1] - event_ms[0]))
        raise TrainingDataError(
            f"the training set's {n} rows span only {span}: after holding out the last {fraction:.0%} "
            f"and purging a label horizon ({format_duration_ms(horizon_ms)}) before each cut, no rows "
            "are left to train on; use a longer period of data"
        )
