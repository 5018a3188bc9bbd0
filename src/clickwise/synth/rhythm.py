"""The daily rhythm: how busy each local hour is, and how it nudges the click rate.

Humans follow the local clock of their country (peak around 20:00, trough around 04:00); bots do
not. The CTR effect is small (about +-0.1 on the logit scale), evenings click a little more:

>>> round(float(intensity(np.array([4]))[0]), 2), round(float(intensity(np.array([20]))[0]), 2)
(0.13, 1.88)
>>> bool(hour_ctr_effect(np.array([20]))[0] > 0 > hour_ctr_effect(np.array([4]))[0])
True
"""

from __future__ import annotations

import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# Relative activity per local hour, 00:00 to 23:00 (normalized to mean 1 below).
# fmt: off
_PROFILE = np.array([0.38, 0.24, 0.16, 0.13, 0.12, 0.17, 0.36, 0.68, 0.92, 1.02, 1.08, 1.14,
                     1.20, 1.18, 1.12, 1.12, 1.18, 1.30, 1.48, 1.64, 1.72, 1.60, 1.24, 0.76])
# fmt: on
_PROFILE = _PROFILE / _PROFILE.mean()
_CTR_EFFECT = 0.1 * (_PROFILE - 1.0)


def local_hour(ts_ms: np.ndarray | int, utc_offset_ms: np.ndarray) -> np.ndarray:
    """Hour of the local day (0..23) of each UTC time, for each UTC offset."""
    return ((np.asarray(ts_ms, dtype=np.int64) + utc_offset_ms) // HOUR_MS) % 24


def intensity(hour: np.ndarray) -> np.ndarray:
    """Relative activity in each local hour; its mean over a day is 1."""
    return _PROFILE[hour]


def hour_ctr_effect(hour: np.ndarray) -> np.ndarray:
    """Additive logit effect of the local hour on the click probability."""
    return _CTR_EFFECT[hour]
