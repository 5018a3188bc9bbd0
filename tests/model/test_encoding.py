"""The encoding: vocabularies from training rows, and the same matrix from Arrow and from dicts."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from clickwise.model import PredictionInputError
from clickwise.model.dataset import FeatureSpec
from clickwise.model.encoding import Encoding

SPECS = (
    FeatureSpec("browser", "event", "string"),
    FeatureSpec("bot", "event", "bool"),
    FeatureSpec("count", "table", "int"),
    FeatureSpec("ratio", "derived", "float"),
)
TABLE = pa.table(
    {
        "browser": ["b", "a", "b", None, "c", "b", "a"],
        "bot": [False, False, True, None, False, False, False],
        "count": pa.array([1, None, 3, 4, 5, 6, 2**40], pa.int64()),
        "ratio": [0.5, None, 1.5, -2.0, math.inf, 0.0, 1e-300],
    }
)


def test_vocabularies_rank_by_frequency_then_value_and_are_capped() -> None:
    encoding = Encoding.fit(TABLE, SPECS)
    assert encoding.vocabularies == {"browser": ["b", "a", "c"], "bot": [False, True]}
    assert Encoding.fit(TABLE, SPECS, max_categories=2).vocabularies["browser"] == ["b", "a"]
    assert encoding.categorical_indices == [0, 1]
    assert Encoding.from_json(encoding.to_json()) == encoding


def test_arrow_and_dict_rows_give_the_same_matrix() -> None:
    encoding = Encoding.fit(TABLE, SPECS, max_categories=2)
    from_arrow = encoding.matrix(TABLE)
    from_dicts = encoding.matrix_from_rows(TABLE.to_pylist())
    np.testing.assert_array_equal(from_arrow, from_dicts)
    assert from_arrow[4, 0] == 2.0  # "c" is beyond the capped vocabulary: the unknown code
    assert np.isnan(from_arrow[3, 0])  # a null is missing
    assert from_arrow[6, 2] == 2.0**40
    large = pa.table({"browser": pa.array(["a", "zzz", None], pa.large_string())})
    np.testing.assert_array_equal(encoding.matrix(large)[:, 0], [1.0, 2.0, np.nan])


def test_unseen_values_get_their_own_code_apart_from_missing() -> None:
    encoding = Encoding.fit(TABLE, SPECS)
    rows = [{"browser": "zzz", "bot": True}, {"browser": None}, {"browser": "b"}]
    expected = [[3.0, 1.0], [np.nan, np.nan], [0.0, np.nan]]
    np.testing.assert_array_equal(encoding.matrix_from_rows(rows)[:, :2], expected)
    np.testing.assert_array_equal(
        encoding.matrix(pa.table({"browser": ["zzz", None, "b"]}))[:, 0], [3, np.nan, 0]
    )
    assert Encoding.from_json(encoding.to_json()).unknown_code


def test_a_model_stored_before_the_unknown_code_still_scores_unknown_values_as_missing() -> None:
    stored = Encoding.fit(TABLE, SPECS).to_json()
    del stored["unknown_code"]
    legacy = Encoding.from_json(stored)
    assert not legacy.unknown_code
    assert np.isnan(legacy.matrix_from_rows([{"browser": "zzz"}])[0, 0])
    assert np.isnan(legacy.matrix(pa.table({"browser": ["zzz"]}))[0, 0])


def test_values_of_the_wrong_type_are_refused_with_the_feature_name() -> None:
    encoding = Encoding.fit(TABLE, SPECS)
    with pytest.raises(PredictionInputError, match="'count' should be a number, got 'many'"):
        encoding.matrix_from_rows([{"count": "many"}])
    with pytest.raises(PredictionInputError, match="'bot' should be true or false"):
        encoding.matrix_from_rows([{"bot": "yes"}])
    with pytest.raises(PredictionInputError, match="'count' should be of type int"):
        encoding.matrix(pa.table({"count": ["many"]}))
