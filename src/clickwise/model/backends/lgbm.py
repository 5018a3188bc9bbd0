"""LightGBM: categorical columns are passed as such (codes, NaN = missing), ``verbose=-1`` keeps it quiet.

Parameters go to LightGBM as they are (``num_leaves``, ``learning_rate``, ``min_child_samples``, ...);
clickwise only sets the objective and a fixed seed with ``deterministic`` so that a retrain on the
same data gives the same model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from clickwise.cpu import usable_cores
from clickwise.model.backends.base import Matrix, Progress, Schedule

DEFAULTS: dict[str, Any] = {"objective": "binary", "verbose": -1, "seed": 0, "deterministic": True}
THREAD_ALIASES = {"num_threads", "num_thread", "nthread", "nthreads", "n_jobs"}
SMALL = 2_000  # rows scored on the calling thread: waking OpenMP's threads costs more than they save


@dataclass(frozen=True)
class LightGBMBooster:
    booster: lgb.Booster

    @property
    def trees(self) -> int:
        return int(self.booster.num_trees())

    def predict(self, values: np.ndarray) -> np.ndarray:
        # LightGBM keeps the last thread count for the process: always say which one
        threads = 1 if len(values) <= SMALL else len(os.sched_getaffinity(0))
        return np.asarray(self.booster.predict(values, num_threads=threads), dtype=np.float64)

    def to_bytes(self) -> bytes:
        return self.booster.model_to_string().encode()

    def gain(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.booster.feature_name(), gains, strict=True)}


class LightGBMLearner:
    kind = "lightgbm"
    file_name = "model.txt"

    def fit(
        self,
        fit: tuple[Matrix, np.ndarray],
        stop: tuple[Matrix, np.ndarray] | None,
        schedule: Schedule,
        params: Mapping[str, Any],
        progress: Progress | None = None,
    ) -> tuple[LightGBMBooster, dict[str, Any]]:
        effective = {**DEFAULTS, **params}
        if not THREAD_ALIASES & effective.keys():  # threads for busy cores wait instead of working
            effective["num_threads"] = usable_cores()
        matrix, labels = fit
        train_set = lgb.Dataset(
            matrix.values,
            label=labels,
            feature_name=matrix.names,
            categorical_feature=matrix.categorical,
            params=effective,
            free_raw_data=True,
        )
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Any] = []
        if stop is not None and schedule.stopping_rounds > 0:
            stop_matrix, stop_labels = stop
            valid_sets.append(lgb.Dataset(stop_matrix.values, label=stop_labels, reference=train_set))
            callbacks.append(
                lgb.early_stopping(schedule.stopping_rounds, first_metric_only=True, verbose=False)
            )
        if progress is not None:
            callbacks.append(_progress_callback(progress, schedule.rounds))
        booster = lgb.train(
            effective, train_set, num_boost_round=schedule.rounds, valid_sets=valid_sets, callbacks=callbacks
        )
        best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
        # Round-trip through the text format: what is saved is what was measured.
        saved = booster.model_to_string(num_iteration=best)
        return LightGBMBooster(lgb.Booster(model_str=saved)), {**effective, "num_boost_round": best}

    def load(self, data: bytes, names: list[str], categorical: list[int]) -> LightGBMBooster:
        return LightGBMBooster(lgb.Booster(model_str=data.decode()))


def _progress_callback(progress: Progress, total: int) -> Any:
    def callback(env: Any) -> None:
        progress(env.iteration + 1, total)

    return callback
