"""Models: train on a training set, measure, publish versions, predict, and count the money.

- :func:`train` reads a training set, splits it by time, fits LightGBM (or XGBoost) and a baseline
  without table features, and publishes ``<out>/v0001/`` with the booster, ``model.json`` and
  ``report.html``.
- :class:`Predictor` loads a version and scores rows exactly as at training time.
- :func:`evaluate` replays the validation period with the pipeline's decision policy.
- :mod:`clickwise.model.registry` lists versions and switches the ``ACTIVE`` pointer.
"""

from clickwise.model.errors import (
    BackendUnavailableError,
    FingerprintMismatchError,
    ModelError,
    ModelNotFoundError,
    PredictionInputError,
    TrainingDataError,
)
from clickwise.model.money import MoneyReport, PolicyOutcome, Withheld, evaluate, replay
from clickwise.model.predictor import Predictor, read_card
from clickwise.model.registry import active, latest, list_versions, resolve, set_active
from clickwise.model.train import TrainResult, train

__all__ = [
    "BackendUnavailableError",
    "FingerprintMismatchError",
    "ModelError",
    "ModelNotFoundError",
    "MoneyReport",
    "PolicyOutcome",
    "PredictionInputError",
    "Predictor",
    "TrainResult",
    "TrainingDataError",
    "Withheld",
    "active",
    "evaluate",
    "latest",
    "list_versions",
    "read_card",
    "replay",
    "resolve",
    "set_active",
    "train",
]
