"""Weighted sampling in O(1) per draw (Vose's alias method), for millions of draws per chunk.

>>> table = AliasTable.build(np.array([1.0, 0.0, 3.0]))
>>> draws = table.sample(np.random.default_rng(0), 100_000)
>>> np.bincount(draws, minlength=3).round(-4).tolist()
[30000, 0, 70000]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class AliasTable:
    """Column ``i`` keeps itself with probability ``keep[i]``, else gives ``alias[i]``."""

    keep: np.ndarray
    alias: np.ndarray

    @classmethod
    def build(cls, weights: np.ndarray) -> AliasTable:
        """Build the table for non-negative ``weights`` (at least one positive)."""
        k = weights.size
        scaled = (weights / weights.sum() * k).tolist()
        keep = np.ones(k)
        alias = np.arange(k, dtype=np.int32)
        small = [i for i, w in enumerate(scaled) if w < 1.0]
        large = [i for i, w in enumerate(scaled) if w >= 1.0]
        while small and large:
            s, g = small.pop(), large[-1]
            keep[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            if scaled[g] < 1.0:
                small.append(large.pop())
        return cls(keep, alias)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` indices drawn with probability proportional to the weights (one uniform per draw)."""
        u = rng.random(n) * self.keep.size
        column = u.astype(np.int32)
        return np.where(u - column < self.keep[column], column, self.alias[column])
