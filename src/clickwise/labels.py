"""Labels from the future: did a matching outcome follow the exposure within the horizon?

    label(i) = 1  if some matching outcome has  t_i - tolerance <= outcome_ms < t_i + horizon

(DESIGN.md section 4). Outcomes match on the label's ``match`` fields; a null match field never
matches; duplicate outcomes count once.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from clickwise.events.validate import EVENT_MS
from clickwise.spec import LabelDef


def label_events(label: LabelDef, exposures: pl.DataFrame, outcomes: pl.DataFrame) -> np.ndarray:
    """The label (int8, 0 or 1) of each exposure row, from the outcome rows given (which must cover
    ``[min t - tolerance, max t + horizon)`` for the answer to be final)."""
    labels = np.zeros(exposures.height, dtype=np.int8)
    if exposures.height == 0 or outcomes.height == 0:
        return labels
    keys = [f"m{i}" for i in range(len(label.match))]
    left = exposures.select(
        *[_as_key(exposures, name).alias(key) for name, key in zip(label.match, keys, strict=True)],
        pl.col(EVENT_MS).alias("t"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
    ).drop_nulls(keys)
    right = (
        outcomes.select(
            *[
                _as_key(outcomes, name).alias(key)
                for name, key in zip(label.match.values(), keys, strict=True)
            ],
            pl.col(EVENT_MS).alias("o"),
        )
        .drop_nulls(keys)
        .unique()
    )
    hits = (
        left.join(right, on=keys, how="inner")
        .filter((pl.col("o") >= pl.col("t") - label.tolerance) & (pl.col("o") < pl.col("t") + label.horizon))
        .get_column("row")
        .unique()
        .to_numpy()
    )
    labels[hits] = 1
    return labels


def outcome_range_ms(label: LabelDef, start_ms: int, end_ms: int) -> tuple[int, int]:
    """The outcome times that can label exposures with ``start_ms <= t < end_ms``."""
    return start_ms - label.tolerance, end_ms + label.horizon


def _as_key(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Match fields compare as text, so an int id on one side matches its text on the other."""
    column = pl.col(name)
    return column if frame.schema[name] == pl.String else column.cast(pl.String)
