"""What the trainer needs from a learner: fit a binary classifier with early stopping, save it as bytes,
load it back, predict probabilities, and say how much each feature contributed (total gain)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Progress = Callable[[int, int], None]
"""``progress(rounds_done, rounds_total)``, called during boosting."""

ROUNDS_ALIASES = (
    "n_estimators",
    "num_iterations",
    "num_iteration",
    "n_iter",
    "num_tree",
    "num_trees",
    "num_round",
    "num_rounds",
    "nrounds",
    "num_boost_round",
    "max_iter",
)
STOPPING_ALIASES = ("early_stopping_rounds", "early_stopping_round", "early_stopping", "n_iter_no_change")
DEFAULT_ROUNDS = 100
DEFAULT_STOPPING_ROUNDS = 50
OWN_PARAMS = ("max_categories",)
"""Parameters read by clickwise itself (the encoding), never passed to a learner."""


@dataclass(frozen=True)
class Matrix:
    """Encoded rows for a learner: float64 values (NaN = missing), feature names, categorical columns."""

    values: np.ndarray
    names: list[str]
    categorical: list[int]


@dataclass(frozen=True)
class Schedule:
    """How many boosting rounds at most, and after how many rounds without progress to stop."""

    rounds: int
    stopping_rounds: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> tuple[Schedule, dict[str, Any]]:
        """Pull the round counts out of ``params``; the rest is for the learner."""
        rest = {k: v for k, v in params.items() if k not in (*ROUNDS_ALIASES, *STOPPING_ALIASES, *OWN_PARAMS)}
        rounds = next((int(params[k]) for k in ROUNDS_ALIASES if k in params), DEFAULT_ROUNDS)
        stopping = next((int(params[k]) for k in STOPPING_ALIASES if k in params), DEFAULT_STOPPING_ROUNDS)
        return cls(max(rounds, 1), max(stopping, 0)), rest


class Booster(Protocol):
    """A trained model."""

    @property
    def trees(self) -> int: ...

    def predict(self, values: np.ndarray) -> np.ndarray:
        """P(label = 1) for each row of an encoded matrix, float64."""
        ...

    def to_bytes(self) -> bytes: ...

    def gain(self) -> dict[str, float]:
        """Total gain of the splits on each feature."""
        ...


class Learner(Protocol):
    """A learning library behind ``model.kind``."""

    kind: str
    file_name: str

    def fit(
        self,
        fit: tuple[Matrix, np.ndarray],
        stop: tuple[Matrix, np.ndarray] | None,
        schedule: Schedule,
        params: Mapping[str, Any],
        progress: Progress | None = None,
    ) -> tuple[Booster, dict[str, Any]]:
        """Train; returns the booster cut at its best round, and the effective parameters."""
        ...

    def load(self, data: bytes, names: list[str], categorical: list[int]) -> Booster: ...
