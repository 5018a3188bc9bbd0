"""Clicks drawn from impressions: delays, double clicks and re-delivered records.

A click comes either right away (log-normal, median ``quick_click_median_s``) or, for
``return_click_share`` of them, later (log-normal, median one hour). With the defaults ~87% of clicks
happen within 15 minutes of the impression and the rest up to several hours after, so a 15-minute
label misses some real clicks, as in production.

Duplicates, as real click logs have them:

- a *double click*: a second click with a new ``click_id`` on the same impression 0.25-4 s later;
- a *re-delivery*: the same click row (same ``click_id`` and ``ts``) stored again, a later ``arrival_ts``.
"""

from __future__ import annotations

import numpy as np

from clickwise.synth.arrival import Columns, arrival_lag_ms, concat_columns, take_columns
from clickwise.synth.config import SynthConfig
from clickwise.synth.ids import mix64

MAX_DELAY_MS = 12 * 3_600_000
_CLICK_KEY_BIT = 1 << 62


def click_delay_ms(rng: np.random.Generator, n: int, config: SynthConfig) -> np.ndarray:
    """Delay from impression to click, at least 0.5 s."""
    quick = rng.lognormal(np.log(config.quick_click_median_s * 1000.0), 0.9, n)
    later = rng.lognormal(np.log(3_600_000.0), 0.9, n)
    delay = np.where(rng.random(n) < config.return_click_share, later, quick)
    return np.clip(delay, 500.0, MAX_DELAY_MS).astype(np.int64)


def draw_clicks(
    rng: np.random.Generator,
    impressions: Columns,
    clicked: np.ndarray,
    chunk: int,
    seed: int,
    config: SynthConfig,
) -> Columns:
    """Click rows (columns ``click_key, impression_key, user, campaign, ts, arrival_ts``)."""
    source = take_columns(impressions, clicked)
    n = source["ts"].size
    first = {
        "impression_key": source["impression_key"],
        "user": source["user"],
        "campaign": source["campaign"],
        "ts": source["ts"] + click_delay_ms(rng, n, config),
    }
    doubled = take_columns(first, rng.random(n) < config.double_click_rate)
    doubled["ts"] = doubled["ts"] + rng.integers(250, 4_000, doubled["ts"].size)
    rows = concat_columns([first, doubled])
    count = rows["ts"].size
    keys = np.uint64(_CLICK_KEY_BIT | (chunk << 32)) + np.arange(count, dtype=np.uint64)
    rows = {"click_key": mix64(keys, seed), **rows}
    rows["arrival_ts"] = rows["ts"] + arrival_lag_ms(rng, count, config.late_fraction)
    again = take_columns(rows, rng.random(count) < config.redelivery_rate)
    again["arrival_ts"] = (
        again["arrival_ts"] + 1_000 + rng.lognormal(np.log(90_000.0), 1.0, again["ts"].size).astype(np.int64)
    )
    return concat_columns([rows, again])
