"""``report.html``: one self-contained page (charts embedded as base64 PNG) that explains a model.

It shows the validation metrics of the model beside the baseline without table features (and beside
the Bayes-optimal predictor when the generator's truth was given), warnings (a part of the split with
too few positives), the split with its positives, the parameters, four charts (ROC, calibration on
log axes, feature importance as shares of the gain, cumulative gains and lift) and a link to the
money replay, which ``clickwise evaluate`` writes beside the report (``money.json``, ``savings.png``).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

import numpy as np

from clickwise.model import plots
from clickwise.time import format_ms

MONEY_JSON, MONEY_PNG = "money.json", "savings.png"

METRIC_ROWS = (
    ("auc", "ROC AUC"),
    ("log_loss", "log loss"),
    ("pr_auc", "PR AUC (average precision)"),
    ("calibration_error", "calibration error (ECE, 10 equal-frequency bins)"),
    ("lift_top_decile", "lift at top decile"),
    ("base_rate", "base rate"),
    ("mean_prediction", "mean prediction"),
    ("rows", "rows"),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { margin: 0.4em; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2em; }
.warn { color: #a33; }
"""


def _format(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_format(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def metrics_table(columns: Mapping[str, Mapping[str, Any] | None]) -> str:
    """Metric rows by series columns (series without values are left out)."""
    present = {name: values for name, values in columns.items() if values is not None}
    rows = [[label, *(values.get(key) for values in present.values())] for key, label in METRIC_ROWS]
    return _table(["validation", *present], rows)


def render(card: Mapping[str, Any], curves: plots.Curves, gain: Mapping[str, float]) -> str:
    """The HTML page of a model; ``curves`` maps series names to (labels, scores) on validation rows."""
    metrics = card["metrics"]
    truth = metrics.get("truth")
    columns: dict[str, Mapping[str, Any] | None] = {
        "model": metrics["model"],
        "baseline (no table features)": metrics["baseline"],
    }
    sections = []
    if card.get("warnings"):
        items = "".join(f"<li>{html.escape(w)}</li>" for w in card["warnings"])
        sections.append(f"<h2>Warnings</h2><ul class='warn'>{items}</ul>")
    sections.append(f"<h2>Validation metrics</h2>{metrics_table(columns)}")
    if truth is not None:
        sections.append(
            "<h2>Against the truth</h2>"
            f"<p>On the {truth['matched_rows']} validation rows found in "
            f"<code>{html.escape(truth['url'])}</code>."
            f" Share of the gap from the baseline to the Bayes-optimal AUC closed by the model: "
            f"<b>{_format(truth['gap_closed'])}</b>.</p>"
            + metrics_table(
                {
                    "model": truth["model"],
                    "baseline": truth["baseline"],
                    "Bayes-optimal (p_click)": truth["bayes"],
                }
            )
        )
    segment = metrics.get("segment_score_last")
    if segment is not None:
        sections.append(
            f"<p>AUC of <code>segment_score_last</code> alone: <b>{_format(segment['auc'])}</b> "
            f"({segment['null_rows']} rows without a score ranked lowest).</p>"
        )
    y, p = curves["model"]
    sections.append(
        "<h2>Charts</h2>"
        + _image(plots.roc_png(curves), "ROC curves")
        + _image(plots.calibration_png(np.asarray(y), np.asarray(p)), "calibration")
        + _image(plots.importance_png(gain), "feature importance")
        + _image(plots.gains_png(curves), "cumulative gains and lift")
    )
    sections.append(_money_section(card))
    sections.append(
        f"<h2>Split</h2>{_split_table(card['split'])}<p>{html.escape(card['split']['method'])}</p>"
    )
    sections.append(
        "<h2>Model</h2>"
        + _table(["setting", "value"], [[k, v] for k, v in sorted(card["params"].items())])
        + _table(["feature", "kind", "type"], [[f["name"], f["kind"], f["type"]] for f in card["features"]])
    )
    title = f"{card['pipeline']['name']} model {card['version']}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(card['kind'])} · pipeline fingerprint "
        f"<code>{html.escape(card['pipeline']['fingerprint'])}</code>"
        f" · data {html.escape(card['data']['url'])} · {_trees(card)}</p>"
        + "".join(sections)
        + "</body></html>\n"
    )


def _trees(card: Mapping[str, Any]) -> str:
    rounds = card.get("max_rounds")
    return f"{card['trees']} trees kept" + (f" of at most {rounds} rounds" if rounds else "")


def _money_section(card: Mapping[str, Any]) -> str:
    """Links to the money replay that ``clickwise evaluate`` writes into this model's folder."""
    command = f"clickwise evaluate -p PIPELINE --data {card['data']['url']} --model <this model's folder>"
    return (
        "<h2>Money</h2><p>The validation period replayed with the pipeline's decision policy (serve all "
        "against block / serve / skip): "
        f"<a href='{MONEY_JSON}'>{MONEY_JSON}</a> and the savings by threshold below, written beside "
        f"this report by <code>{html.escape(command)}</code>.</p>"
        f"<object data='{MONEY_PNG}' type='image/png'><p><i>Not evaluated yet: run the command above "
        "to write the money replay here.</i></p></object>"
    )


def _split_table(split: Mapping[str, Any]) -> str:
    rows = []
    for part in ("fit", "early_stop", "validation"):
        values = split.get(part)
        if values is not None:
            rows.append(
                [
                    part,
                    values["rows"],
                    values["positives"],
                    format_ms(values["from_ms"]),
                    format_ms(values["to_ms"]),
                ]
            )
    rows.append(["purged", split["purged_rows"], None, None, None])
    return _table(["part", "rows", "positives", "from", "to"], rows)
