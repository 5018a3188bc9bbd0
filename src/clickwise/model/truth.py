"""Comparing a model with the best possible one, on generated data whose click probabilities are known.

The synthetic generator writes ``truth/`` (``impression_id``, ``p_click``: the probability each click
was drawn with). Scoring the validation rows with ``p_click`` gives the **Bayes-optimal** metrics: no
model can do better in expectation. The share of the gap closed,
``(AUC_model - AUC_baseline) / (AUC_bayes - AUC_baseline)``, says how much of what the table features
could add the model actually found.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from clickwise.model._io import open_existing
from clickwise.model.errors import TrainingDataError
from clickwise.model.metrics import roc_auc, summarize


def read_truth(url: str) -> pl.DataFrame:
    """``impression_id``, ``p_click`` of every Parquet file under ``url`` (first row of a repeated id)."""
    root = open_existing(url, TrainingDataError, "truth folder")
    files = root.list_files(suffix=".parquet")
    if not files:
        raise TrainingDataError(f"truth folder {url!r} has no Parquet files (impression_id, p_click)")
    try:
        table = root.read_parquet(files, columns=["impression_id", "p_click"])
    except (pa.ArrowInvalid, KeyError) as exc:
        raise TrainingDataError(
            f"truth folder {url!r} needs columns impression_id and p_click: {exc}"
        ) from exc
    return pl.DataFrame(table).unique(subset="impression_id", keep="first", maintain_order=True)


def bot_rows(url: str, event_ids: pa.ChunkedArray) -> np.ndarray:
    """For each row, whether the generator's truth says its impression came from a bot."""
    root = open_existing(url, TrainingDataError, "truth folder")
    files = root.list_files(suffix=".parquet")
    try:
        table = root.read_parquet(files, columns=["impression_id", "is_bot"])
    except (pa.ArrowInvalid, KeyError) as exc:
        raise TrainingDataError(
            f"truth folder {url!r} has no is_bot column ({exc}); generate the data again"
        ) from exc
    truth = pl.DataFrame(table).unique(subset="impression_id", keep="first")
    rows = pl.DataFrame({"impression_id": pl.Series(event_ids.cast(pa.string()))})
    joined = rows.join(truth, on="impression_id", how="left", maintain_order="left")
    return joined.get_column("is_bot").fill_null(False).to_numpy()


def compare_with_truth(
    url: str, event_ids: pa.ChunkedArray, labels: np.ndarray, model: np.ndarray, baseline: np.ndarray
) -> dict[str, Any]:
    """Model, baseline and Bayes-optimal metrics on the validation rows found in the truth."""
    truth = read_truth(url)
    rows = pl.DataFrame(
        {"impression_id": pl.Series(event_ids.cast(pa.string())), "row": np.arange(len(labels))}
    )
    joined = rows.join(truth, on="impression_id", how="inner").sort("row")
    if joined.height == 0:
        raise TrainingDataError(
            f"none of the {len(labels)} validation rows' event_id is in the truth folder {url!r}; "
            "is it the truth of the data this training set was built from?"
        )
    index = joined["row"].to_numpy()
    bayes_p = joined["p_click"].to_numpy().astype(np.float64)
    y = labels[index]
    scores = {
        "model": summarize(y, model[index]),
        "baseline": summarize(y, baseline[index]),
        "bayes": summarize(y, bayes_p),
    }
    return {
        "url": url,
        "matched_rows": int(joined.height),
        "validation_rows": len(labels),
        **scores,
        "gap_closed": gap_closed(scores["model"]["auc"], scores["baseline"]["auc"], scores["bayes"]["auc"]),
    }


def gap_closed(model_auc: float | None, baseline_auc: float | None, bayes_auc: float | None) -> float | None:
    """``(model - baseline) / (bayes - baseline)``, or ``None`` when undefined (no gap to close).

    >>> gap_closed(0.75, 0.5, 1.0)
    0.5
    """
    if model_auc is None or baseline_auc is None or bayes_auc is None or bayes_auc <= baseline_auc:
        return None
    return (model_auc - baseline_auc) / (bayes_auc - baseline_auc)


def score_auc(scores: pa.ChunkedArray, labels: np.ndarray) -> dict[str, Any]:
    """AUC of a raw score column; rows without a score rank lowest (tied with each other)."""
    values = scores.cast(pa.float64()).fill_null(-math.inf).to_numpy()
    values = np.where(np.isnan(values), -math.inf, values)
    auc = roc_auc(labels, values)
    return {"auc": None if math.isnan(auc) else auc, "null_rows": int(scores.null_count)}
