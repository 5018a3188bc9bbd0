"""Users, bots and everything fixed before the first event: the population.

A human user has a home country, 1-3 IPs from that country's ISPs, 1-2 browsers, a segment, an
activity level (log-normal, heavy tail) and a latent click propensity on the logit scale
(right-skewed: most users a little below average, a long tail of heavy clickers). The propensity shows
up only through behaviour over time (history): never in the id, the IP, the user agent or any other
field of a single event.

A bot lives in a cloud range (AWS, Google Cloud, DigitalOcean, Hetzner, OVH), sends a crawler,
headless or scripted user agent (or, for some, a real browser's), is ~20x as active as a human,
ignores the daily rhythm, and clicks almost everything (p ~0.9) or almost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from clickwise.synth import catalog
from clickwise.synth.config import SynthConfig
from clickwise.synth.ids import dotted_ipv4, hex_ids, mix64
from clickwise.synth.market import Campaigns, Domains, build_campaigns, build_domains

MAX_IPS = 3
MAX_UAS = 2
DEVICE_CTR_EFFECT = np.array([0.0, 0.15, 0.05])  # desktop, mobile, tablet (accidental taps)
BOT_LATENT = 3.0
SCORE_BIAS_SD = 0.7
_USER_ID_SALT = 0x5EED_0005E4


@dataclass(frozen=True, slots=True)
class Population:
    """Everything the event generator samples from. Arrays of users share the user index."""

    user_ids: pa.StringArray
    is_bot: np.ndarray
    rate_per_ms: np.ndarray
    utc_offset_ms: np.ndarray
    follows_rhythm: np.ndarray
    static_logit: np.ndarray
    bot_p: np.ndarray
    latent: np.ndarray
    score_bias: np.ndarray
    segment: np.ndarray
    segment_ids: pa.StringArray
    country: np.ndarray
    country_codes: tuple[str, ...]
    n_ips: np.ndarray
    ips: pa.StringArray
    ip_values: np.ndarray
    n_uas: np.ndarray
    ua_index: np.ndarray
    user_agents: pa.StringArray
    ua_ctr_effect: np.ndarray
    campaigns: Campaigns
    domains: Domains

    @property
    def size(self) -> int:
        """Number of users, bots included."""
        return int(self.is_bot.size)


def build_population(users: int, seed: int, config: SynthConfig) -> Population:
    """Draw the population for ``users`` users from ``seed`` (SeedSequence child 0)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
    is_bot = rng.random(users) < config.bot_fraction
    clicker = is_bot & (rng.random(users) < config.clicker_bot_share)
    act_z = rng.standard_normal(users)
    segment = rng.integers(0, config.segments, users).astype(np.int16)
    propensity = _propensity(rng, config, segment, act_z)
    countries = catalog.countries()
    home = rng.choice(
        len(countries.codes), size=users, p=countries.traffic_weight / countries.traffic_weight.sum()
    )
    country, ip_values, n_ips = _addresses(rng, is_bot, home, countries.codes)
    ua_index, n_uas = _agents(rng, is_bot, clicker, config)
    offset = np.where(is_bot, 0, countries.utc_offset_ms[home])
    base = np.log(config.base_ctr / (1.0 - config.base_ctr))
    bot_p = np.where(clicker, rng.uniform(0.85, 0.95, users), rng.uniform(0.0002, 0.002, users))
    return Population(
        user_ids=hex_ids(mix64(np.arange(users, dtype=np.uint64), seed ^ _USER_ID_SALT), prefix="u"),
        is_bot=is_bot,
        rate_per_ms=_activity(rng, is_bot, clicker, act_z, config) / 86_400_000.0,
        utc_offset_ms=offset.astype(np.int64),
        follows_rhythm=~is_bot,
        static_logit=base + countries.ctr_effect[home] + propensity,
        bot_p=np.where(is_bot, bot_p, np.nan),
        latent=np.where(is_bot, np.where(clicker, BOT_LATENT, -BOT_LATENT), propensity),
        score_bias=rng.normal(0.0, SCORE_BIAS_SD, users),
        segment=segment,
        segment_ids=catalog.string_array([f"seg-{i:02d}" for i in range(config.segments)]),
        country=country,
        country_codes=_all_country_codes(),
        n_ips=n_ips,
        ips=dotted_ipv4(ip_values.ravel()),
        ip_values=ip_values,
        n_uas=n_uas,
        ua_index=ua_index,
        user_agents=catalog.string_array(catalog.user_agents().strings + catalog.bot_user_agents().strings),
        ua_ctr_effect=_ua_ctr_effect(),
        campaigns=build_campaigns(rng, config.campaigns),
        domains=build_domains(rng, config.domains),
    )


