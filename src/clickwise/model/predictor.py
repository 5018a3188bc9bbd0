"""Scoring rows with a trained model folder: the same encoding and booster as at training time.

    predictor = Predictor.load(resolve("latest", "models"))
    predictor.predict_one({"browser": "Chrome", "user_impressions_1h": 4})     # a float in [0, 1]

``predict`` takes an Arrow table, a polars frame or a list of dicts and returns float64
probabilities; a feature the input lacks is missing (null) for every row. The HTTP service calls
:meth:`Predictor.predict_one`, which avoids Arrow for a single dict (tens of microseconds with LightGBM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from clickwise.model._io import open_existing, read_json
from clickwise.model.backends import Booster, learner
from clickwise.model.encoding import Encoding
from clickwise.model.errors import FingerprintMismatchError, ModelError, ModelNotFoundError
from clickwise.model.registry import CARD
from clickwise.spec import Pipeline

CARD_FORMAT = 1


def read_card(model_dir: str) -> dict[str, Any]:
    """The ``model.json`` of a model folder."""
    root = open_existing(model_dir, ModelNotFoundError, "model folder")
    card = read_json(root, CARD)
    if card is None:
        raise ModelNotFoundError(f"{model_dir!r} has no {CARD}; it is not a (complete) model folder")
    if card.get("format") != CARD_FORMAT:
        raise ModelError(
            f"{model_dir}/{CARD} has format {card.get('format')!r}; this clickwise reads format "
            f"{CARD_FORMAT}: retrain the model or upgrade clickwise"
        )
    return dict(card)


@dataclass(frozen=True)
class Predictor:
    """A loaded model: ``card`` is its ``model.json``."""

    model_dir: str
    card: dict[str, Any]
    encoding: Encoding
    booster: Booster

    @classmethod
    def load(cls, model_dir: str, *, pipeline: Pipeline | None = None) -> Predictor:
        """Load a model folder; with ``pipeline``, refuse a model trained on other feature definitions."""
        card = read_card(model_dir)
        encoding = Encoding.from_json(card["encoding"])
        backend = learner(card["kind"])
        data = open_existing(model_dir, ModelNotFoundError, "model folder").read_bytes(card["model_file"])
        booster = backend.load(data, encoding.names, encoding.categorical_indices)
        predictor = cls(model_dir, card, encoding, booster)
        if pipeline is not None:
            predictor.check_pipeline(pipeline)
        return predictor

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def features(self) -> list[str]:
        return self.encoding.names

    @property
    def fingerprint(self) -> str:
        return str(self.card["pipeline"]["fingerprint"])

    def check_pipeline(self, pipeline: Pipeline) -> None:
        """Raise when ``pipeline`` defines features or the label differently from the training pipeline."""
        if pipeline.fingerprint() != self.fingerprint:
            raise FingerprintMismatchError(
                f"model {self.model_dir!r} was trained with pipeline {self.card['pipeline']['name']!r} "
                f"(fingerprint {self.fingerprint}), but pipeline {pipeline.name!r} has fingerprint "
                f"{pipeline.fingerprint()}: its features would not mean what the model learned. "
                "Retrain the model with this pipeline, or serve it with the pipeline it was trained with"
            )

    def predict(self, rows: Any) -> np.ndarray:
        """P(click) for each row of an Arrow table/record batch, a polars frame, or a list of dicts."""
        return self.booster.predict(self.matrix(rows)) if _length(rows) else np.empty(0, dtype=np.float64)

    def predict_one(self, row: Mapping[str, Any]) -> float:
        """P(click) for one dict of feature values."""
        return float(self.booster.predict(self.encoding.matrix_from_rows([row]))[0])

    def matrix(self, rows: Any) -> np.ndarray:
        """The encoded float matrix the booster reads (for inspection and tests)."""
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        elif not isinstance(rows, pa.Table) and hasattr(rows, "to_arrow"):
            rows = rows.to_arrow()
        if isinstance(rows, pa.Table):
            return self.encoding.matrix(rows)
        if isinstance(rows, Mapping):
            return self.encoding.matrix_from_rows([rows])
        if isinstance(rows, Sequence) and all(isinstance(row, Mapping) for row in rows):
            return self.encoding.matrix_from_rows(rows)
        raise ModelError(
            f"cannot score a {type(rows).__name__}; pass an Arrow table, a polars frame or a list of dicts"
        )


def _length(rows: Any) -> int:
    if isinstance(rows, pa.Table | pa.RecordBatch):
        return rows.num_rows
    if isinstance(rows, Mapping):
        return 1
    return len(rows)
