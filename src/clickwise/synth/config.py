"""Typed, strict knobs of the synthetic ad stream.

Every field has a realistic default; change one with ``dataclasses.replace``. Values are checked when
the config is built, so a bad value fails before any file is written:

>>> SynthConfig(bot_fraction=0.02).bot_fraction
0.02
>>> SynthConfig(late_fraction=1.5)
Traceback (most recent call last):
...
clickwise.synth.errors.SynthConfigError: SynthConfig.late_fraction must be in [0, 1], got 1.5
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from clickwise.synth.errors import SynthConfigError

_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS

_FRACTIONS = (
    "bot_fraction",
    "clicker_bot_share",
    "bot_spoofed_ua_share",
    "late_fraction",
    "double_click_rate",
    "redelivery_rate",
    "return_click_share",
)
_SIGNED = ("activity_propensity_corr",)


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """How the synthetic population behaves. Defaults give ~2% CTR and ~60 impressions per user per day.

    Changing any field changes the generated events (the seed alone does not fix them): keep the config
    with the seed when a data set must be reproduced.
    """

    campaigns: int = 200
    """Number of advertiser campaigns; budgets (traffic share) are log-normal."""
    domains: int = 2_000
    """Number of publisher domains; popularity is Zipf(1.1)."""
    segments: int = 24
    """Number of audience segments a user belongs to (one each); segments shift propensity a little."""
    bot_fraction: float = 0.02
    """Share of users that are bots. Bots are few but, at ~20x the activity, bring ~30% of impressions."""
    clicker_bot_share: float = 0.04
    """Share of bots that click almost everything (p ~0.9); the others click almost nothing."""
    bot_spoofed_ua_share: float = 0.25
    """Share of bots that send a real browser user agent, so only their IP and behaviour give them away."""
    human_impressions_per_day: float = 45.0
    """Mean impressions per human user per day (log-normal across users)."""
    human_activity_sigma: float = 1.1
    """Log-scale spread of human activity: 1.1 puts the top 1% of users above ~7x the mean."""
    bot_impressions_per_day: float = 900.0
    """Mean impressions per bot per day; bots ignore the daily rhythm."""
    base_ctr: float = 0.0075
    """Click probability of a median human on an average campaign, domain and country."""
    propensity_sd: float = 1.2
    """Spread of the users' latent click propensity on the logit scale (segment effect included)."""
    propensity_skew: float = 0.8
    """Log-scale sigma of the individual propensity: it is ``exp(N(0, skew))`` rescaled on the logit scale,
    so most users sit a little below average and a long tail of heavy clickers stands out after a few
    clicks. Near 0 gives a symmetric normal."""
    activity_propensity_corr: float = -0.2
    """Correlation of a user's log-activity with their propensity: heavy users click a little less."""
    late_fraction: float = 0.03
    """Share of events that arrive minutes after their event time (out of order)."""
    double_click_rate: float = 0.03
    """Share of clicks followed by a second click (new click_id, same impression) seconds later."""
    redelivery_rate: float = 0.015
    """Share of click rows delivered twice: same click_id and event time, a later arrival_ts."""
    quick_click_median_s: float = 45.0
    """Median delay of the clicks made right after the impression."""
    return_click_share: float = 0.14
    """Share of clicks made later (median one hour); most of them fall beyond a 15-minute label horizon."""
    prediction_interval_ms: int = _HOUR_MS
    """A scoring job emits one prediction per recently active user every interval (epoch-aligned)."""
    chunk_ms: int = 15 * _MINUTE_MS
    """Event time generated per step; memory grows with it, and the output depends on it."""
    rows_per_file: int = 20_000_000
    """A stream's part file is closed and the next one begun after this many rows."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_field(f.name, f.type, getattr(self, f.name))
        if not -0.9 <= self.activity_propensity_corr <= 0.9:
            raise SynthConfigError(
                "SynthConfig.activity_propensity_corr must be in [-0.9, 0.9], "
                f"got {self.activity_propensity_corr!r}"
            )
        if not self.base_ctr < 0.5:
            raise SynthConfigError(f"SynthConfig.base_ctr must be in (0, 0.5), got {self.base_ctr!r}")
        if self.chunk_ms < _MINUTE_MS:
            raise SynthConfigError(
                f"SynthConfig.chunk_ms must be at least 60000 (1 min), got {self.chunk_ms!r}"
            )


def _check_field(name: str, annotation: object, value: object) -> None:
    """Refuse a value of the wrong type, a fraction outside [0, 1] or a non-positive size."""
    integer = annotation in (int, "int")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number"
        raise SynthConfigError(f"SynthConfig.{name} must be {kind}, got {value!r}")
    if name in _FRACTIONS:
        if not 0.0 <= value <= 1.0:
            raise SynthConfigError(f"SynthConfig.{name} must be in [0, 1], got {value!r}")
    elif name not in _SIGNED and not value > 0:
        raise SynthConfigError(f"SynthConfig.{name} must be positive, got {value!r}")
