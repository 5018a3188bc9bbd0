"""One event-time chunk of the stream: impressions (with their true click probability), clicks and
predictions, as integer/float numpy columns that index into the :class:`Population`.

The click probability of a human's impression is

    logit p = logit(base_ctr) + country + propensity(user) + campaign + domain + device + local hour

Every term but the user's propensity can be read from the event itself (the country from the IP, the
device from the user agent), so a model without history can learn all of them; the propensity only
shows through the user's past clicks and impressions. A bot's ``p`` is its own fixed ~0.9 or ~0.001.

Each chunk draws from its own random stream (``SeedSequence(seed, spawn_key=(1, chunk))``), so a chunk's
events do not depend on how many random numbers earlier chunks used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clickwise.synth.arrival import Columns, arrival_lag_ms
from clickwise.synth.clicks import draw_clicks
from clickwise.synth.config import SynthConfig
from clickwise.synth.ids import mix64
from clickwise.synth.market import impression_cost
from clickwise.synth.population import MAX_IPS, MAX_UAS, Population
from clickwise.synth.rhythm import hour_ctr_effect, intensity, local_hour

SCORING_SPREAD_MS = 5 * 60_000
SCORE_SIGNAL = 0.4
SCORE_RUN_NOISE_SD = 0.9


@dataclass(frozen=True, slots=True)
class Chunk:
    """The events whose event time lies in ``[start_ms, end_ms)`` (clicks: whose impression does)."""

    index: int
    start_ms: int
    end_ms: int
    impressions: Columns
    clicks: Columns
    predictions: Columns


def chunk_rng(seed: int, chunk: int) -> np.random.Generator:
    """The random stream of one chunk; equal to ``SeedSequence(seed).spawn(2)[1].spawn(chunk + 1)[-1]``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1, chunk))))


def draw_chunk(
    pop: Population, config: SynthConfig, seed: int, index: int, start_ms: int, end_ms: int
) -> Chunk:
    """Draw every event of one chunk."""
    rng = chunk_rng(seed, index)
    impressions = _impressions(rng, pop, seed, index, start_ms, end_ms)
    clicked = rng.random(impressions["p_click"].size) < impressions["p_click"]
    clicks = draw_clicks(rng, impressions, clicked, index, seed, config)
    predictions = _predictions(rng, pop, config, start_ms, end_ms)
    impressions["arrival_ts"] = impressions["ts"] + arrival_lag_ms(
        rng, impressions["ts"].size, config.late_fraction
    )
    return Chunk(index, start_ms, end_ms, impressions, clicks, predictions)


def _activity(pop: Population, at_ms: int, span_ms: int) -> np.ndarray:
    """Expected impressions of each user in a span of ``span_ms`` centred on ``at_ms``."""
    rhythm = np.where(pop.follows_rhythm, intensity(local_hour(at_ms, pop.utc_offset_ms)), 1.0)
    return pop.rate_per_ms * span_ms * rhythm


def _impressions(
    rng: np.random.Generator, pop: Population, seed: int, index: int, start_ms: int, end_ms: int
) -> Columns:
    span = end_ms - start_ms
    counts = rng.poisson(_activity(pop, start_ms + span // 2, span))
    user = np.repeat(np.arange(pop.size, dtype=np.int32), counts)
    n = user.size
    ts = start_ms + (rng.random(n) * span).astype(np.int64)
    campaign = pop.campaigns.traffic.sample(rng, n)
    domain = pop.domains.traffic.sample(rng, n)
    ip = user.astype(np.int64) * MAX_IPS + (rng.random(n) * pop.n_ips[user]).astype(np.int64)
    ua = pop.ua_index[user, (rng.random(n) * pop.n_uas[user]).astype(np.int64) % MAX_UAS]
    keys = np.uint64(index << 32) + np.arange(n, dtype=np.uint64)
    return {
        "impression_key": mix64(keys, seed),
        "user": user,
        "campaign": campaign,
        "domain": domain,
        "ip": ip,
        "ua": ua,
        "cost": impression_cost(rng, pop.campaigns, pop.domains, campaign, domain),
        "ts": ts,
        "p_click": _p_click(pop, user, campaign, domain, ua, ts),
    }


def _p_click(
    pop: Population,
    user: np.ndarray,
    campaign: np.ndarray,
    domain: np.ndarray,
    ua: np.ndarray,
    ts: np.ndarray,
) -> np.ndarray:
    logit = (
        pop.static_logit[user]
        + pop.campaigns.ctr_effect[campaign]
        + pop.domains.ctr_effect[domain]
        + pop.ua_ctr_effect[ua]
        + hour_ctr_effect(local_hour(ts, pop.utc_offset_ms[user]))
    )
    human = 1.0 / (1.0 + np.exp(-logit))
    return np.where(pop.is_bot[user], pop.bot_p[user], human)


def _predictions(
    rng: np.random.Generator, pop: Population, config: SynthConfig, start_ms: int, end_ms: int
) -> Columns:
    """Scores of the scoring job's runs that start in the chunk.

    A run at tick ``T`` scores each user active in ``[T - interval, T)`` (drawn from the user's
    activity, not from the drawn events); each user's score is informative but noisy: a persistent
    per-user bias and a per-run noise on top of the user's propensity.
    """
    interval = config.prediction_interval_ms
    first = -(-start_ms // interval) * interval
    parts: list[Columns] = []
    for tick in range(first, end_ms, interval):
        expected = _activity(pop, tick - interval // 2, interval)
        user = np.flatnonzero(rng.random(pop.size) < -np.expm1(-expected)).astype(np.int32)
        noise = rng.normal(0.0, SCORE_RUN_NOISE_SD, user.size)
        logit = -1.0 + SCORE_SIGNAL * pop.latent[user] + pop.score_bias[user] + noise
        ts = tick + rng.integers(0, SCORING_SPREAD_MS, user.size)
        parts.append({"user": user, "score": np.round(1.0 / (1.0 + np.exp(-logit)), 6), "ts": ts})
    if not parts:
        parts.append({"user": np.empty(0, np.int32), "score": np.empty(0), "ts": np.empty(0, np.int64)})
    cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    cols["arrival_ts"] = cols["ts"] + arrival_lag_ms(rng, cols["ts"].size, config.late_fraction)
    return cols