def _propensity(
    rng: np.random.Generator, config: SynthConfig, segment: np.ndarray, act_z: np.ndarray
) -> np.ndarray:
    """Latent logit offset: a segment part (35% of the sd) plus a right-skewed individual part.

    The individual part is log-normal (sigma ``propensity_skew``) standardized to mean 0, sd 1, driven
    by a normal correlated with the user's log-activity.
    """
    seg_sd = 0.35 * config.propensity_sd
    ind_sd = float(np.sqrt(config.propensity_sd**2 - seg_sd**2))
    rho = config.activity_propensity_corr
    z = rho * act_z + np.sqrt(1.0 - rho**2) * rng.standard_normal(act_z.size)
    s = config.propensity_skew
    mean, sd = np.exp(s * s / 2), np.sqrt(np.expm1(s * s) * np.exp(s * s))
    individual = (np.exp(s * z) - mean) / sd
    return rng.normal(0.0, seg_sd, config.segments)[segment] + ind_sd * individual


def _activity(
    rng: np.random.Generator, is_bot: np.ndarray, clicker: np.ndarray, act_z: np.ndarray, config: SynthConfig
) -> np.ndarray:
    """Impressions per day: log-normal with the configured means; click bots run at half the bot rate."""
    s = config.human_activity_sigma
    human = config.human_impressions_per_day * np.exp(s * act_z - s * s / 2)
    bot = config.bot_impressions_per_day * np.exp(0.6 * rng.standard_normal(act_z.size) - 0.18)
    return np.where(is_bot, bot * np.where(clicker, 0.5, 1.0), human)


def _all_country_codes() -> tuple[str, ...]:
    """Country codes of the users' countries first, then those only cloud ranges have (IE, FI...)."""
    codes = list(catalog.countries().codes)
    codes += sorted(set(catalog.ip_ranges().country_codes) - set(codes))
    return tuple(codes)


def _addresses(
    rng: np.random.Generator, is_bot: np.ndarray, home: np.ndarray, home_codes: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Country index, (users, 3) IPv4 integers and IP count of each user.

    Humans take each IP from a random residential block of their home country; a bot takes all its
    IPs from one cloud block, whose country becomes the bot's country.
    """
    ranges = catalog.ip_ranges()
    codes = _all_country_codes()
    range_country = np.array([codes.index(c) for c in ranges.country_codes])
    residential = np.flatnonzero(~ranges.is_datacenter)
    residential = residential[np.argsort(range_country[residential], kind="stable")]
    counts = np.bincount(range_country[residential], minlength=len(home_codes))[: len(home_codes)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n = home.size
    pick = residential[starts[home][:, None] + (rng.random((n, MAX_IPS)) * counts[home][:, None]).astype(int)]
    cloud = np.flatnonzero(ranges.is_datacenter)
    bot_range = cloud[rng.integers(0, cloud.size, n)]
    pick = np.where(is_bot[:, None], bot_range[:, None], pick)
    host = 1 + (rng.random((n, MAX_IPS)) * (ranges.size[pick] - 2)).astype(np.int64)
    country = np.where(is_bot, range_country[bot_range], home).astype(np.int16)
    n_ips = rng.choice(np.arange(1, MAX_IPS + 1), size=n, p=[0.5, 0.35, 0.15]).astype(np.int8)
    return country, ranges.first[pick] + host, n_ips


def _agents(
    rng: np.random.Generator, is_bot: np.ndarray, clicker: np.ndarray, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(users, 2) indices into the user-agent table (human agents, then bot agents) and their count."""
    humans, bots = catalog.user_agents(), catalog.bot_user_agents()
    n = is_bot.size
    human_pick = rng.choice(len(humans.strings), size=(n, MAX_UAS), p=humans.weight / humans.weight.sum())
    kind_share = np.where(clicker[:, None], [[0.0, 0.5, 0.5]], [[0.5, 0.2, 0.3]])
    kind = (rng.random(n)[:, None] > np.cumsum(kind_share, axis=1)).sum(axis=1)
    per_kind = [np.flatnonzero(bots.kind == k) for k in range(len(catalog.BOT_KINDS))]
    bot_pick = np.empty((n, MAX_UAS), dtype=np.int64)
    for k, members in enumerate(per_kind):
        rows = kind == k
        bot_pick[rows] = members[rng.integers(0, members.size, (int(rows.sum()), MAX_UAS))]
    spoofed = rng.random(n) < config.bot_spoofed_ua_share
    use_bot_ua = (is_bot & ~spoofed)[:, None]
    index = np.where(use_bot_ua, len(humans.strings) + bot_pick, human_pick).astype(np.int32)
    n_uas = np.where(rng.random(n) < 0.4, 2, 1).astype(np.int8)
    return index, n_uas


def _ua_ctr_effect() -> np.ndarray:
    """Logit CTR effect of each user agent (by device class); bot agents have none."""
    human = DEVICE_CTR_EFFECT[catalog.user_agents().device]
    return np.concatenate([human, np.zeros(len(catalog.bot_user_agents().strings))])
