"""Each metric against a brute-force definition on small random inputs (with many ties)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickwise.model import metrics

# Scores from a small set so that ties are frequent; labels 0/1.
rows = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), min_size=n, max_size=n),
    )
)


def brute_auc(y: list[int], s: list[float]) -> float:
    pos = [si for yi, si in zip(y, s, strict=True) if yi]
    neg = [si for yi, si in zip(y, s, strict=True) if not yi]
    if not pos or not neg:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_log_loss(y: list[int], s: list[float], eps: float = 1e-15) -> float:
    total = 0.0
    for yi, si in zip(y, s, strict=True):
        p = min(max(si, eps), 1 - eps)
        total -= math.log(p) if yi else math.log(1 - p)
    return total / len(y)


def brute_average_precision(y: list[int], s: list[float]) -> float:
    positives = sum(y)
    if positives == 0:
        return math.nan
    total, previous_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        chosen = [yi for yi, si in zip(y, s, strict=True) if si >= t]
        recall = sum(chosen) / positives
        total += (recall - previous_recall) * sum(chosen) / len(chosen)
        previous_recall = recall
    return total


def brute_ece(y: list[int], s: list[float], bins: int) -> float:
    order = sorted(range(len(s)), key=lambda i: s[i])  # Python's sort is stable, like the definition
    groups: dict[int, list[int]] = {}
    for rank, i in enumerate(order):
        groups.setdefault(rank * bins // len(s), []).append(i)
    total = 0.0
    for members in groups.values():
        rate = sum(y[i] for i in members) / len(members)
        mean_p = sum(s[i] for i in members) / len(members)
        total += len(members) / len(s) * abs(rate - mean_p)
    return total


def brute_lift(y: list[int], s: list[float], fraction: float) -> float:
    if sum(y) == 0:
        return math.nan
    k = max(1, math.ceil(fraction * len(y)))
    cut = sorted(s, reverse=True)[k - 1]
    above = sum(1 for si in s if si > cut)
    tied = [yi for yi, si in zip(y, s, strict=True) if si == cut]
    expected = 0.0
    for yi, si in zip(y, s, strict=True):
        chance = 1.0 if si > cut else (k - above) / len(tied) if si == cut else 0.0
        expected += yi * chance
    return (expected / k) / (sum(y) / len(y))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_auc_is_the_share_of_correctly_ordered_pairs(data: tuple[list[int], list[float]]) -> None:
    y, s = data
    assert same(metrics.roc_auc(y, s), brute_auc(y, s))


@settings(max_examples=200, deadline=None)
@given(rows)
def test_log_loss(data: tuple[list[int], list[float]]) -> None:
    y, s = data
    assert same(metrics.log_loss(y, s), brute_log_loss(y, s))


@settings(max_examples=300, deadline=None)
@given(rows)
def test_average_precision(data: tuple[list[int], list[float]]) -> None:
    y, s = data
    assert same(metrics.average_precision(y, s), brute_average_precision(y, s))


@settings(max_examples=300, deadline=None)
@given(rows, st.sampled_from([1, 3, 10, 20]))
def test_calibration_error(data: tuple[list[int], list[float]], bins: int) -> None:
    y, s = data
    assert same(metrics.calibration_error(y, s, bins=bins), brute_ece(y, s, bins))


@settings(max_examples=300, deadline=None)
@given(rows, st.sampled_from([0.1, 0.25, 1.0]))
def test_lift_at_top(data: tuple[list[int], list[float]], fraction: float) -> None:
    y, s = data
    assert same(metrics.lift_at_top(y, s, fraction=fraction), brute_lift(y, s, fraction))


@settings(max_examples=100, deadline=None)
@given(rows)
def test_lift_does_not_depend_on_row_order(data: tuple[list[int], list[float]]) -> None:
    y, s = data
    flipped = metrics.lift_at_top(y[::-1], s[::-1])
    assert same(metrics.lift_at_top(y, s), flipped)


def test_known_values() -> None:
    assert metrics.roc_auc([0, 1], [0.2, 0.2]) == 0.5
    assert metrics.roc_auc([0, 1, 1], [0.1, 0.9, 0.8]) == 1.0
    assert math.isnan(metrics.roc_auc([1, 1], [0.1, 0.2]))
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))
    assert metrics.lift_at_top([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], np.arange(10)[::-1] / 10) == 10.0
    assert metrics.calibration_error([1, 0], [1.0, 0.0]) == 0.0


def test_nan_scores_are_refused_and_minus_infinity_ranks_lowest() -> None:
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc([0, 1], [0.1, math.nan])
    assert metrics.roc_auc([0, 1, 0], [-math.inf, 0.3, -math.inf]) == 1.0


def test_summary_is_json_ready() -> None:
    summary = metrics.summarize([0, 0, 0], [0.1, 0.2, 0.3])
    assert summary["auc"] is None and summary["positives"] == 0 and summary["rows"] == 3
    assert summary["base_rate"] == 0.0
