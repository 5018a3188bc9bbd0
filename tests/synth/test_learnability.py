"""History must carry the user's propensity: the property the model issue builds on.

A binned model (what a tree model learns) on single-event information only is compared with the same
model given the user's past impressions and clicks, on the last third of a day, against the
Bayes-optimal ranking by ``p_click``. History has to close most of the gap, and nothing in a single
event may reveal the propensity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clickwise.synth import SynthConfig, generate
from clickwise.synth.population import build_population

START_MS = 1_700_000_000_000
USERS, SEED = 10_000, 8
HORIZON_MS = 15 * 60_000


def auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = pl.Series(score).rank("average").to_numpy()
    pos = label.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binned(key: np.ndarray, label: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Smoothed mean label per key, fitted on ``train`` rows: a lookup-table model."""
    size = int(key.max()) + 1
    hits = np.bincount(key[train], weights=label[train], minlength=size)
    seen = np.bincount(key[train], minlength=size)
    prior = label[train].mean()
    return ((hits + 20 * prior) / (seen + 20))[key]


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    root: Path = tmp_path_factory.mktemp("learn")
    generate(root, users=USERS, hours=24, seed=SEED, start_ms=START_MS)
    pop = build_population(USERS, SEED, SynthConfig())
    # a bot is recognizable in one event by its cloud IP (see test_realism), so is_bot is single-event
    users = pl.DataFrame(
        {
            "user_id": pop.user_ids.to_pylist(),
            "uidx": np.arange(USERS),
            "latent": pop.latent,
            "is_bot": pop.is_bot,
        }
    )
    clicks = pl.read_parquet(root / "clicks")
    first_click = clicks.group_by("impression_id").agg(pl.col("ts").min().alias("click_ts"))
    return (
        pl.read_parquet(root / "impressions")
        .join(pl.read_parquet(root / "truth"), on="impression_id")
        .join(users, on="user_id")
        .join(first_click, on="impression_id", how="left")
        .with_columns(label=(pl.col("click_ts") < pl.col("ts") + HORIZON_MS).fill_null(False))
        .sort("uidx", "ts")
    )


def test_history_closes_most_of_the_gap_to_bayes(frame: pl.DataFrame) -> None:
    p = frame["p_click"].to_numpy()
    label = frame["label"].to_numpy().astype(float)
    is_bot = frame["is_bot"].to_numpy()
    latent = frame["latent"].to_numpy()
    ts, uidx = frame["ts"].to_numpy(), frame["uidx"].to_numpy()
    # the single-event part of the logit: everything but the user's latent propensity (an oracle for it)
    observable = np.where(is_bot, 0.0, np.log(p / (1 - p)) - latent)
    decile = np.searchsorted(np.quantile(observable, np.linspace(0, 1, 21)[1:-1]), observable)
    no_history = is_bot * 21 + decile
    # history as of each impression: the user's earlier impressions and earlier clicks
    starts = np.r_[0, np.flatnonzero(np.diff(uidx)) + 1]
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, uidx.size]))
    n_before = np.arange(uidx.size) - starts[group]
    clicks = frame.filter(pl.col("click_ts").is_not_null()).sort("uidx", "click_ts")
    click_key = clicks["uidx"].to_numpy() * 10**13 + clicks["click_ts"].to_numpy()
    k_before = np.searchsorted(click_key, uidx * 10**13 + ts) - np.searchsorted(click_key, uidx * 10**13)
    with_history = (no_history * 13 + np.minimum(k_before, 12)) * 13 + np.minimum(
        np.log2(n_before + 1), 12
    ).astype(int)
    test = ts >= START_MS + 16 * 3_600_000
    scores = {
        "without": binned(no_history, label, ~test),
        "with": binned(with_history, label, ~test),
        "bayes": p,
    }  # fmt: skip
    a = {name: auc(s[test], label[test]) for name, s in scores.items()}
    closed = (a["with"] - a["without"]) / (a["bayes"] - a["without"])
    assert a["bayes"] > a["without"] + 0.1
    assert closed >= 0.75, a


def test_no_single_field_reveals_the_propensity(frame: pl.DataFrame) -> None:
    humans = frame.filter(~pl.col("is_bot"))
    latent = humans["latent"].to_numpy()
    for column in ("cost", "ts"):
        assert abs(np.corrcoef(humans[column].to_numpy(), latent)[0, 1]) < 0.05, column
    for column in ("campaign_id", "domain", "user_agent"):
        spread = humans.group_by(column).agg(pl.col("latent").mean(), pl.len()).filter(pl.col("len") >= 200)
        assert spread["latent"].std() < 0.3, column  # type: ignore[operator]
