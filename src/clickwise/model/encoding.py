"""Feature rows to the float matrix a learner reads, the same way at training and at prediction time.

Numbers become float64 (null -> NaN, which the learners treat as missing). Strings and booleans
become category codes: the position of the value in a **vocabulary** learned from the training rows
(most frequent first, at most ``max_categories`` values). A null maps to NaN ("missing"). A value
beyond the vocabulary (a rare one in the training rows, or one they never had) gets its own
**unknown** code, the vocabulary's length: the model learns what rare values do from the training rows
and scores a browser it never saw like those, not like a row without a browser. The vocabulary is
stored in ``model.json``. (Models stored before the unknown code score unknown values as missing.)

>>> import pyarrow as pa
>>> from clickwise.model.dataset import FeatureSpec
>>> table = pa.table({"os": ["ios", "android", "ios", None], "price": [1, 2, None, 4]})
>>> specs = (FeatureSpec("os", "event", "string"), FeatureSpec("price", "event", "int"))
>>> encoding = Encoding.fit(table, specs)
>>> encoding.vocabularies["os"]
['ios', 'android']
>>> encoding.matrix(pa.table({"os": ["android", "linux", None]})).tolist()
[[1.0, nan], [2.0, nan], [nan, nan]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickwise.model.dataset import FeatureSpec
from clickwise.model.errors import PredictionInputError

MAX_CATEGORIES = 1000
"""Default vocabulary size per categorical feature; rarer values are treated as missing."""

Vocabulary = list[str] | list[bool]


@dataclass(frozen=True)
class Encoding:
    """How each feature becomes a matrix column; build with :meth:`fit`, store with :meth:`to_json`."""

    features: tuple[FeatureSpec, ...]
    vocabularies: dict[str, Vocabulary]
    unknown_code: bool = True
    """Values beyond the vocabulary get code ``len(vocabulary)``; ``False`` (older models): missing."""
    _codes: dict[str, dict[Any, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = {
            name: {value: i for i, value in enumerate(vocab)} for name, vocab in self.vocabularies.items()
        }
        object.__setattr__(self, "_codes", codes)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, spec in enumerate(self.features) if spec.categorical]

    @classmethod
    def fit(
        cls, table: pa.Table, features: Sequence[FeatureSpec], *, max_categories: int = MAX_CATEGORIES
    ) -> Encoding:
        """Learn the vocabularies from ``table`` (the training rows only)."""
        vocabularies: dict[str, Vocabulary] = {}
        for spec in features:
            if spec.categorical:
                counts = pc.value_counts(_typed(table.column(spec.name), spec).drop_null()).to_pylist()
                ranked = sorted(counts, key=lambda item: (-item["counts"], item["values"]))
                vocabularies[spec.name] = [item["values"] for item in ranked[:max_categories]]
        return cls(tuple(features), vocabularies)

    def matrix(self, table: pa.Table) -> np.ndarray:
        """The float64 matrix of ``table``'s rows; a feature missing from the table is all NaN."""
        out = np.full((table.num_rows, len(self.features)), np.nan, dtype=np.float64)
        for j, spec in enumerate(self.features):
            if spec.name not in table.column_names:
                continue
            column = _typed(table.column(spec.name), spec)
            if spec.categorical:
                vocab = pa.array(self.vocabularies[spec.name], type=column.type)
                codes = pc.index_in(column, value_set=vocab)
                if self.unknown_code:
                    codes = pc.if_else(pc.is_null(column), None, pc.fill_null(codes, len(vocab)))
                column = codes
            out[:, j] = column.cast(pa.float64()).to_numpy()
        return out

    def matrix_from_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The same matrix from dicts of feature values (absent keys and ``None`` are missing)."""
        out = np.full((len(rows), len(self.features)), np.nan, dtype=np.float64)
        for j, spec in enumerate(self.features):
            codes = self._codes.get(spec.name)
            for i, row in enumerate(rows):
                value = row.get(spec.name)
                if value is not None:
                    out[i, j] = (
                        _code(codes, value, spec, self.unknown_code)
                        if codes is not None
                        else _number(value, spec)
                    )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "features": [spec.to_json() for spec in self.features],
            "vocabularies": self.vocabularies,
            "unknown_code": self.unknown_code,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Encoding:
        specs = tuple(FeatureSpec(item["name"], item["kind"], item["type"]) for item in value["features"])
        vocabularies = {name: list(vocab) for name, vocab in value["vocabularies"].items()}
        return cls(specs, vocabularies, bool(value.get("unknown_code", False)))


def _typed(column: pa.ChunkedArray, spec: FeatureSpec) -> pa.ChunkedArray:
    """``column`` cast to the feature's Arrow type (string, bool or float64)."""
    target = {"string": pa.string(), "bool": pa.bool_()}.get(spec.type, pa.float64())
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if column.type == target:
        return column
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PredictionInputError(
            f"feature {spec.name!r} should be of type {spec.type}, got a column of {column.type}: {exc}"
        ) from exc


def _code(codes: dict[Any, int], value: Any, spec: FeatureSpec, unknown_code: bool) -> float:
    if spec.type == "bool":
        if not isinstance(value, bool | np.bool_):
            raise PredictionInputError(f"feature {spec.name!r} should be true or false, got {value!r}")
        value = bool(value)
    elif not isinstance(value, str):
        raise PredictionInputError(f"feature {spec.name!r} should be a string, got {value!r}")
    code = codes.get(value)
    if code is None:
        return float(len(codes)) if unknown_code else math.nan
    return float(code)


def _number(value: Any, spec: FeatureSpec) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PredictionInputError(f"feature {spec.name!r} should be a number, got {value!r}") from None
