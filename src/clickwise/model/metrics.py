"""Metrics of a click model, in numpy only: ranking (ROC AUC, PR AUC, lift) and probability quality
(log loss, calibration error).

Every function takes ``y_true`` (0/1) and ``scores`` of the same length and returns a float; a metric
that is undefined for the input (AUC with a single class, lift with no positives) is ``nan``. Scores
must not be NaN: rank nulls explicitly (e.g. as ``-inf``) before calling.

>>> y = [0, 0, 1, 1]
>>> roc_auc(y, [0.1, 0.4, 0.35, 0.8])
0.75
>>> round(log_loss(y, [0.5, 0.5, 0.5, 0.5]), 6)
0.693147
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ArrayLike = np.ndarray | Sequence[float] | Sequence[int] | Sequence[bool]

CALIBRATION_BINS = 10
"""Bins of :func:`calibration_error` (equal-frequency)."""

LOG_LOSS_EPS = 1e-15
"""Predictions are clipped to ``[eps, 1 - eps]`` so that a confident mistake costs ~34.5, not inf."""


def _inputs(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-d and of equal length, got {y.shape} and {s.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if np.isnan(s).any():
        raise ValueError(
            "scores contain NaN; replace nulls first (for example with -inf to rank them lowest)"
        )
    return y.astype(bool), s


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks.

    >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    n = values.size
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], n]
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative
    (ties count one half), computed from average ranks (Mann-Whitney U)."""
    y, s = _inputs(y_true, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y_true: ArrayLike, scores: ArrayLike, *, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood of the labels under probabilities ``scores`` (clipped by ``eps``)."""
    y, s = _inputs(y_true, scores)
    if y.size == 0:
        return math.nan
    p = np.clip(s, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """PR AUC as average precision: ``sum over thresholds t of (R(t) - R(previous t)) * P(t)``.

    Thresholds are the distinct scores, from high to low; rows with equal scores enter together.
    """
    y, s = _inputs(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    ordered = s[order]
    true_positives = np.cumsum(y[order])
    last_of_group = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    tp = true_positives[last_of_group]
    precision = tp / (last_of_group + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _bin_of_rank(n: int, bins: int) -> np.ndarray:
    return (np.arange(n, dtype=np.int64) * bins) // n


def calibration_curve(
    y_true: ArrayLike, scores: ArrayLike, *, bins: int = CALIBRATION_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-frequency bin: mean prediction, observed rate and row count (see
    :func:`calibration_error` for the binning)."""
    y, s = _inputs(y_true, scores)
    if y.size == 0:
        empty = np.empty(0)
        return empty, empty, empty.astype(np.int64)
    order = np.argsort(s, kind="stable")
    which = _bin_of_rank(y.size, bins)
    count = np.bincount(which, minlength=bins)
    sum_p = np.bincount(which, weights=s[order], minlength=bins)
    sum_y = np.bincount(which, weights=y[order].astype(np.float64), minlength=bins)
    used = count > 0
    return sum_p[used] / count[used], sum_y[used] / count[used], count[used]


def calibration_error(y_true: ArrayLike, scores: ArrayLike, *, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error over **equal-frequency** bins.

    Rows are sorted by score (stable, so ties keep their input order) and the row of rank ``r``
    (0-based, of ``n``) goes to bin ``floor(r * bins / n)``. ECE is the row-weighted mean over bins of
    ``|observed click rate - mean prediction|``. Equal-frequency bins suit click data: with a base rate
    of a few percent, equal-width bins would put nearly every row in the first bin.
    """
    mean_p, rate, count = calibration_curve(y_true, scores, bins=bins)
    if count.size == 0:
        return math.nan
    return float(np.sum(count * np.abs(rate - mean_p)) / count.sum())


def lift_at_top(y_true: ArrayLike, scores: ArrayLike, *, fraction: float = 0.1) -> float:
    """Click rate among the ``ceil(fraction * n)`` highest scores, divided by the overall rate.

    Rows tied at the cut enter in proportion (the expected value under a random order of the ties),
    so the result does not depend on row order.
    """
    y, s = _inputs(y_true, scores)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if y.size == 0 or not y.any():
        return math.nan
    k = max(1, math.ceil(fraction * y.size))
    cut = np.sort(s)[::-1][k - 1]
    above = s > cut
    tied = s == cut
    needed = k - int(above.sum())
    positives_top = float(y[above].sum()) + needed * float(y[tied].sum()) / float(tied.sum())
    return (positives_top / k) / float(y.mean())


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    y, s = _inputs(y_true, scores)
    order = np.argsort(-s, kind="stable")
    ordered = s[order]
    last_of_group = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True]) if y.size else np.empty(0, int)
    tp = np.cumsum(y[order])[last_of_group]
    fp = last_of_group + 1 - tp
    n_pos, n_neg = max(int(y.sum()), 1), max(int(y.size - y.sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def gains_curve(y_true: ArrayLike, scores: ArrayLike, *, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gains: share of all clicks found in the top ``x`` share of rows, at ``points`` x values."""
    y, s = _inputs(y_true, scores)
    x = np.linspace(0.0, 1.0, points)
    if not y.any():
        return x, np.zeros_like(x)
    found = np.r_[0.0, np.cumsum(y[np.argsort(-s, kind="stable")]) / y.sum()]
    return x, found[np.round(x * y.size).astype(np.int64)]


def summarize(y_true: ArrayLike, scores: ArrayLike) -> dict[str, Any]:
    """Every metric of a set of predictions, as a JSON-able dict (undefined values are ``None``)."""
    y, s = _inputs(y_true, scores)
    values: dict[str, float] = {
        "auc": roc_auc(y, s),
        "log_loss": log_loss(y, s),
        "pr_auc": average_precision(y, s),
        "calibration_error": calibration_error(y, s),
        "lift_top_decile": lift_at_top(y, s, fraction=0.1),
        "base_rate": float(y.mean()) if y.size else math.nan,
        "mean_prediction": float(s.mean()) if s.size else math.nan,
    }
    out: dict[str, Any] = {name: None if math.isnan(v) else v for name, v in values.items()}
    out["rows"] = int(y.size)
    out["positives"] = int(y.sum())
    return out
