"""The report's charts as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clickwise.model.metrics import calibration_curve, gains_curve, roc_curve

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Series name -> (labels, scores)."""

_SIZE = (5.2, 4.0)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def roc_png(curves: Curves) -> bytes:
    figure = Figure(figsize=_SIZE)
    ax = figure.add_subplot()
    for name, (y, s) in curves.items():
        fpr, tpr = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name, linewidth=1.4)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation)")
    ax.legend(loc="lower right", fontsize="small")
    return _png(figure)


def calibration_png(y: np.ndarray, p: np.ndarray, *, bins: int = 20) -> bytes:
    mean_p, rate, _ = calibration_curve(y, p, bins=bins)
    figure = Figure(figsize=_SIZE)
    ax = figure.add_subplot()
    top = float(max(mean_p.max(initial=0.0), rate.max(initial=0.0), 1e-6)) * 1.05
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1)
    ax.plot(mean_p, rate, marker="o", markersize=3, linewidth=1.2)
    ax.set(
        xlabel="mean predicted p(click)",
        ylabel="observed click rate",
        title=f"Calibration ({bins} equal-frequency bins)",
        xlim=(0, top),
        ylim=(0, top),
    )
    return _png(figure)


def importance_png(gain: Mapping[str, float], *, top: int = 25) -> bytes:
    ranked = sorted(gain.items(), key=lambda item: item[1], reverse=True)[:top][::-1]
    figure = Figure(figsize=(_SIZE[0], max(2.0, 0.25 * len(ranked) + 1)))
    ax = figure.add_subplot()
    ax.barh([name for name, _ in ranked], [value for _, value in ranked], color="#4c72b0")
    ax.set(xlabel="total gain", title="Feature importance (gain)")
    ax.tick_params(axis="y", labelsize="small")
    return _png(figure)


def gains_png(curves: Curves) -> bytes:
    figure = Figure(figsize=(_SIZE[0] * 2, _SIZE[1]))
    gains_ax, lift_ax = figure.subplots(1, 2)
    for name, (y, s) in curves.items():
        x, found = gains_curve(y, s)
        gains_ax.plot(x, found, label=name, linewidth=1.4)
        lift = np.divide(found[1:], x[1:])
        lift_ax.plot(x[1:], lift, label=name, linewidth=1.4)
    gains_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    gains_ax.set(
        xlabel="share of impressions (highest p first)", ylabel="share of clicks", title="Cumulative gains"
    )
    lift_ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    lift_ax.set(xlabel="share of impressions (highest p first)", ylabel="lift", title="Cumulative lift")
    gains_ax.legend(loc="lower right", fontsize="small")
    return _png(figure)


def savings_png(multipliers: np.ndarray, saved: np.ndarray, best: float) -> bytes:
    figure = Figure(figsize=_SIZE)
    ax = figure.add_subplot()
    ax.plot(multipliers, saved, marker="o", markersize=2.5, linewidth=1.2)
    ax.axhline(0.0, color="grey", linestyle=":", linewidth=1)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="policy (x1)")
    ax.axvline(best, color="#dd8452", linewidth=1, label=f"best (x{best:g})")
    ax.set_xscale("log")
    ax.set(
        xlabel="threshold multiplier m (serve when p * value > m * cost)",
        ylabel="net savings vs serve-all",
        title="Savings by threshold",
    )
    ax.legend(fontsize="small")
    return _png(figure)
