"""XGBoost (the ``xgboost-cpu`` wheel, installed with ``pip install 'clickwise[xgboost]'``).

LightGBM-style parameter names are translated so that one pipeline file can switch ``model.kind``:
``num_leaves`` -> ``max_leaves`` (with loss-guided growth and no depth limit), ``feature_fraction`` ->
``colsample_bytree``, ``bagging_fraction`` -> ``subsample``, ``lambda_l1``/``lambda_l2`` -> ``alpha``/
``lambda``. ``min_child_samples`` has no XGBoost equivalent (``min_child_weight`` counts hessian, not
rows) and is dropped; model.json lists dropped parameters. Other names are passed as they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clickwise.model.backends.base import Matrix, Progress, Schedule
from clickwise.model.errors import BackendUnavailableError

RENAMES = {
    "num_leaves": "max_leaves",
    "feature_fraction": "colsample_bytree",
    "colsample_bytree": "colsample_bytree",
    "bagging_fraction": "subsample",
    "lambda_l1": "alpha",
    "reg_alpha": "alpha",
    "lambda_l2": "lambda",
    "reg_lambda": "lambda",
    "learning_rate": "eta",
    "seed": "seed",
    "num_threads": "nthread",
}
DROPPED = ("min_child_samples", "min_data_in_leaf", "verbose", "verbosity", "deterministic", "objective")
DEFAULTS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "verbosity": 0,
    "seed": 0,
}


def _xgboost() -> Any:
    try:
        return importlib.import_module("xgboost")
    except ImportError as exc:
        raise BackendUnavailableError(
            "model.kind is 'xgboost' but XGBoost is not installed; run: pip install 'clickwise[xgboost]' "
            "(the CPU-only wheel), or set model.kind to 'lightgbm'"
        ) from exc


def translate(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """XGBoost parameters from LightGBM-style ones; returns them and the names that were dropped."""
    out = dict(DEFAULTS)
    dropped = [name for name in params if name in DROPPED]
    for name, value in params.items():
        if name not in DROPPED:
            out[RENAMES.get(name, name)] = value
    if "max_leaves" in out:
        out.setdefault("grow_policy", "lossguide")
        out.setdefault("max_depth", 0)
    return out, dropped


@dataclass(frozen=True)
class XGBoostBooster:
    booster: Any
    names: list[str]
    types: list[str]

    @property
    def trees(self) -> int:
        return int(self.booster.num_boosted_rounds())

    def predict(self, values: np.ndarray) -> np.ndarray:
        xgb = _xgboost()
        matrix = xgb.DMatrix(
            values, feature_names=self.names, feature_types=self.types, enable_categorical=True
        )
        return np.asarray(self.booster.predict(matrix), dtype=np.float64)

    def to_bytes(self) -> bytes:
        return bytes(self.booster.save_raw("ubj"))

    def gain(self) -> dict[str, float]:
        scores = self.booster.get_score(importance_type="total_gain")
        return {name: float(scores.get(name, 0.0)) for name in self.names}


class XGBoostLearner:
    kind = "xgboost"
    file_name = "model.ubj"

    def __init__(self) -> None:
        _xgboost()

    def fit(
        self,
        fit: tuple[Matrix, np.ndarray],
        stop: tuple[Matrix, np.ndarray] | None,
        schedule: Schedule,
        params: Mapping[str, Any],
        progress: Progress | None = None,
    ) -> tuple[XGBoostBooster, dict[str, Any]]:
        xgb = _xgboost()
        effective, dropped = translate(params)
        matrix, labels = fit
        types = _types(matrix)
        train = xgb.DMatrix(
            matrix.values,
            label=labels,
            feature_names=matrix.names,
            feature_types=types,
            enable_categorical=True,
        )
        evals = []
        stopping: int | None = None
        if stop is not None and schedule.stopping_rounds > 0:
            stop_matrix, stop_labels = stop
            evals.append(
                (
                    xgb.DMatrix(
                        stop_matrix.values,
                        label=stop_labels,
                        feature_names=matrix.names,
                        feature_types=types,
                        enable_categorical=True,
                    ),
                    "early_stop",
                )
            )
            stopping = schedule.stopping_rounds
        callbacks = [_progress_callback(xgb, progress, schedule.rounds)] if progress is not None else None
        booster = xgb.train(
            effective,
            train,
            num_boost_round=schedule.rounds,
            evals=evals,
            early_stopping_rounds=stopping,
            verbose_eval=False,
            callbacks=callbacks,
        )
        if stopping is not None:
            booster = booster[: booster.best_iteration + 1]
        loaded = self.load(bytes(booster.save_raw("ubj")), matrix.names, matrix.categorical)
        record = {**effective, "num_boost_round": loaded.trees, "dropped": dropped}
        return loaded, record

    def load(self, data: bytes, names: list[str], categorical: list[int]) -> XGBoostBooster:
        xgb = _xgboost()
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        types = ["c" if i in set(categorical) else "q" for i in range(len(names))]
        return XGBoostBooster(booster, names, types)


def _types(matrix: Matrix) -> list[str]:
    categorical = set(matrix.categorical)
    return ["c" if i in categorical else "q" for i in range(len(matrix.names))]


def _progress_callback(xgb: Any, progress: Progress, total: int) -> Any:
    """An XGBoost training callback (its base class comes from the lazily imported module)."""

    class Callback(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            progress(epoch + 1, total)
            return False

    return Callback()
