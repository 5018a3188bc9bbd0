"""The ad market: campaigns (advertisers) and domains (publishers).

Each has its own CTR effect (logit scale, sd 0.35) and a share of traffic: campaign budgets are
log-normal, domain popularity is Zipf(1.1), so a few domains carry most impressions. Cost per
impression is the campaign's CPM / 1000 times the domain's price factor, with noise per impression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from clickwise.synth.catalog import domain_words, string_array
from clickwise.synth.sampling import AliasTable

EFFECT_SD = 0.35
MIN_COST = 0.0005
MAX_COST = 0.01


@dataclass(frozen=True, slots=True)
class Campaigns:
    """Advertiser campaigns; ``traffic`` samples them by budget share."""

    ids: pa.StringArray
    traffic: AliasTable
    ctr_effect: np.ndarray
    cpm: np.ndarray


@dataclass(frozen=True, slots=True)
class Domains:
    """Publisher domains; ``traffic`` samples them by Zipf popularity."""

    names: pa.StringArray
    traffic: AliasTable
    ctr_effect: np.ndarray
    price_factor: np.ndarray


def build_campaigns(rng: np.random.Generator, count: int) -> Campaigns:
    """Draw ``count`` campaigns with ids like ``cmp-48213``."""
    numbers = rng.choice(max(90_000, 10 * count), size=count, replace=False) + 10_000
    return Campaigns(
        ids=string_array([f"cmp-{n}" for n in numbers.tolist()]),
        traffic=AliasTable.build(rng.lognormal(0.0, 1.0, count)),
        ctr_effect=rng.normal(0.0, EFFECT_SD, count),
        cpm=rng.lognormal(np.log(2.0), 0.5, count),
    )


def build_domains(rng: np.random.Generator, count: int) -> Domains:
    """Draw ``count`` distinct domain names such as ``dailyherald.com`` or ``money-tips.co.uk``."""
    rank = rng.permutation(count) + 1
    return Domains(
        names=string_array(_domain_names(rng, count)),
        traffic=AliasTable.build(rank.astype(np.float64) ** -1.1),
        ctr_effect=rng.normal(0.0, EFFECT_SD, count),
        price_factor=rng.lognormal(0.0, 0.3, count),
    )


def _domain_names(rng: np.random.Generator, count: int) -> list[str]:
    words = domain_words()
    combos = len(words.first) * len(words.second)
    picks = rng.permutation(combos)[np.arange(count) % combos]
    rounds = np.arange(count) // combos
    tld = rng.choice(len(words.tlds), size=count, p=words.tld_weight / words.tld_weight.sum())
    hyphen = rng.random(count) < 0.25
    names = []
    for pick, again, t, dash in zip(
        picks.tolist(), rounds.tolist(), tld.tolist(), hyphen.tolist(), strict=True
    ):
        first, second = words.first[pick // len(words.second)], words.second[pick % len(words.second)]
        suffix = str(again + 1) if again else ""
        names.append(f"{first}{'-' if dash else ''}{second}{suffix}.{words.tlds[t]}")
    return _deduplicate(names)


def _deduplicate(names: list[str]) -> list[str]:
    """Make names unique by numbering repeats ("a.com", "a.com" -> "a.com", "a2.com")."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            stem, _, tld = name.partition(".")
            candidate = f"{stem}{n}.{tld}"
        seen.add(candidate)
        out.append(candidate)
    return out


def impression_cost(
    rng: np.random.Generator, campaigns: Campaigns, domains: Domains, campaign: np.ndarray, domain: np.ndarray
) -> np.ndarray:
    """Cost of each impression in currency units, within [0.0005, 0.01], rounded to 6 decimals."""
    base = campaigns.cpm[campaign] / 1000.0 * domains.price_factor[domain]
    cost = np.clip(base * rng.lognormal(0.0, 0.25, campaign.size), MIN_COST, MAX_COST)
    return np.round(cost, 6)
