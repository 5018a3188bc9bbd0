"""The generated stream behaves like real ad traffic (checked on 3,000 users over 24 hours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clickwise.synth import SynthConfig, generate
from clickwise.synth.catalog import bot_user_agents, ip_ranges
from clickwise.synth.population import Population, build_population

START_MS = 1_700_000_000_000
USERS, SEED = 3_000, 21
MINUTE = 60_000


@dataclass
class Data:
    impressions: pl.DataFrame
    clicks: pl.DataFrame
    predictions: pl.DataFrame
    truth: pl.DataFrame
    pop: Population


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("realism")
    generate(root, users=USERS, hours=24, seed=SEED, start_ms=START_MS)
    pop = build_population(USERS, SEED, SynthConfig())
    users = pl.DataFrame(
        {"user_id": pop.user_ids.to_pylist(), "is_bot": pop.is_bot, "uidx": np.arange(USERS)}
    )
    imps = pl.read_parquet(root / "impressions").join(users, on="user_id")
    clicks, predictions, truth = (pl.read_parquet(root / name) for name in ("clicks", "predictions", "truth"))
    return Data(imps, clicks, predictions, truth, pop)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC from ranks (ties broken arbitrarily, fine for continuous scores)."""
    ranks = np.empty(score.size)
    ranks[np.argsort(score, kind="stable")] = np.arange(1, score.size + 1)
    pos = label.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_arrival_never_before_event_and_files_in_arrival_order(data: Data) -> None:
    for frame in (data.impressions, data.clicks, data.predictions):
        assert (frame["arrival_ts"] >= frame["ts"]).all()
        assert frame["arrival_ts"].is_sorted()


def test_a_few_percent_arrive_minutes_late_and_out_of_order(data: Data) -> None:
    for frame in (data.impressions, data.predictions):
        late = ((frame["arrival_ts"] - frame["ts"]) >= MINUTE).mean()
        assert 0.02 <= late <= 0.045  # type: ignore[operator]
    assert not data.impressions["ts"].is_sorted()


def test_click_delays_mostly_within_15_minutes_with_a_tail(data: Data) -> None:
    first = data.clicks.group_by("impression_id").agg(pl.col("ts").min())
    delay = first.join(data.impressions, on="impression_id", suffix="_imp").select(
        (pl.col("ts") - pl.col("ts_imp")).alias("d")
    )["d"]
    assert (delay > 0).all()
    within = (delay < 15 * MINUTE).mean()
    assert 0.80 <= within <= 0.93  # type: ignore[operator]
    assert 30_000 <= delay.median() <= 120_000  # type: ignore[operator]
    assert delay.max() > 60 * MINUTE  # type: ignore[operator]


def test_duplicate_clicks_exist(data: Data) -> None:
    copies = data.clicks.filter(pl.col("click_id").is_duplicated()).sort("click_id", "arrival_ts")
    assert copies.height > 0
    same = copies.group_by("click_id").agg(
        pl.col("impression_id", "user_id", "campaign_id", "ts").n_unique(), pl.col("arrival_ts").n_unique()
    )
    assert (same["impression_id"] == 1).all() and (same["ts"] == 1).all()
    assert (same["arrival_ts"] > 1).all()  # the re-delivery arrives later
    unique = data.clicks.unique("click_id")
    doubles = unique.group_by("impression_id").agg(
        pl.len(), (pl.col("ts").max() - pl.col("ts").min()).alias("gap")
    )
    doubles = doubles.filter(pl.col("len") > 1)
    assert doubles.height > 0
    assert (doubles["gap"] <= 5_000).mean() > 0.9  # type: ignore[operator]


def test_every_click_has_its_impression(data: Data) -> None:
    ids = set(data.impressions["impression_id"].to_list())
    assert set(data.clicks["impression_id"].to_list()) <= ids


def test_ctr_in_range(data: Data) -> None:
    clicked = data.clicks["impression_id"].n_unique()
    ctr = clicked / data.impressions.height
    assert 0.01 <= ctr <= 0.03
    assert abs(ctr - data.truth["p_click"].mean()) < 0.004  # type: ignore[operator]


