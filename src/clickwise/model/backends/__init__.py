"""Learners behind ``model.kind``: LightGBM (always installed) and XGBoost (an optional extra)."""

from __future__ import annotations

from clickwise.model.backends.base import Booster, Learner, Matrix, Schedule
from clickwise.model.errors import ModelError


def learner(kind: str) -> Learner:
    """The learner for ``kind``; XGBoost raises a clear error when it is not installed."""
    if kind == "lightgbm":
        from clickwise.model.backends.lgbm import LightGBMLearner

        return LightGBMLearner()
    if kind == "xgboost":
        from clickwise.model.backends.xgb import XGBoostLearner

        return XGBoostLearner()
    raise ModelError(f"model kind {kind!r} is not supported; use 'lightgbm' or 'xgboost'")


__all__ = ["Booster", "Learner", "Matrix", "Schedule", "learner"]
