"""The money: a hand-computed replay, the rule matching, and ``evaluate`` end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_training_sets import TINY_PIPELINE, tiny_columns, tiny_pipeline, write_training_set

from clickwise.model import ModelError, Predictor, evaluate, replay, train
from clickwise.model.dataset import read_training_set
from clickwise.model.money import MULTIPLIERS, first_rule_holding, rule_holds
from clickwise.spec.features import RuleDef


def test_replay_by_hand() -> None:
    # p * 0.4 = expected value:  0.004  0.008  0.002  0.2    0.012
    p = [0.01, 0.02, 0.005, 0.5, 0.03]
    cost = [0.003, 0.010, 0.001, 0.002, 0.005]
    clicked = [0, 1, 0, 1, 1]
    first_rule = [-1, -1, -1, 0, 1]  # row 3 is a bot, row 4 a heavy user
    result = replay(p, clicked, cost, first_rule, value_per_click=0.4, rule_names=["bot", "heavy"])
    all_ = result.serve_all
    assert (all_.impressions, all_.clicks, all_.clicks_lost) == (5, 3, 0)
    assert all_.spend == pytest.approx(0.021) and all_.value == pytest.approx(1.2)
    assert all_.net == pytest.approx(1.179)
    # Served: rows 0 (0.004 > 0.003) and 2 (0.002 > 0.001); row 1 skipped (0.008 < 0.010).
    policy = result.policy
    assert (policy.impressions, policy.clicks, policy.clicks_lost) == (2, 0, 3)
    assert policy.spend == pytest.approx(0.004) and policy.value == 0.0
    assert policy.net == pytest.approx(-0.004)
    assert result.money_saved == pytest.approx(-1.183)
    assert result.blocked["bot"].impressions == 1 and result.blocked["bot"].clicks == 1
    assert result.blocked["bot"].spend_avoided == pytest.approx(0.002)
    assert result.blocked["heavy"].spend_avoided == pytest.approx(0.005)
    assert (result.skipped.impressions, result.skipped.clicks) == (1, 1)
    assert result.skipped.spend_avoided == pytest.approx(0.010)


def test_equal_value_and_cost_is_skipped_and_a_multiplier_moves_the_threshold() -> None:
    result = replay([0.5], [0], [0.25], [-1], value_per_click=0.5)
    assert result.policy.impressions == 0 and result.money_saved == 0.25
    lenient = replay([0.5], [0], [0.25], [-1], value_per_click=0.5, multiplier=0.5)
    assert lenient.policy.impressions == 1


def test_block_rules_first_match_wins_and_null_never_matches() -> None:
    table = pa.table({"bot": [True, None, False, True], "n": [500, 400, None, 1]})
    rules = [RuleDef(feature="bot", op="eq", value=True), RuleDef(feature="n", op="gt", value=300)]
    assert first_rule_holding(table, rules).tolist() == [0, 1, -1, 0]
    with pytest.raises(ModelError, match="cannot compare feature 'n'"):
        first_rule_holding(table, [RuleDef(feature="n", op="gt", value="many")])


def test_evaluate_replays_the_validation_period(tmp_path: Path) -> None:
    pipeline = tiny_pipeline()
    data = write_training_set(tmp_path / "data", pipeline, tiny_columns(3000))
    result = train(pipeline, str(data), str(tmp_path / "models"))
    report = evaluate(pipeline, str(data), result.model_dir, out=str(tmp_path / "money"))

    # Recompute independently from the validation rows and the predictor.
    data_set = read_training_set(pipeline, str(data))
    rows = data_set.table.filter(pa.array(data_set.event_ms() >= result.card["split"]["cut_ms"]))
    p = Predictor.load(result.model_dir).predict(rows)
    y = rows.column("clicked").to_numpy().astype(bool)
    cost = rows.column("cost").to_numpy()
    bot = rows.column("is_bot_agent").to_numpy(zero_copy_only=False)
    heavy = rows.column("user_impressions_1h").to_numpy() > 12
    served = ~bot & ~heavy & (p * 0.4 > cost)
    assert report.rows == rows.num_rows == result.card["split"]["validation"]["rows"]
    assert report.serve_all.spend == pytest.approx(cost.sum())
    assert report.serve_all.clicks == y.sum()
    assert report.policy.impressions == served.sum() and report.policy.clicks == y[served].sum()
    assert report.policy.clicks_lost == y[~served].sum()
    assert report.money_saved == pytest.approx(report.policy.net - report.serve_all.net)
    assert report.blocked["is_bot_agent eq true"].impressions == bot.sum()
    assert report.blocked["user_impressions_1h gt 12"].impressions == (heavy & ~bot).sum()
    assert report.skipped.impressions == (~bot & ~heavy & ~(p * 0.4 > cost)).sum()
    assert report.cost == "field cost" and report.notes == []

    # The sweep: x1 is the policy itself, and the best multiplier is the sweep's maximum.
    at_one = next(point for point in report.sweep if point["multiplier"] == 1.0)
    assert at_one["saved"] == pytest.approx(report.money_saved)
    assert len(report.sweep) == len(MULTIPLIERS)
    assert report.best_saved == max(point["saved"] for point in report.sweep)

    written = orjson.loads((tmp_path / "money" / "money.json").read_bytes())
    assert written == orjson.loads(orjson.dumps(report.to_json()))
    assert (tmp_path / "money" / "savings.png").read_bytes().startswith(b"\x89PNG")


def test_evaluate_needs_a_decision_and_a_cost_column(tmp_path: Path) -> None:
    pipeline = tiny_pipeline()
    data = write_training_set(tmp_path / "data", pipeline, tiny_columns(2000))
    result = train(pipeline, str(data), str(tmp_path / "models"))
    no_decision = tiny_pipeline(TINY_PIPELINE.split("decision:")[0])
    with pytest.raises(ModelError, match="no 'decision:' section"):
        evaluate(no_decision, str(data), result.model_dir)
    constant = tiny_pipeline(
        TINY_PIPELINE.replace("cost: cost\n  value_per_click", "cost: 0.002\n  value_per_click")
    )
    report = evaluate(constant, str(data), result.model_dir)
    assert report.cost == "constant 0.002"
    assert report.serve_all.spend == pytest.approx(0.002 * report.rows)
    elsewhere = tiny_pipeline(
        TINY_PIPELINE.replace("cost: cost\n  value_per_click", "cost: price\n  value_per_click")
    )
    with pytest.raises(ModelError, match="no feature carries it"):
        evaluate(elsewhere, str(data), result.model_dir)
    assert np.isfinite(report.best_multiplier)


def _column_case(kind: pa.DataType, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(st.just(kind), st.lists(st.one_of(st.none(), values)), values)


@given(
    st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
    st.one_of(
        _column_case(pa.int64(), st.integers(-5, 5)),
        _column_case(pa.float64(), st.floats(-3, 3)),
        _column_case(pa.bool_(), st.booleans()),
        _column_case(pa.string(), st.sampled_from("abc")),
    ),
)
def test_one_row_rules_equal_the_column_rules(op: str, case: tuple[pa.DataType, list[Any], Any]) -> None:
    kind, values, target = case
    rule = RuleDef(feature="f", op=op, value=target)
    columns = first_rule_holding(pa.table({"f": pa.array(values, kind)}), [rule])
    assert [0 if rule_holds(value, rule) else -1 for value in values] == columns.tolist()
