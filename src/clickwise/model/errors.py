"""Errors of the model layer: training data that cannot be used, models that cannot be found or run."""

from __future__ import annotations

from clickwise.errors import ClickwiseError


class ModelError(ClickwiseError):
    """Root of the errors raised by :mod:`clickwise.model`."""


class TrainingDataError(ModelError):
    """The training set is missing, has the wrong columns, or is too small or one-sided to learn from."""


class FingerprintMismatchError(ModelError):
    """The training set (or a model) was built from other feature or label definitions than the pipeline's.

    Training on it would silently pair columns with the wrong meaning, so it is refused.
    """


class ModelNotFoundError(ModelError):
    """A model directory, version or registry pointer does not exist."""


class BackendUnavailableError(ModelError):
    """The learner named by ``model.kind`` is not installed."""


class PredictionInputError(ModelError):
    """Rows given to a predictor have a value that cannot be read as the feature's type."""
