"""The time split against its definition, on random sorted event times with many ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.model import TrainingDataError
from clickwise.model.split import EARLY_STOPPING_FRACTION, time_split

times = st.lists(st.integers(0, 400), min_size=2, max_size=300).map(lambda xs: np.array(sorted(xs)) * 10)


@settings(max_examples=300, deadline=None)
@given(times, st.sampled_from([0.1, 0.25, 0.5]), st.sampled_from([0, 10, 200]), st.booleans())
def test_split_follows_its_definition(
    event_ms: np.ndarray, fraction: float, horizon_ms: int, stop: bool
) -> None:
    try:
        split = time_split(event_ms, fraction, horizon_ms=horizon_ms, early_stopping=stop)
    except TrainingDataError:
        return
    n = len(event_ms)
    valid = event_ms[split.validation.start : split.validation.stop]
    assert split.validation.stop == n and len(valid) >= math.ceil(fraction * n)
    assert valid.min() == split.cut_ms and (event_ms[: split.validation.start] < split.cut_ms).all()
    train = event_ms[split.train.start : split.train.stop]
    assert split.train.start == 0 and len(train) > 0
    assert (train + horizon_ms <= split.cut_ms).all()  # every training label was settled at the cut
    assert split.train.stop == n - len(valid) - np.count_nonzero(
        (event_ms < split.cut_ms) & (event_ms + horizon_ms > split.cut_ms)
    )
    if stop:
        assert split.early_stop is not None
        held = event_ms[split.early_stop.start : split.early_stop.stop]
        fit = event_ms[split.fit.start : split.fit.stop]
        assert len(held) >= math.ceil(EARLY_STOPPING_FRACTION * len(train))
        assert len(fit) > 0 and (fit + horizon_ms <= held.min()).all()
    else:
        assert split.early_stop is None and split.fit == split.train


def test_a_time_range_is_needed() -> None:
    with pytest.raises(TrainingDataError, match="same event time"):
        time_split(np.full(100, 5), 0.25, horizon_ms=0)
    with pytest.raises(TrainingDataError, match="use a longer period"):
        time_split(np.arange(100), 0.25, horizon_ms=1_000)