def test_bots_are_few_but_busy_with_bot_agents_and_cloud_ips(data: Data) -> None:
    pop = data.pop
    assert 0.01 <= pop.is_bot.mean() <= 0.03
    share = data.impressions["is_bot"].mean()
    assert 0.15 <= share <= 0.45  # type: ignore[operator]
    per_user = data.impressions.group_by("is_bot").agg(pl.len() / pl.col("user_id").n_unique())
    rate = dict(zip(per_user["is_bot"].to_list(), per_user["len"].to_list(), strict=True))
    assert rate[True] > 10 * rate[False]
    bots = data.impressions.filter(pl.col("is_bot"))
    bot_agents = set(bot_user_agents().strings)
    assert bots["user_agent"].is_in(list(bot_agents)).mean() > 0.5  # type: ignore[operator]
    humans = data.impressions.filter(~pl.col("is_bot"))
    assert not humans["user_agent"].is_in(list(bot_agents)).any()
    ranges = ip_ranges()
    cloud = [
        (int(f), int(f + s))
        for f, s, dc in zip(ranges.first, ranges.size, ranges.is_datacenter, strict=True)
        if dc
    ]
    bot_ips = pop.ip_values[pop.is_bot].ravel()
    assert all(any(lo <= ip < hi for lo, hi in cloud) for ip in bot_ips.tolist())


def test_bots_click_everything_or_nothing(data: Data) -> None:
    p = data.truth.join(data.impressions, on="impression_id").filter(pl.col("is_bot"))["p_click"]
    assert (((p > 0.8) & (p < 0.96)) | (p < 0.003)).all()
    assert (p > 0.8).any()


def test_truth_covers_every_impression(data: Data) -> None:
    assert data.truth.height == data.impressions.height
    assert data.truth["impression_id"].to_list() == data.impressions["impression_id"].to_list()
    assert data.impressions["impression_id"].n_unique() == data.impressions.height
    assert ((data.truth["p_click"] > 0) & (data.truth["p_click"] < 1)).all()


def test_predictions_informative_about_propensity(data: Data) -> None:
    propensity = (
        data.truth.join(data.impressions, on="impression_id")
        .group_by("user_id")
        .agg(pl.col("p_click").mean().alias("propensity"))
    )
    scores = data.predictions.group_by("user_id").agg(pl.col("score").mean())
    joined = scores.join(propensity, on="user_id")
    propensities = joined["propensity"].to_numpy()
    label = propensities > np.median(propensities)
    value = auc(joined["score"].to_numpy(), label)
    assert 0.6 < value < 0.95
    assert ((data.predictions["score"] > 0) & (data.predictions["score"] < 1)).all()


def test_daily_rhythm_changes_volume(data: Data) -> None:
    humans = data.impressions.filter(~pl.col("is_bot"))
    per_hour = humans.group_by((pl.col("ts") - START_MS) // 3_600_000).len()["len"]
    assert per_hour.max() > 1.3 * per_hour.min()  # type: ignore[operator]


def test_users_have_few_ips_and_agents_and_random_looking_ids(data: Data) -> None:
    per_user = data.impressions.group_by("user_id").agg(
        pl.col("ip").n_unique(), pl.col("user_agent").n_unique()
    )
    assert per_user["ip"].max() <= 3 and per_user["user_agent"].max() <= 2  # type: ignore[operator]
    ids = data.pop.user_ids.to_pylist()
    assert len(set(ids)) == len(ids) and all(len(i) == 17 and i.startswith("u") for i in ids)
    order = np.argsort(np.array(ids))
    assert abs(np.corrcoef(order, data.pop.latent[order])[0, 1]) < 0.1  # id order says nothing of propensity


def test_propensity_is_skewed_with_configured_spread() -> None:
    pop = build_population(20_000, 1, SynthConfig())
    latent = pop.latent[~pop.is_bot]
    assert 1.0 <= latent.std() <= 1.4
    assert np.mean(latent > 2.0) > np.mean(latent < -2.0)


def test_100k_users_for_a_day_give_over_5_million_impressions() -> None:
    pop = build_population(100_000, 0, SynthConfig())
    expected = pop.rate_per_ms.sum() * 24 * 3_600_000
    assert expected > 5_300_000


def test_without_late_fraction_nothing_arrives_a_minute_late(tmp_path: Path) -> None:
    calm = generate(
        tmp_path, users=500, hours=6, seed=2, start_ms=START_MS, config=SynthConfig(late_fraction=0)
    )
    imps = pl.read_parquet(calm.paths["impressions"][0])
    lag = imps["arrival_ts"] - imps["ts"]
    assert (lag < MINUTE).all()
    assert lag.median() < 1_000  # type: ignore[operator]
