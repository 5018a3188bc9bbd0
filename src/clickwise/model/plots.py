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
    return _png(calibration_figure(y, p, bins=bins))


def calibration_figure(y: np.ndarray, p: np.ndarray, *, bins: int = 20) -> Figure:
    """Observed click rate against mean prediction per equal-frequency bin, on **log** axes: click
    probabilities span orders of magnitude (0.1% to 30%), and on linear axes every bin but the last
    few sits in one corner. A bin without a click is drawn at the bottom edge as an open marker;
    each bin holds ``len(y) / bins`` rows."""
    mean_p, rate, count = calibration_curve(y, p, bins=bins)
    figure = Figure(figsize=_SIZE)
    ax = figure.add_subplot()
    positive = np.concatenate([mean_p[mean_p > 0], rate[rate > 0]])
    low = float(positive.min()) / 1.6 if positive.size else 1e-4
    high = min(1.0, float(positive.max()) * 1.6) if positive.size else 1.0
    ax.plot([low, high], [low, high], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    clicked = rate > 0
    ax.plot(mean_p[clicked], rate[clicked], marker="o", markersize=4, linewidth=1.2, label="model")
    if (~clicked).any():
        ax.plot(
            np.maximum(mean_p[~clicked], low),
            np.full(int((~clicked).sum()), low),
            marker="o",
            markersize=4,
            linestyle="none",
            fillstyle="none",
            color="#c44e52",
            label="bin without a click",
        )
    rows = int(count.sum() // max(len(count), 1))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
        xlabel="mean predicted p(click) (log)",
        ylabel="observed click rate (log)",
        title=f"Calibration: {len(count)} equal-frequency bins of ~{rows:,} rows",
        xlim=(low, high),
        ylim=(low / 1.05, high),
    )
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    return figure


def importance_png(gain: Mapping[str, float], *, top: int = 20) -> bytes:
    return _png(importance_figure(gain, top=top))


def importance_figure(gain: Mapping[str, float], *, top: int = 20) -> Figure:
    """The ``top`` features by share of the total gain, largest on top, on a log axis (one feature
    often takes most of the gain; on a linear axis the rest are invisible), each bar labelled with its
    share. Features without gain are counted in the title."""
    total = float(sum(gain.values()))
    used = {name: value for name, value in gain.items() if value > 0}
    ranked = sorted(used.items(), key=lambda item: (-item[1], item[0]))[:top][::-1]
    figure = Figure(figsize=(_SIZE[0] * 1.25, max(2.4, 0.28 * len(ranked) + 1.2)))
    ax = figure.add_subplot()
    shares = [100.0 * value / total for _, value in ranked] if total > 0 else []
    bars = ax.barh([name for name, _ in ranked], shares, color="#4c72b0")
    ax.bar_label(bars, labels=[_percent(share) for share in shares], padding=3, fontsize="x-small")
    if shares:
        ax.set_xscale("log")
        ax.set_xlim(min(shares) / 2, max(shares) * 4)
    unused = len(gain) - len(used)
    shown = f"top {len(ranked)} of {len(used)} used" if len(used) > len(ranked) else f"{len(used)} used"
    ax.set(
        xlabel="share of the total gain, % (log)",
        title=f"Feature importance (gain): {shown}" + (f", {unused} unused" if unused else ""),
    )
    ax.tick_params(axis="y", labelsize="small")
    return figure


def _percent(share: float) -> str:
    return f"{share:.1f}%" if share >= 0.1 else f"{share:.2g}%"


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
